"""A corpus of bad input for the real ``dgm`` command, one or more cases per defect class of the
reliability issue, and the harness that runs it.

Each case runs ``python -m dgm_science.cli ...`` in a subprocess (so a hang is a timeout and a
traceback is what a user would see) inside its own copy of a small workspace (real checkpoints,
prepared data, samples, a compressed file), and is classified as

- ``clear``: exit code 2, exactly one ``dgm: error:`` line on stderr naming what the case says
  it must name, no traceback;
- ``ok``: a case that must succeed (exit 0) and whose ``check`` holds (e.g. ``metrics.json`` is
  valid JSON);
- ``traceback``, ``hang`` (past the case's timeout), ``silent`` (exit 0 where an error was due),
  ``unclear`` (exit 2 but the message does not name the file / option), ``lost`` (a file of the
  workspace was changed or removed), ``executed``
  (a planted pickle ran code), ``left`` (a failed command left a new file or temp file).

``python tests/robustness/corpus.py`` prints the table of outcomes; ``tests/robustness/
test_corpus.py`` asserts that every case comes out as it should.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
MOSES_SAMPLE = ROOT / "tests" / "data" / "moses_sample.smi"
V4 = ROOT / "data" / "sequences" / "rrna16s_v4.fasta.gz"
MARKER = "PWNED"
"""The file a planted pickle creates when it is unpickled."""


class Plant:
    """Unpickling this creates ``MARKER`` in the current folder (a code-executing pickle)."""

    def __reduce__(self):  # noqa: D105
        return (os.system, (f"touch {MARKER}",))


def planted_pickle() -> bytes:
    return pickle.dumps({"state_dict": Plant()})


# ----------------------------------------------------------------------------- workspace


def build_workspace(ws: Path) -> Path:
    """Real fixtures in ``ws``: tiny untrained smiles-arm and seq-arm checkpoints, prepared MOSES
    data and reference statistics, a samples file, a FASTA file and its compressed form, and the
    bad files the cases feed in."""
    import torch

    from dgm_science import api, checkpoint, cli, registry
    from dgm_science.config import SampleConfig, TrainConfig, from_dict
    from dgm_science.tokenizer import Tokenizer
    from dgm_science.domains.sequences.fasta import read_fasta, write_fasta

    ws.mkdir(parents=True, exist_ok=True)
    smiles = MOSES_SAMPLE.read_text().split()
    mol = ws / "mol"
    mol.mkdir()
    for name, part in [("train.smi", smiles[:150]), ("train_all.smi", smiles[:150]), ("valid.smi", smiles[150:]),
                       ("test.smi", smiles[150:])]:
        (mol / name).write_text("\n".join(part) + "\n")
    registry.get("domain", "molecules").reference(mol / "test.smi", mol / "ref_test.npz", n_jobs=1,
                                                  max_items=None, seed=0)

    def save(path: Path, name: str, domain: str, config: dict, state: dict) -> None:
        spec = registry.get("model", name)
        cfg = from_dict(spec.Config, config, name)
        torch.manual_seed(0)
        model = spec.build(cfg, state)
        checkpoint.save(path, domain=domain, model_name=name,
                        config=api.RunConfig(cfg, TrainConfig(), SampleConfig(n=10, batch_size=10)).to_dict(),
                        state_dict=model.state_dict(), domain_state=state)

    save(ws / "arm.ckpt", "smiles-arm", "molecules",
         {"d_model": 32, "n_layers": 1, "n_heads": 4, "max_length": 80},
         {"tokenizer": Tokenizer.fit("smiles", smiles).state()})
    records = read_fasta(V4)[:12]
    write_fasta(ws / "seqs.fasta", records)
    seq_spec = registry.get("model", "seq-arm")
    seq_cfg = from_dict(seq_spec.Config, {"d_model": 32, "n_layers": 1, "n_heads": 4, "max_length": 360,
                                          "conditional": False}, "seq-arm")
    seq_domain = registry.get("domain", "sequences")
    prep = ws / "seqprep"
    raw = prep / "raw"
    raw.mkdir(parents=True)
    sys.path.insert(0, str(ROOT))
    from tests.domains.sequences.fixtures import prepared

    data_dir = prepared(prep, n=40)
    state = seq_domain.fit_state(data_dir, seq_spec, seq_cfg)
    shutil.move(data_dir, ws / "seqdata")
    shutil.rmtree(prep)
    save(ws / "seq.ckpt", "seq-arm", "sequences", dataclasses.asdict(seq_cfg), state)

    def dgm(*argv: str) -> None:
        if cli.main(list(argv)) != 0:
            raise RuntimeError(f"workspace: dgm {' '.join(argv)} failed")

    dgm("sample", "--checkpoint", str(ws / "arm.ckpt"), "-n", "20", "--out", str(ws / "samples.csv"),
        "--device", "cpu", "--threads", "1")
    dgm("compress", "--checkpoint", str(ws / "seq.ckpt"), "--input", str(ws / "seqs.fasta"), "--out",
        str(ws / "seqs.dgmz"), "--device", "cpu", "--threads", "1")

    (ws / "invalid_samples.csv").write_text("smiles,valid\n" + "C1CC,0\n" * 5 + ",0\n" * 5)
    (ws / "header_only.csv").write_text("smiles,valid\n")
    (ws / "no_smiles_column.csv").write_text("molecule,valid\nCCO,1\n")
    (ws / "empty_ref").mkdir()
    bad = ws / "moses_bad"
    bad.mkdir()
    for name in ("train.csv.gz", "test.csv.gz"):
        with gzip.open(bad / name, "wt") as fh:
            fh.write("SMILES,SPLIT\n" + "".join(f"C1CC{i}(,train\n" for i in range(50)))
    good = ws / "moses_ok"
    good.mkdir()
    for name in ("train.csv.gz", "test.csv.gz"):
        with gzip.open(good / name, "wt") as fh:
            fh.write("SMILES,SPLIT\n" + "".join(f"{s},train\n" for s in smiles[:40]))
    (ws / "train_smiles.csv").write_text("smiles\n" + "\n".join(smiles[:20]) + "\n")
    (ws / "long.smi").write_text("C" * 1_000_000 + "\n")
    (ws / "afile").write_text("a regular file\n")
    (ws / "adir").mkdir()
    (ws / "planted.ckpt").write_bytes(planted_pickle())
    torch.save({"x": 1}, ws / "not_dgm.ckpt")
    (ws / "garbage.dgmz").write_bytes(b"DGMZ\x00\x01" + os.urandom(64))
    whole = (ws / "seqs.dgmz").read_bytes()
    (ws / "truncated.dgmz").write_bytes(whole[: len(whole) // 2])
    (ws / "binary.fasta").write_bytes(os.urandom(256))
    (ws / "empty.fasta").write_text("")
    (ws / "bad_letters.fasta").write_text(">s1\nACGTJJJJZZZ\n")
    (ws / "nan_clip.yaml").write_text("train: {grad_clip: .nan}\n")
    (ws / "bad.yaml").write_text("train: {batch_size: [\n")
    (ws / "objective.yaml").write_text("name: ok\ncomponents:\n  - {type: qed}\n")
    (ws / "unknown_component.yaml").write_text("name: x\ncomponents:\n  - {type: potency, weight: 1}\n")
    for name, checkpoint in (("planted_predictor", "planted.ckpt"), ("arm_predictor", "arm.ckpt")):
        (ws / f"{name}.yaml").write_text(f"components:\n  - {{type: predictor, checkpoint: {checkpoint}, target: Act, "
                                         f"transform: {{type: step, low: 7, high: 20}}}}\n")
    (ws / "partial.partial-scores.csv").write_text("canonical,total\nCCO,1\n")
    for name, content in [("corrupt", b"\x00not a checkpoint"), ("planted", planted_pickle())]:
        work = ws / f"run_{name}" / "train" / "checkpoints"
        work.mkdir(parents=True)
        (work / "last.ckpt").write_bytes(content)
    return ws


# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    klass: str
    """Which defect class of the issue the case belongs to."""
    argv: tuple[str, ...]
    names: tuple[str, ...] = ()
    """What the error line must name (a file, option or key), after placeholder substitution."""
    expect: str = "clear"
    check: Callable[[Path], str | None] | None = None
    """For ``expect="ok"``: returns a complaint, or None when the result is right."""
    timeout: float = 90.0
    may_create: tuple[str, ...] = ()
    """Workspace files an ``ok`` case is meant to write."""


def valid_json(name: str) -> Callable[[Path], str | None]:
    def check(ws: Path) -> str | None:
        try:
            json.loads((ws / name).read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except (OSError, ValueError) as err:
            return f"{name} is not valid JSON ({err})"
        return None

    return check


def stale_temp_removed(ws: Path) -> str | None:
    left = sorted(p.name for p in ws.glob(".again.csv.*"))
    return f"stale temp files left: {left}" if left else None


def _train(out: str, config: str, *extra: str) -> tuple[str, ...]:
    return ("train", "--model", "smiles-arm", "--data", "{ws}/mol", "--out", out, "--config", config, *extra)


TRAIN_OK = ('{"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 80}, '
            '"train": {"batch_size": 16, "max_steps": 2, "val_every_steps": 1000, "accelerator": "cpu"}}')


def _with(train: str) -> str:
    """TRAIN_OK with the given train keys replaced."""
    config = json.loads(TRAIN_OK)
    config["train"].update(json.loads(train))
    return json.dumps(config)


def _model(model: str) -> str:
    config = json.loads(TRAIN_OK)
    config["model"].update(json.loads(model))
    return json.dumps(config)


def _optimize(prior: str, objective: str, out: str = "{ws}/run") -> tuple[str, ...]:
    return ("optimize", "--prior", prior, "--objective", objective, "--budget", "10", "--out", out, "--device", "cpu")


SAMPLE = ("sample", "--checkpoint", "{ws}/arm.ckpt", "-n", "5", "--device", "cpu", "--threads", "1")
EVALUATE = ("evaluate", "--domain", "molecules", "--reference", "{ws}/mol")

CASES: list[Case] = [
    # --- security: nothing unpickled; crafted / corrupt resume files named -----------------------
    Case("planted-model-ckpt", "security", (*SAMPLE[:2], "{ws}/planted.ckpt", *SAMPLE[3:], "--out", "{ws}/o.csv"),
         ("planted.ckpt",)),
    Case("lightning-ckpt-as-model", "security",
         (*SAMPLE[:2], "{ws}/not_dgm.ckpt", *SAMPLE[3:], "--out", "{ws}/o.csv"), ("not_dgm.ckpt",)),
    Case("planted-resume-ckpt", "security", _train("{ws}/run_planted/m.ckpt", TRAIN_OK),
         ("run_planted/train/checkpoints/last.ckpt", "--fresh")),
    Case("corrupt-resume-ckpt", "lost", _train("{ws}/run_corrupt/m.ckpt", TRAIN_OK),
         ("run_corrupt/train/checkpoints/last.ckpt", "--fresh")),
    # --- nothing lost: output = input, several outputs, folders, temps ----------------------------
    Case("compress-out-is-input", "lost", ("compress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.fasta",
                                           "--out", "{ws}/seqs.fasta", "--device", "cpu"), ("--out", "seqs.fasta")),
    Case("compress-out-is-input-spelled-differently", "lost",
         ("compress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.fasta", "--out",
          "{ws}/adir/../seqs.fasta", "--device", "cpu"), ("--out", "seqs.fasta")),
    Case("compress-stats-is-checkpoint", "lost",
         ("compress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.fasta", "--out", "{ws}/x.dgmz",
          "--stats", "{ws}/seq.ckpt", "--device", "cpu"), ("--stats", "seq.ckpt")),
    Case("decompress-out-is-input", "lost",
         ("decompress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.dgmz", "--out", "{ws}/seqs.dgmz",
          "--device", "cpu"), ("--out", "seqs.dgmz")),
    Case("likelihood-out-is-fasta", "lost",
         ("likelihood", "--checkpoint", "{ws}/seq.ckpt", "--fasta", "{ws}/seqs.fasta", "--out", "{ws}/seqs.fasta",
          "--device", "cpu"), ("--out", "seqs.fasta")),
    Case("featurize-out-is-smiles", "lost", ("featurize", "--smiles", "{ws}/mol/train.smi", "--out",
                                             "{ws}/mol/train.smi"), ("--out", "train.smi")),
    Case("sample-out-is-checkpoint", "lost", (*SAMPLE, "--out", "{ws}/arm.ckpt"), ("--out", "arm.ckpt")),
    Case("sample-out-is-train-smiles", "lost",
         (*SAMPLE, "--out", "{ws}/train_smiles.csv", "--novel", "--train-smiles", "{ws}/train_smiles.csv"),
         ("--out", "train_smiles.csv")),
    Case("evaluate-out-is-samples", "lost", (*EVALUATE, "--samples", "{ws}/samples.csv", "--out", "{ws}/samples.csv"),
         ("--out", "samples.csv")),
    Case("prepare-out-is-raw", "lost", ("prepare", "moses", "--raw", "{ws}/moses_ok", "--out", "{ws}/moses_ok",
                                        "--val-size", "5"), ("--out", "moses_ok")),
    Case("sample-sdf-unwritable-after-out", "lost",
         (*SAMPLE, "--out", "{ws}/samples.csv", "--sdf", "{ws}/afile/x.sdf"), ("--sdf", "afile")),
    Case("sample-png-unwritable-after-out", "lost",
         (*SAMPLE, "--out", "{ws}/samples.csv", "--png", "{ws}/afile/x.png"), ("--png", "afile")),
    Case("compress-stats-unwritable-after-out", "lost",
         ("compress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.fasta", "--out", "{ws}/seqs.dgmz",
          "--stats", "{ws}/afile/s.json", "--device", "cpu"), ("--stats", "afile")),
    Case("stale-temp-removed", "lost", (*SAMPLE, "--out", "{ws}/again.csv"), expect="ok",
         check=stale_temp_removed, may_create=("again.csv",)),
    # --- one clear error: unwritable folders, folders as files, bad numbers, bad headers ----------
    Case("sample-out-under-a-file", "error", (*SAMPLE, "--out", "{ws}/afile/x.csv"), ("--out", "afile")),
    Case("sample-out-is-a-folder", "error", (*SAMPLE, "--out", "{ws}/adir"), ("--out", "adir")),
    Case("evaluate-out-is-a-folder", "error", (*EVALUATE, "--samples", "{ws}/samples.csv", "--out", "{ws}/adir"),
         ("--out", "adir")),
    Case("evaluate-out-under-a-file", "error", (*EVALUATE, "--samples", "{ws}/samples.csv", "--out",
                                                "{ws}/afile/m.json"), ("--out", "afile")),
    Case("train-out-under-a-file", "error", _train("{ws}/afile/m.ckpt", TRAIN_OK), ("--out", "afile")),
    Case("report-out-under-a-file", "error", ("report", "--results", "{ws}/adir", "--out", "{ws}/afile/r.html"),
         ("--out", "afile")),
    Case("negative-width", "error", _train("{ws}/m.ckpt", _model('{"d_model": -8}')), ("d_model",)),
    Case("zero-heads", "error", _train("{ws}/m.ckpt", _model('{"n_heads": 0}')), ("n_heads",)),
    Case("nan-grad-clip", "error", _train("{ws}/m.ckpt", "{ws}/nan_clip.yaml"), ("grad_clip",)),
    Case("nan-grad-clip-inline", "error", _train("{ws}/m.ckpt", _with('{"grad_clip": NaN}')), ("grad_clip",)),
    Case("zero-lr", "error", _train("{ws}/m.ckpt", _with('{"lr": 0}')), ("lr",)),
    Case("max-steps-minus-one", "error", _train("{ws}/m.ckpt", _with('{"max_steps": -1}')), ("max_steps",)),
    Case("max-time-zero", "error", _train("{ws}/m.ckpt", _with('{"max_time_minutes": 0}')), ("max_time_minutes",)),
    Case("batch-size-string", "error", _train("{ws}/m.ckpt", _with('{"batch_size": "64"}')), ("batch_size",)),
    Case("unknown-config-key", "error", _train("{ws}/m.ckpt", _with('{"bach_size": 4}')), ("bach_size",)),
    Case("config-not-yaml", "error", _train("{ws}/m.ckpt", "{ws}/bad.yaml"), ("bad.yaml",)),
    Case("config-missing", "error", _train("{ws}/m.ckpt", "{ws}/nope.yaml"), ("nope.yaml",)),
    Case("train-data-missing", "error", ("train", "--model", "smiles-arm", "--data", "{ws}/nodata", "--out",
                                         "{ws}/m.ckpt", "--config", TRAIN_OK), ("nodata",)),
    Case("train-data-of-other-domain", "error", ("train", "--model", "seq-arm", "--data", "{ws}/mol", "--out",
                                                 "{ws}/m.ckpt"), ("mol",)),
    Case("train-seed-too-large", "error", _train("{ws}/m.ckpt", TRAIN_OK, "--seed", str(2**70)), ("--seed",)),
    Case("sample-seed-negative", "error", (*SAMPLE, "--out", "{ws}/o.csv", "--seed", "-5"), ("--seed",)),
    Case("sample-nan-temperature", "error", (*SAMPLE, "--out", "{ws}/o.csv", "--temperature", "nan"),
         ("--temperature",)),
    Case("sample-inf-temperature", "error", (*SAMPLE, "--out", "{ws}/o.csv", "--temperature", "inf"),
         ("--temperature",)),
    Case("sample-wrong-suffix", "error", (*SAMPLE, "--out", "{ws}/o.fasta"), ("--out", "o.fasta")),
    Case("checkpoint-is-a-folder", "error", (*SAMPLE[:2], "{ws}/adir", *SAMPLE[3:], "--out", "{ws}/o.csv"),
         ("adir",)),
    Case("decompress-malformed-header", "error",
         ("decompress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/garbage.dgmz", "--out", "{ws}/o.fasta",
          "--device", "cpu"), ("garbage.dgmz",)),
    Case("decompress-truncated", "error",
         ("decompress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/truncated.dgmz", "--out",
          "{ws}/o.fasta", "--device", "cpu"), ("truncated.dgmz",)),
    Case("decompress-a-fasta", "error",
         ("decompress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.fasta", "--out", "{ws}/o.fasta",
          "--device", "cpu"), ("seqs.fasta",)),
    Case("decompress-with-molecule-model", "error",
         ("decompress", "--checkpoint", "{ws}/arm.ckpt", "--input", "{ws}/seqs.dgmz", "--out", "{ws}/o.fasta",
          "--device", "cpu"), ("arm.ckpt",)),
    Case("likelihood-binary-fasta", "error",
         ("likelihood", "--checkpoint", "{ws}/seq.ckpt", "--fasta", "{ws}/binary.fasta", "--out", "{ws}/o.json",
          "--device", "cpu"), ("binary.fasta",)),
    Case("likelihood-bad-letters", "error",
         ("likelihood", "--checkpoint", "{ws}/seq.ckpt", "--fasta", "{ws}/bad_letters.fasta", "--out",
          "{ws}/o.json", "--device", "cpu"), ("bad_letters.fasta",)),
    Case("compress-with-molecule-model", "error",
         ("compress", "--checkpoint", "{ws}/arm.ckpt", "--input", "{ws}/seqs.fasta", "--out", "{ws}/o.dgmz",
          "--device", "cpu"), ("arm.ckpt",)),
    Case("evaluate-empty-reference", "error", ("evaluate", "--domain", "molecules", "--reference", "{ws}/empty_ref",
                                               "--samples", "{ws}/samples.csv", "--out", "{ws}/m.json"),
         ("empty_ref",)),
    Case("evaluate-header-only", "error", (*EVALUATE, "--samples", "{ws}/header_only.csv", "--out", "{ws}/m.json"),
         ("header_only.csv",)),
    Case("evaluate-missing-column", "error",
         (*EVALUATE, "--samples", "{ws}/no_smiles_column.csv", "--out", "{ws}/m.json"), ("no_smiles_column.csv",)),
    Case("evaluate-unknown-domain", "error", ("evaluate", "--domain", "proteins", "--reference", "{ws}/mol",
                                              "--samples", "{ws}/samples.csv", "--out", "{ws}/m.json"), ("proteins",)),
    Case("optimize-sequence-prior", "error", _optimize("{ws}/seq.ckpt", "{ws}/objective.yaml"), ("seq.ckpt",)),
    Case("optimize-unknown-component", "error", _optimize("{ws}/arm.ckpt", "{ws}/unknown_component.yaml"),
         ("unknown_component.yaml", "potency")),
    Case("optimize-broken-yaml", "error", _optimize("{ws}/arm.ckpt", "{ws}/bad.yaml"), ("bad.yaml",)),
    Case("optimize-classifier-task", "error", _optimize("{ws}/arm.ckpt", "pmo:drd2"), ("drd2",)),
    Case("optimize-planted-predictor", "security", _optimize("{ws}/arm.ckpt", "{ws}/planted_predictor.yaml"),
         ("planted_predictor.yaml", "planted.ckpt")),
    Case("optimize-predictor-without-targets", "error", _optimize("{ws}/arm.ckpt", "{ws}/arm_predictor.yaml"),
         ("arm_predictor.yaml", "arm.ckpt")),
    Case("optimize-foreign-partial-scores", "error", _optimize("{ws}/arm.ckpt", "{ws}/objective.yaml", "{ws}/partial"),
         ("partial.partial-scores.csv",)),
    Case("optimize-out-is-prior-folder", "lost", _optimize("{ws}/arm.ckpt", "{ws}/objective.yaml", "{ws}/arm.ckpt"),
         ("--out",)),
    Case("decorate-scaffold-without-attachment", "error",
         ("decorate", "--checkpoint", "{ws}/arm.ckpt", "--scaffold", "c1ccccc1", "-n", "5", "--out", "{ws}/d.csv",
          "--device", "cpu"), ("--scaffold",)),
    Case("decorate-sequence-model", "error",
         ("decorate", "--checkpoint", "{ws}/seq.ckpt", "--scaffold", "c1ccc(*)cc1", "-n", "5", "--out",
          "{ws}/d.csv", "--device", "cpu"), ("seq.ckpt",)),
    Case("report-bad-input-spec", "error", ("report", "--out", "{ws}/r.html", "--input", "nopath"), ("--input",)),
    Case("prepare-unknown-dataset", "error", ("prepare", "mosesx", "--raw", "{ws}/moses_bad", "--out", "{ws}/p"),
         ("mosesx",)),
    Case("reference-missing-data", "error", ("reference", "--domain", "molecules", "--data", "{ws}/no.smi", "--out",
                                             "{ws}/r.npz"), ("no.smi",)),
    # --- silent success on nonsense -----------------------------------------------------------------
    Case("prepare-all-invalid", "silent", ("prepare", "moses", "--raw", "{ws}/moses_bad", "--out", "{ws}/p",
                                           "--val-size", "5"), ("train.csv.gz",)),
    Case("evaluate-all-invalid-json", "silent", (*EVALUATE, "--samples", "{ws}/invalid_samples.csv", "--out",
                                                 "{ws}/m.json"), expect="ok", check=valid_json("m.json"),
         may_create=("m.json",)),
    # --- hangs --------------------------------------------------------------------------------------
    Case("featurize-megabyte-smiles", "hang", ("featurize", "--smiles", "{ws}/long.smi", "--out", "{ws}/g.npz"),
         ("long.smi",), timeout=60),
    Case("sample-ten-million", "hang", (*SAMPLE[:4], str(10**7), *SAMPLE[5:], "--out", "{ws}/o.csv"),
         ("-n", "--yes")),
    Case("sample-trillion", "hang", (*SAMPLE[:4], str(10**12), *SAMPLE[5:], "--out", "{ws}/o.csv"), ("-n",),
         timeout=60),
    Case("collect-trillion-steps", "hang", ("collect", "umaze", "--out", "{ws}/c", "--episodes", "1000000",
                                            "--episode-steps", "1000000"), ("--yes",), timeout=60),
    Case("simulate-huge", "hang", ("simulate", "--raw", "{ws}/adir", "--out", "{ws}/md", "--nanoseconds", "1e9"),
         ("--nanoseconds",), timeout=60),
    # --- more of the same classes, across the domains ---------------------------------------------
    Case("sequences-evaluate-empty-fasta", "error", ("evaluate", "--domain", "sequences", "--samples",
                                                     "{ws}/empty.fasta", "--reference", "{ws}/seqdata", "--out",
                                                     "{ws}/m.json"), ("empty.fasta",)),
    Case("sequences-evaluate-no-prepared-data", "error",
         ("evaluate", "--domain", "sequences", "--samples", "{ws}/seqs.fasta", "--reference", "{ws}/adir", "--out",
          "{ws}/m.json"), ("adir",)),
    Case("sample-sequence-model-wrong-suffix", "error",
         ("sample", "--checkpoint", "{ws}/seq.ckpt", "-n", "3", "--out", "{ws}/o.csv", "--device", "cpu"),
         ("--out", "o.csv")),
    Case("sample-option-of-another-domain", "error", (*SAMPLE, "--out", "{ws}/o.csv", "--label", "Firmicutes"),
         ("--label",)),
    Case("sample-zero-threads", "error", (*SAMPLE[:-1], "0", "--out", "{ws}/o.csv"), ("--threads",)),
    Case("likelihood-empty-fasta", "error",
         ("likelihood", "--checkpoint", "{ws}/seq.ckpt", "--fasta", "{ws}/empty.fasta", "--out", "{ws}/o.json",
          "--device", "cpu"), ("empty.fasta",)),
    Case("compress-binary-input", "error",
         ("compress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/binary.fasta", "--out", "{ws}/o.dgmz",
          "--device", "cpu"), ("binary.fasta",)),
    Case("decompress-out-is-a-folder", "error",
         ("decompress", "--checkpoint", "{ws}/seq.ckpt", "--input", "{ws}/seqs.dgmz", "--out", "{ws}/adir",
          "--device", "cpu"), ("--out", "adir")),
    Case("rollout-molecule-checkpoint", "error", ("rollout", "--checkpoint", "{ws}/arm.ckpt", "--episodes", "1",
                                                  "--out", "{ws}/r.json", "--device", "cpu"), ("arm.ckpt",)),
    Case("rollout-no-policy", "error", ("rollout", "--out", "{ws}/r.json"), ("--checkpoint", "--baseline")),
    Case("prepare-sequences-missing-raw", "error", ("prepare", "16s-v4", "--raw", "{ws}/nope", "--out", "{ws}/p"),
         ("nope",)),
    Case("fetch-unknown-dataset", "error", ("fetch", "nosuch", "--out", "{ws}/f"), ("nosuch",)),
    Case("train-devices-garbage", "error", _train("{ws}/m.ckpt", _with('{"devices": "abc"}')), ("devices",)),
    Case("train-inline-config-not-json", "error", _train("{ws}/m.ckpt", '{"train": '), ("inline config",)),
    Case("report-input-missing", "error", ("report", "--results", "{ws}/adir", "--out", "{ws}/r.html", "--input",
                                           "structures/qm9-3d/data_row={ws}/nope.json"), ("nope.json",)),
    Case("evaluate-trajectories-not-a-dataset", "error",
         ("evaluate", "--domain", "trajectories", "--samples", "{ws}/samples.csv", "--reference", "{ws}/mol",
          "--out", "{ws}/m.json"), ("mol",)),
    Case("simulate-missing-raw", "lost", ("simulate", "--raw", "{ws}/adir", "--out", "{ws}/md", "--nanoseconds",
                                          "0.001"), ("adir",)),
    Case("predict-generative-checkpoint", "error",
         ("predict", "--checkpoint", "{ws}/arm.ckpt", "--smiles", "{ws}/mol/test.smi", "--out", "{ws}/p.csv",
          "--device", "cpu"), ("arm.ckpt", "predicts no properties")),
    Case("predict-missing-smiles", "error",
         ("predict", "--checkpoint", "{ws}/arm.ckpt", "--smiles", "{ws}/nope.smi", "--out", "{ws}/p.csv",
          "--device", "cpu"), ("nope.smi",)),
    Case("predict-out-overwrites-checkpoint", "lost",
         ("predict", "--checkpoint", "{ws}/arm.ckpt", "--smiles", "{ws}/mol/test.smi", "--out", "{ws}/arm.ckpt",
          "--device", "cpu"), ("--out",)),
    Case("evaluate-predictor-generative-checkpoint", "error",
         ("evaluate-predictor", "--checkpoint", "{ws}/arm.ckpt", "--data", "{ws}/mol", "--out", "{ws}/m.json",
          "--device", "cpu"), ("arm.ckpt",)),
    Case("simulate-negative", "error", ("simulate", "--raw", "{ws}/adir", "--out", "{ws}/md", "--nanoseconds", "-1"),
         ("--nanoseconds",)),
]


# ----------------------------------------------------------------------------- harness


@dataclasses.dataclass
class Outcome:
    case: Case
    kind: str
    rc: int | None
    stderr: str
    seconds: float
    detail: str = ""


def _snapshot(ws: Path) -> dict[str, str]:
    files = {}
    for path in sorted(ws.rglob("*")):
        rel = str(path.relative_to(ws))
        if path.is_file() and not path.is_symlink():
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            files[rel + "/"] = "dir"
    return files


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def run_case(case: Case, pristine: Path, scratch: Path) -> Outcome:
    ws = scratch / case.id
    shutil.copytree(pristine, ws, symlinks=True)
    if case.id == "stale-temp-removed":  # temp files killed runs left: of a process gone, of a day ago
        dead = _dead_pid()
        host = socket.gethostname().replace(".", "-")
        (ws / f".again.csv.{host}.{dead}.abcd1234.tmp").write_text("half a file")
        old = ws / ".again.csv.other-host.7.abcd1234.tmp"
        old.write_text("half a file")
        os.utime(old, (time.time() - 3 * 86400,) * 2)
    before = _snapshot(ws)
    argv = [a.replace("{ws}", str(ws)) for a in case.argv]
    names = [n.replace("{ws}", str(ws)) for n in case.names]
    env = {**os.environ, "DGLBACKEND": "pytorch", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "dgm_science.cli", *argv], cwd=ws, env=env, text=True,
                              capture_output=True, timeout=case.timeout)
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        return Outcome(case, "hang", None, stderr, time.perf_counter() - start, f"> {case.timeout:.0f} s")
    seconds = time.perf_counter() - start
    stderr = proc.stderr
    if (ws / MARKER).exists():
        return Outcome(case, "executed", proc.returncode, stderr, seconds, "a planted pickle ran code")
    after = _snapshot(ws)
    expected_new = {m for m in case.may_create} if case.expect == "ok" else set()
    changed = sorted(k for k in before if k in after and before[k] != after[k] and k not in expected_new)
    removed = sorted(k for k in before if k not in after and not (case.id == "stale-temp-removed"
                                                                   and k.startswith(".again.csv")))
    added = sorted(k for k in after if k not in before and k not in expected_new and k != "__pycache__/")
    if "Traceback (most recent call last)" in stderr:
        return Outcome(case, "traceback", proc.returncode, stderr, seconds, stderr.strip().splitlines()[-1])
    if changed or removed:
        return Outcome(case, "lost", proc.returncode, stderr, seconds, f"changed {changed} removed {removed}")
    if case.expect != "ok" and proc.returncode == 0:
        return Outcome(case, "silent", 0, stderr, seconds, f"exit 0; wrote {added}")
    if added:
        return Outcome(case, "left", proc.returncode, stderr, seconds, f"left {added}")
    if case.expect == "ok":
        complaint = case.check(ws) if proc.returncode == 0 and case.check else None
        if proc.returncode != 0:
            return Outcome(case, "failed", proc.returncode, stderr, seconds, stderr.strip()[-300:])
        return Outcome(case, "ok" if complaint is None else "silent", 0, stderr, seconds, complaint or "")
    if proc.returncode == 0:
        return Outcome(case, "silent", 0, stderr, seconds, "exit 0")
    errors = [line for line in stderr.splitlines() if line.startswith("dgm: error:") or line.startswith("usage:")
              or ": error:" in line]
    if proc.returncode != 2 or len([e for e in errors if "error:" in e]) != 1:
        return Outcome(case, "unclear", proc.returncode, stderr, seconds, stderr.strip()[-300:])
    line = next(e for e in errors if "error:" in e)
    missing = [n for n in names if n not in line]
    if missing:
        return Outcome(case, "unclear", proc.returncode, stderr, seconds, f"{line!r} does not name {missing}")
    return Outcome(case, "clear", 2, stderr, seconds, line)


def run_corpus(cases: list[Case] | None = None, workers: int = 2) -> list[Outcome]:
    cases = CASES if cases is None else cases
    scratch = Path(tempfile.mkdtemp(prefix="dgm-corpus-"))
    try:
        pristine = build_workspace(scratch / "_pristine")
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda c: run_case(c, pristine, scratch), cases))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    outcomes = run_corpus(workers=int(os.environ.get("CORPUS_WORKERS", "2")))
    counts: dict[str, dict[str, int]] = {}
    for o in outcomes:
        good = o.kind == ("ok" if o.case.expect == "ok" else "clear")
        print(f"{'PASS' if good else 'FAIL'}\t{o.case.klass}\t{o.case.id}\t{o.kind}\t{o.seconds:.1f}s\t"
              f"{o.detail[:200]}")
        row = counts.setdefault(o.case.klass, {})
        row[o.kind] = row.get(o.kind, 0) + 1
    print(json.dumps(counts, indent=1))
    total: dict[str, int] = {}
    for row in counts.values():
        for k, v in row.items():
            total[k] = total.get(k, 0) + v
    print("total", len(outcomes), json.dumps(total))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
