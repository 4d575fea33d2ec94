"""A new model family, written here without touching a package file: a ``GenerativeModel`` subclass
declaring its family name, likelihood kind and representation (as ``dgm_science/families/*.py`` do) and
one model of it registered in the sequences domain, run through the real ``dgm`` CLI (train -> sample
-> evaluate) into a results folder, where the report's trade-off table gives the family its own row.
What CONTRIBUTING.md's "Adding a family" asks of a contributor, checked."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from dgm_science import checkpoint, cli, registry, tradeoff
from dgm_science.resources import TrainResources
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.domains.sequences.tokens import BOS, EOS, PAD, SPECIALS, Layout
from dgm_science.report import write_report
from tests.domains.sequences.fixtures import prepared

FAMILY = "independent positions"
MODEL = "seq-independent"


class IndependentPositions(GenerativeModel):
    """The family: a length n ~ Categorical(softmax(a)) and, given n, residue i ~ Categorical(softmax(B_i))
    independently for i < n, so log p(x) = log softmax(a)[n] + sum_{i<n} log softmax(B_i)[x_i] (exact).
    Rows are the sequences domain's causal token layout, (B, L) ``<bos> residues <eos> <pad>*``."""

    likelihood = "exact"
    family = FAMILY
    representation = "no"

    def __init__(self, letters: int, max_residues: int) -> None:
        super().__init__()
        self.length_logits = nn.Parameter(torch.zeros(max_residues + 1))
        self.residue_logits = nn.Parameter(torch.zeros(max_residues, letters))

    def log_prob(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) nats: log p(n) + the residues' log-probabilities, the <eos> and padding being implied by n."""
        body = batch["tokens"][:, 1:]  # after <bos>
        length = (body == EOS).int().argmax(dim=1)  # residues before the first <eos>
        width = min(body.shape[1], self.residue_logits.shape[0])
        letters = (body[:, :width] - len(SPECIALS)).clamp(min=0)
        per_position = self.residue_logits[:width].log_softmax(-1).expand(len(body), -1, -1)
        scores = per_position.gather(2, letters.unsqueeze(-1)).squeeze(-1)
        inside = torch.arange(width, device=body.device) < length.unsqueeze(1)
        return self.length_logits.log_softmax(0)[length] + (scores * inside).sum(1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return -self.log_prob(batch).mean()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: torch.Tensor | None = None,
               temperature: float | None = None) -> torch.Tensor:
        """(n, max_residues + 2) token rows in the domain's causal layout; ``temperature`` divides the logits."""
        t = temperature or 1.0
        length = torch.multinomial((self.length_logits / t).softmax(0), n, replacement=True, generator=generator)
        residues = torch.multinomial((self.residue_logits / t).softmax(-1), n, replacement=True,
                                     generator=generator).T + len(SPECIALS)  # (n, max_residues)
        position = torch.arange(residues.shape[1])
        body = torch.where(position < length.unsqueeze(1), residues, torch.full_like(residues, PAD))
        body = torch.cat([body, torch.full((n, 1), PAD)], dim=1)
        body[torch.arange(n), length] = EOS
        return torch.cat([torch.full((n, 1), BOS), body], dim=1)


@dataclasses.dataclass(frozen=True)
class IndependentConfig:
    """``max_length``: tokens of a row, <bos> and <eos> included (the sequences domain's limit)."""

    max_length: int = 360


class SeqIndependent(ModelSpec):
    """Registry entry: the family over the sequences domain's tokens (as ``seq-arm`` registers one)."""

    domain: ClassVar[str] = "sequences"
    Config = IndependentConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    train_resources = TrainResources(seconds_per_step=0.01, mem_mb=4000)

    @staticmethod
    def build(cfg: IndependentConfig, state: dict[str, Any]) -> GenerativeModel:
        return IndependentPositions(len(state["alphabet"]), Layout.of(state).max_residues)


@pytest.fixture
def new_family(monkeypatch):
    """The model's registration, in a copy of the registry that the test's end discards; the family's
    name in the table's row order, as a contributor adds it to ``tradeoff.FAMILY_ORDER``."""
    registry.names("model")  # the package's own entries first
    monkeypatch.setattr(registry, "_REGISTRY", defaultdict(dict, {k: dict(v) for k, v in registry._REGISTRY.items()}))
    registry.register("model", MODEL)(SeqIndependent)
    monkeypatch.setattr(tradeoff, "FAMILY_ORDER", [FAMILY, *tradeoff.FAMILY_ORDER])


def test_a_new_family_runs_through_the_cli_and_gets_its_own_trade_off_row(new_family, tmp_path, capsys,
                                                                            one_thread):
    def dgm(*argv: Any) -> None:
        assert cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err

    data = prepared(tmp_path)
    run = tmp_path / "results" / "sequences" / "16s-v4" / MODEL / "seed0"
    config = {"model": {"max_length": 360},
              "train": {"batch_size": 32, "lr": 0.05, "max_steps": 40, "warmup_steps": 1, "val_every_steps": 40,
                        "val_batches": 1, "accelerator": "cpu", "devices": 1}}
    dgm("train", "--model", MODEL, "--data", data, "--config", json.dumps(config), "--out", run / "model.ckpt",
        "--seed", "0")
    info = checkpoint.load(run / "model.ckpt")["info"]
    assert (info["family"], info["likelihood"], info["representation"]) == (FAMILY, "exact", "no")
    assert info["typicality"]["n"] > 0  # the exact density scored the held-out typical set
    dgm("sample", "--checkpoint", run / "model.ckpt", "-n", "64", "--out", run / "samples.fasta", "--device", "cpu",
        "--timing", run / "sampling.json")
    dgm("evaluate", "--domain", "sequences", "--samples", run / "samples.fasta", "--reference", data,
        "--out", run / "metrics.json")
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["kmer_js_k3"] < 1, metrics
    # the table's row of the family, next to nothing else: what the checkpoint recorded, grouped by family
    cells = tradeoff.collect_cells(tmp_path / "results")
    assert [(c.model, c.family, c.likelihood, c.representation) for c in cells] == [(MODEL, FAMILY, "exact", "no")]
    rows = [[str(cell) for cell in cells] for _, cells in tradeoff.family_table(cells).rows]
    assert [row[:3] for row in rows] == [[f"<b>{FAMILY}</b>", f"{MODEL} (16s-v4)", "exact"]]
    assert rows[0][5].startswith(f"sequences/16s-v4, {MODEL}: ") and "samples/s at 1 thread" in rows[0][5]
    detail = [str(cell) for cell in tradeoff.detail_table(cells).rows[0][1]]
    assert detail[3].endswith("nats/residue (1 seed), validation, 12 items"), detail
    # the page: the family's row in the trade-off section, after the domains' sections
    write_report(tmp_path / "results", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    families = page.split('<h2 id="the-families-compared')[1]
    assert f"<b>{FAMILY}</b>" in families and f"{MODEL} (16s-v4)" in families
    # a checkpoint written before the family was recorded: the registered model's class tells
    payload = checkpoint.load(run / "model.ckpt")
    older = {k: v for k, v in payload["info"].items() if k not in ("family", "likelihood", "representation")}
    checkpoint.save(tmp_path / "old" / "model.ckpt", domain=payload["domain"], model_name=payload["model"],
                    config=payload["config"], state_dict=payload["state_dict"],
                    domain_state=payload["domain_state"], info=older)
    assert tradeoff._what_model(tmp_path / "old") == (FAMILY, "exact", "no")


def test_the_new_family_is_a_normalised_density():
    """Its log p sums to 1 over every row of a 2-letter alphabet up to 2 residues: the exact likelihood
    the trade-off table reports is one."""
    torch.manual_seed(0)
    model = IndependentPositions(letters=2, max_residues=2)
    with torch.no_grad():
        model.length_logits.normal_()
        model.residue_logits.normal_()
    rows = [[BOS, EOS, PAD, PAD]]
    rows += [[BOS, len(SPECIALS) + a, EOS, PAD] for a in range(2)]
    rows += [[BOS, len(SPECIALS) + a, len(SPECIALS) + b, EOS] for a in range(2) for b in range(2)]
    total = model.log_prob({"tokens": torch.tensor(rows)}).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-6)
    drawn = model.sample(500, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (500, 4) and (drawn[:, 0] == BOS).all()
    assert ((drawn == EOS).sum(1) == 1).all()  # one <eos> per row, padding after it
