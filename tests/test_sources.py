"""User datasets (dgm_science/sources.py): the split helpers, the molecules' file kinds (smiles, sdf) through the real
``dgm prepare --source``, their bad files (one clear error, nothing written), the config schema of a source block and
the workflow's plan on a user dataset."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from dgm_science import catalog, schema, sources
from dgm_science.config import ConfigError, check_unique_keys
from dgm_science.errors import DataError
from tests.workflow_fixtures import copy_workflow, run_snakemake

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "user" / "molecules" / "my_series.csv"

# ----------------------------------------------------------------------------- splits


def test_random_split_sizes_are_fractions_or_counts_and_disjoint():
    parts = sources.random_split(100, 0.1, 25, seed=3, where="x")
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [65, 10, 25]
    assert len(np.unique(np.concatenate(list(parts.values())))) == 100
    again = sources.random_split(100, 0.1, 25, seed=3, where="x")
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


def test_too_few_items_to_split_names_the_minimum():
    with pytest.raises(DataError, match="2 molecules are too few .* at least 3 molecules needed"):
        sources.split_sizes(2, 0.1, 0.1, "f.csv", "molecules")
    with pytest.raises(DataError, match="at least 21"):
        sources.split_sizes(20, 10, 10, "f.csv")


def test_group_split_keeps_every_group_in_one_split():
    rng = np.random.default_rng(0)
    groups = [f"s{int(g)}" for g in rng.zipf(1.6, size=400)]
    parts = sources.group_split(groups, 0.1, 0.1, seed=0, where="x")
    seen = {name: {groups[i] for i in index} for name, index in parts.items()}
    assert not (seen["train"] & seen["valid"]) and not (seen["train"] & seen["test"])
    assert not (seen["valid"] & seen["test"])
    assert sum(len(v) for v in parts.values()) == 400
    assert all(len(v) > 0 for v in parts.values())
    # the largest groups go to train (chemprop's balanced split): the most common scaffold is a training one
    assert max(set(groups), key=groups.count) in seen["train"]


def test_a_group_larger_than_the_training_split_goes_to_train():
    groups = ["big"] * 90 + [f"s{i}" for i in range(10)]
    parts = sources.group_split(groups, 0.2, 0.2, seed=0, where="x")
    assert set(range(90)) <= set(parts["train"].tolist())
    assert len(parts["valid"]) and len(parts["test"])


def test_group_split_with_too_few_groups_says_so():
    with pytest.raises(DataError, match="form 2 group"):
        sources.group_split(["a"] * 5 + ["b"] * 5, 0.1, 0.1, seed=0, where="x")


# ----------------------------------------------------------------------------- the CLI


def prepare(tmp_path: Path, block: dict, name: str = "out") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgm_science.cli", "prepare", "--source", json.dumps(block),
                           "--out", str(tmp_path / name), "--jobs", "2"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_a_csv_series_is_standardised_deduplicated_and_scaffold_split(tmp_path):
    done = prepare(tmp_path, {"kind": "smiles", "path": str(SERIES), "properties": ["pIC50"]})
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    stats = json.loads((out / "prepare.json").read_text())
    assert (stats["read"], stats["skipped"], stats["duplicates_removed"], stats["unique"]) == (60, 1, 2, 57)
    assert stats["skipped_first"] == [{"line": 14, "reason": "RDKit cannot parse the SMILES 'C1CC(N'"}]
    assert stats["standardized"] == 1 and stats["split"] == "scaffold"
    splits = {name: lines(out / f"{name}.smi") for name in ("train", "valid", "test")}
    assert sum(map(len, splits.values())) == 57 and len(set(sum(splits.values(), []))) == 57
    assert lines(out / "train_all.smi") == splits["train"]
    # the salt's parent, neutral and without the trifluoroacetate
    assert not any("." in s for s in sum(splits.values(), []))
    # scaffolds do not cross splits
    from rdkit.Chem.Scaffolds import MurckoScaffold

    scaffolds = {k: {MurckoScaffold.MurckoScaffoldSmiles(smiles=s) for s in v} for k, v in splits.items()}
    assert not (scaffolds["train"] & scaffolds["test"]) and not (scaffolds["train"] & scaffolds["valid"])
    # the property travels row by row; the duplicate without a value keeps the first's value
    table = lines(out / "properties_train.csv")
    assert table[0] == "pIC50" and len(table) == len(splits["train"]) + 1
    assert all(float(v) > 0 for v in table[1:])


def test_smi_tsv_gzip_and_sdf_kinds(tmp_path):
    rows = [line.split(",") for line in lines(SERIES)[1:] if "broken" not in line]
    (tmp_path / "named.smi").write_text("".join(f"{r[1]}\t{r[0]}\n" for r in rows))
    with gzip.open(tmp_path / "series.tsv.gz", "wt") as fh:
        fh.write("ID\tSMILES\n" + "".join(f"{r[1]}\t{r[0]}\n" for r in rows))
    done = prepare(tmp_path, {"kind": "smiles", "path": "named.smi", "smi_field": 2, "split": "random"}, "a")
    assert done.returncode == 0, done.stderr
    done = prepare(tmp_path, {"kind": "smiles", "path": "series.tsv.gz", "smiles_column": "SMILES"}, "b")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "a" / "prepare.json").read_text())["unique"] == 57
    assert json.loads((tmp_path / "b" / "prepare.json").read_text())["unique"] == 57

    from rdkit import Chem
    from rdkit.Chem import AllChem

    writer = Chem.SDWriter(str(tmp_path / "confs.sdf"))
    for i, smiles in enumerate(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "C1CCNCC1"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        for conf in AllChem.EmbedMultipleConfs(mol, numConfs=2, randomSeed=i):  # two conformers each
            mol.SetProp("pIC50", str(5 + i))
            writer.write(mol, confId=conf)
    writer.close()
    done = prepare(tmp_path, {"kind": "sdf", "path": "confs.sdf", "properties": ["pIC50"], "split": "random",
                              "valid": 1, "test": 1}, "c")
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "c" / "prepare.json").read_text())
    assert (stats["read"], stats["duplicates_removed"], stats["unique"]) == (10, 5, 5)
    assert (stats["train"], stats["valid"], stats["test"]) == (3, 1, 1)


BAD_FILES = [
    ("no_column.csv", "SMILES_std,id\nCCO,1\n", {"smiles_column": "smiles"},
     "no_column.csv: line 1: no column 'smiles' (the header has 'SMILES_std', 'id'"),
    ("no_property.csv", "smiles,id\nCCO,1\n", {"properties": ["pIC50"]}, "no column 'pIC50'"),
    ("empty.csv", "", {}, "empty.csv: empty file (expected a header line with a 'smiles' column)"),
    ("empty.smi", "\n\n", {}, "empty.smi: empty (no molecules)"),
    ("garbage.smi", "".join(f"ZINC{i} C{i}\n" for i in range(20)), {},
     "garbage.smi: none of the 20 molecules parse (line 1: RDKit cannot parse the SMILES 'ZINC0'"),
    ("two.csv", "smiles\nCCO\nCCN\n", {}, "2 unique molecules are too few to split into train / validation / "
                                          "test (valid=0.1, test=0.1; at least 3 unique molecules needed)"),
    ("binary.smi.gz", "not gzip", {}, "binary.smi.gz: cannot be read"),
]


@pytest.mark.parametrize("name,text,options,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_one_clear_error_and_nothing_is_written(tmp_path, name, text, options, message):
    (tmp_path / name).write_text(text)
    done = prepare(tmp_path, {"kind": "smiles", "path": name, **options})
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dgm: error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert not (tmp_path / "out" / "prepare.json").exists()
    assert "Traceback" not in done.stderr


def test_bad_source_blocks_name_the_key(tmp_path):
    (tmp_path / "a.csv").write_text("smiles\nCCO\n")
    for block, message in (({"kind": "smiles", "path": "a.csv", "split": "cluster"},
                            "source.split: 'cluster'; kind smiles splits by scaffold, random"),
                           ({"kind": "fasta-ish", "path": "a.csv"}, "source.kind: unknown source 'fasta-ish'"),
                           ({"kind": "smiles", "path": "missing.csv"}, "missing.csv: file not found"),
                           ({"kind": "smiles", "path": "a.csv", "smiles_col": "x"}, "smiles_col")):
        done = prepare(tmp_path, block)
        assert done.returncode == 2 and message in done.stderr, (block, done.stderr)


def test_prepare_takes_a_built_in_name_or_a_source_not_both(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dgm_science.cli", "prepare", "moses", "--source", "{kind: smiles}",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2 and "not both" in done.stderr


# ----------------------------------------------------------------------------- config


def user_config(**source) -> dict:
    return {"seeds": [0], "molecules": {"my-series": {
        "source": {"kind": "smiles", "path": "my_series.csv", **source},
        "models": {"smiles-arm": {"model": {"d_model": 32}}}}}}


def test_the_schema_checks_a_source_block_by_its_kind_and_fills_its_defaults(tmp_path):
    generated = schema.pipeline_schema()
    from snakemake.utils import validate

    config = user_config(smiles_column="SMILES")
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(generated))
    validate(config, str(tmp_path / "schema.yaml"))
    source = config["molecules"]["my-series"]["source"]
    assert source["split"] == "scaffold" and source["valid"] == 0.1 and source["standardize"] is True
    assert "smi_field" in source
    assert config["molecules"]["my-series"]["models"]["smiles-arm"]["train"]["max_steps"] > 0  # defaults
    for bad, message in ((user_config(split="cluster"), "'cluster' is not one of"),
                         (user_config(smiles_colum="x"), "'smiles_colum' was unexpected"),
                         (user_config(kind="nope"), "'nope' is not one of")):
        with pytest.raises(jsonschema.ValidationError, match=message):
            jsonschema.validate(bad, generated)
    sdf = copy.deepcopy(user_config())
    sdf["molecules"]["my-series"]["source"] = {"kind": "sdf", "path": "x.sdf", "smiles_column": "s"}
    with pytest.raises(jsonschema.ValidationError, match="'smiles_column' was unexpected"):
        jsonschema.validate(sdf, generated)
    with pytest.raises(jsonschema.ValidationError):  # a built-in dataset's name does not take a source
        jsonschema.validate({"seeds": [0], "molecules": {"moses": user_config()["molecules"]["my-series"]}},
                            generated)


def test_a_key_given_twice_in_a_config_file_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("molecules:\n  a: {models: {}}\n  b: {}\n  a: {}\n")
    with pytest.raises(ConfigError, match=r"line 4: 'a' is given twice in one block \(first on line 2\)"):
        check_unique_keys([path])
    path.write_text("molecules:\n  a: {models: {x: 1}}\nsequences:\n  a: {}\n")
    check_unique_keys([path])  # the same key in two blocks is YAML-valid (the workflow rejects it, below)


def test_the_catalog_knows_the_file_kinds():
    facts = catalog.describe(schema.BASE)
    assert facts["sources"]["smiles"] == {"domain": "molecules", "file_fields": ["path"]}
    assert facts["datasets"]["moses"]["domain"] == "molecules"
    assert set(sources.kinds("molecules")) >= {"smiles", "sdf"}


@pytest.mark.e2e
def test_the_workflow_plans_a_user_dataset_and_rejects_a_name_used_twice(tmp_path):
    copy_workflow(tmp_path)
    (tmp_path / "my_series.csv").write_text(SERIES.read_text())
    config = user_config()
    config["molecules"]["my-series"]["models"] = {"smiles-arm": {"model": {"d_model": 32}},
                                                  "graph-vae": {"model": {"latent_dim": 8}}}
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(config))
    done = run_snakemake(tmp_path, ["user.yaml"], "-n", "--quiet", "rules")
    assert done.returncode == 0, done.stderr
    for rule in ("molecules_import", "molecules_reference", "molecules_featurize", "molecules_train",
                 "molecules_sample", "molecules_evaluate", "report"):
        assert rule in done.stdout, (rule, done.stdout)
    assert "molecules_prepare " not in done.stdout  # the built-in datasets' rule is not used

    # a user dataset named like a built-in dataset of another group: two datasets under one name
    config["molecules"] = {"swissprot": config["molecules"]["my-series"]}
    config["sequences"] = {"swissprot": {"models": {"seq-arm": {"model": {}}}}}
    (tmp_path / "twice.yaml").write_text(yaml.safe_dump(config))
    done = run_snakemake(tmp_path, ["twice.yaml"], "-n")
    assert done.returncode != 0
    assert "dataset 'swissprot' is declared under both molecules and sequences" in done.stderr + done.stdout
