"""The molecules report section: a model whose samples hold no valid molecule (a tiny or early
model) gets its row and a 'No valid molecules' grid, and no empty density in the histograms."""

from __future__ import annotations

import json
import warnings

from dgm_science.domains.molecules.report import molecules_section


def test_section_with_a_model_without_valid_molecules(tmp_path, moses_smiles):
    results = tmp_path / "results"
    header = "smiles,valid,qed,sa,logp,mw\n"
    valid = "".join(f"{s},1,{0.3 + i / 100},{2 + i / 10},{i % 5},{200 + i}\n" for i, s in enumerate(moses_smiles[:30]))
    rows = {"smiles-arm": valid,
            "graph-vae": "C(C(,0,,,,\n" * 30}
    for model, body in rows.items():
        run = results / "molecules/moses" / model / "seed0"
        run.mkdir(parents=True)
        (run / "samples.csv").write_text(header + body)
        (run / "metrics.json").write_text(json.dumps({"valid": 1.0 if model == "smiles-arm" else 0.0}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an empty density divides 0 by 0
        section = molecules_section(results)
    assert "<b>graph-vae</b>" in section and "<b>smiles-arm</b>" in section
    assert section.count("No valid molecules.") == 1
    assert 'alt="property histograms moses"' in section
