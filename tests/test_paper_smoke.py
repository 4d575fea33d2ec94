"""The paper path end to end: paper.yaml with the paper-smoke overlay (every paper dataset, model
and rule; budgets of seconds, a small slice of the data) runs to the report on the committed
samples without any download. Every rule of the workflow but the fetches (whose outputs are
written from the samples) and the per-domain aggregate targets must have run, every paper run must
have its metrics, and the report must name every paper model under its dataset."""

from __future__ import annotations

import copy
import json
import re
import time

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

from dgm_science import api, registry
from dgm_science.schema import pipeline_schema
from dgm_science.tradeoff import FAMILY_ORDER
from tests.workflow_fixtures import ROOT, copy_workflow, executed_jobs, run_snakemake, write_raw_inputs

PAPER = ROOT / "workflows/config/paper.yaml"
OVERLAY = ROOT / "workflows/config/overlays/paper-smoke.yaml"
CONFIGS = ["workflows/config/paper.yaml", "workflows/config/overlays/paper-smoke.yaml"]
# one thread per job: tiny models run fastest on one thread, and two jobs share the two cores
OPTIONS = ("--max-threads", "1")

# Rules outside the run to the report: the fetches (their outputs are written from the committed
# samples), the per-domain aggregate targets (one per domain block of the paper config) and the
# goal-directed design rules, which paper.yaml leaves out: their published-scale run is the overlay
# overlays/design-benchmark.yaml (PMO's protocol), and the tiny pipeline test runs them end to end.
NOT_RUN = {"moses_fetch", "qm9_fetch", "qm9_3d_fetch", "ala2_fetch", "design", "design_optimize",
           *(key for key in yaml.safe_load(PAPER.read_text()) if key != "seeds"),
           # the rules of user datasets (a block with a source): the paper config has none; Snakemake runs them
           # in tests/test_user_sequences.py, test_user_trajectories.py, test_user_prediction.py and
           # test_user_md.py, and the your-data overlay plans every one (tests/data/workflow/)
           "molecules_import", "conformers_import", "peptide_md_import", "sequences_import", "trajectories_import",
           "trajectories_env_rollout"}


def merged_config() -> dict:
    """paper.yaml updated by the overlay the way Snakemake merges ``--configfile a b``."""
    config = copy.deepcopy(yaml.safe_load(PAPER.read_text()))
    update_config(config, yaml.safe_load(OVERLAY.read_text()))
    return config


def domains(config: dict) -> list[str]:
    """The domain blocks of a config: every top-level key but ``seeds`` and the registered applications'."""
    applications = {registry.get("application", name).config_key for name in registry.names("application")}
    return [key for key in config if key != "seeds" and key not in applications]


def runs(config: dict):
    for domain in domains(config):
        for dataset, ds_cfg in config.get(domain, {}).items():
            for model in ds_cfg["models"]:
                for seed in config["seeds"]:
                    yield domain, dataset, model, seed


def report_sections(report: str) -> dict[str, list[frozenset[str]]]:
    """{domain heading: [the registered models named in bold in each dataset's section]}."""
    models = set(registry.names("model"))
    sections = {}
    for domain in re.split(r"<h2[^>]*>", report)[1:]:
        heading, _, body = domain.partition("</h2>")
        if heading in ("Summary", "Contents"):  # the report's first screen, not a domain
            continue
        sections[heading] = [frozenset(set(re.findall(r"<b>([\w-]+)</b>", part)) & models)
                             for part in re.split(r"<h3[^>]*>", body)[1:]]
    return sections


def test_overlay_keeps_every_paper_dataset_and_model_and_validates():
    paper = yaml.safe_load(PAPER.read_text())
    overlay = yaml.safe_load(OVERLAY.read_text())
    merged = merged_config()
    jsonschema.validate(merged, pipeline_schema())
    for domain in domains(paper):
        # the overlay adds no dataset or model: it only shrinks the paper's
        assert set(overlay[domain]) == set(paper[domain]), domain
        for dataset, ds_cfg in paper[domain].items():
            assert set(overlay[domain][dataset]["models"]) == set(ds_cfg["models"]), (domain, dataset)
    assert set(merged["seeds"]) <= set(paper["seeds"])
    # the property predictors: the paper's models, shrunk the same way
    assert set(overlay["prediction"]["models"]) == set(paper["prediction"]["models"])
    for model, cfg in merged["prediction"]["models"].items():
        api.RunConfig.parse(model, cfg, where=f"paper-smoke:prediction:{model}")
        assert cfg["train"]["max_steps"] <= 10, model
        for key in ("accelerator", "devices", "precision", "num_workers", "keep_best"):
            assert cfg["train"].get(key) == paper["prediction"]["models"][model]["train"].get(key), (model, key)
    for domain, dataset, model, _ in runs(merged):
        cfg = merged[domain][dataset]["models"][model]
        paper_cfg = paper[domain][dataset]["models"][model]
        api.RunConfig.parse(model, cfg, where=f"paper-smoke:{dataset}:{model}")
        assert cfg["train"]["max_steps"] <= 10 and cfg["sample"]["n"] <= 100, (dataset, model)
        # the paper's runtime settings stay: devices, precision, data-loader workers, early stopping
        for key in ("accelerator", "devices", "precision", "num_workers", "keep_best"):
            assert cfg["train"].get(key) == paper_cfg["train"].get(key), (dataset, model, key)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, moses_smiles):
    """The workdir after the run, and the run's output (stdout + stderr)."""
    work = tmp_path_factory.mktemp("paper-smoke")
    copy_workflow(work)
    splits = {"train": moses_smiles[:260] + ["not_a_smiles"], "test": moses_smiles[260:],
              "test_scaffolds": moses_smiles[200:]}
    # paper.yaml's sequence datasets: full-length 16S genes and Swiss-Prot proteins
    write_raw_inputs(work, splits, {"16s": 40, "swissprot": 40})
    started = time.monotonic()
    result = run_snakemake(work, CONFIGS, *OPTIONS, timeout=1800)
    out = result.stdout + result.stderr
    (work / "snakemake.log").write_text(out)
    assert result.returncode == 0, out[-8000:]
    print(f"\npaper-smoke: {len(executed_jobs(out))} jobs in {time.monotonic() - started:.0f} s")
    return work, out


@pytest.mark.e2e
@pytest.mark.slow
def test_every_rule_of_the_workflow_ran(smoke_run):
    work, out = smoke_run
    listed = run_snakemake(work, CONFIGS, *OPTIONS, "--list-rules")
    assert listed.returncode == 0, listed.stderr[-3000:]
    rules = set(re.findall(r"^(\w+)(?: \(|$)", listed.stdout, flags=re.MULTILINE))  # docstrings follow in ( )
    executed = set(executed_jobs(out))
    assert {"all", "report", "molecules_train", "trajectories_rollout"} <= rules and executed <= rules
    assert rules - NOT_RUN - executed == set(), f"rules that never ran: {sorted(rules - NOT_RUN - executed)}"


@pytest.mark.e2e
@pytest.mark.slow
def test_every_paper_run_has_its_metrics_and_a_row_in_the_report(smoke_run):
    work, _ = smoke_run
    config = merged_config()
    for domain, dataset, model, seed in runs(config):
        run = work / f"results/{domain}/{dataset}/{model}/seed{seed}"
        assert json.loads((run / "metrics.json").read_text()), run
        assert (work / f"logs/{domain}/{dataset}/{model}/seed{seed}/train.log").is_file()
        if domain == "sequences":
            assert json.loads((run / "test_likelihood.json").read_text())["scored"] > 0
        if domain == "trajectories":
            rollout = json.loads((run / "rollout_d4rl.json").read_text())
            assert rollout["episodes"] == config[domain][dataset]["rollout"]["episodes"]
    # the report: one section per domain, in it one per dataset naming each of its models
    sections = report_sections((work / "results/report.html").read_text())
    # the property predictors: their metrics and their own section
    for predictor in ("hybrid-arm", "regressor-arm", "ensemble"):
        metrics = json.loads((work / f"results/prediction/{predictor}/metrics.json").read_text())
        assert metrics["test"]["scored"] > 0 and set(metrics["targets"]["names"]) == set(
            config["prediction"]["targets"]), predictor
    assert sections.pop("Property prediction that knows its uncertainty", None) is not None
    # the trade-off table: a row for each family the run has (all of them here)
    assert sections.pop("The families compared: trade-offs, measured", None) is not None
    tradeoff = (work / "results/report.html").read_text().split('<h2 id="the-families-compared')[1]
    for family in FAMILY_ORDER:
        assert f"<b>{family}</b>" in tradeoff, family
    assert len(sections) == len(domains(config))
    def canonical(datasets):  # a domain's datasets as a sorted tuple of sorted model tuples
        return tuple(sorted(tuple(sorted(models)) for models in datasets))

    found = sorted(canonical(section) for section in sections.values())
    expected = sorted(canonical(ds["models"] for ds in config[domain].values()) for domain in domains(config))
    assert found == expected, (found, expected)
    for dataset in ("moses", "qm9"):
        prepared = json.loads((work / f"resources/molecules/{dataset}/data/prepare.json").read_text())
        assert prepared["train"] == config["molecules"][dataset]["subset"]["train_size"]
    for dataset in ("16s", "swissprot"):
        compressed = json.loads((work / f"results/sequences/{dataset}/seq-arm/seed0/compression.json").read_text())
        assert compressed["round_trip"] == "bit-exact"
    for maze in ("umaze", "medium", "large"):
        expert = json.loads((work / f"resources/trajectories/pointmaze-{maze}/expert_rollout_d4rl.json").read_text())
        assert expert["episodes"] == config["trajectories"][f"pointmaze-{maze}"]["rollout"]["episodes"]
    assert json.loads((work / "resources/structures/ala2/md/simulate.json").read_text())["frames"] == 100


@pytest.mark.e2e
@pytest.mark.slow
def test_rerun_of_the_paper_config_does_nothing(smoke_run):
    work, _ = smoke_run
    dry = run_snakemake(work, CONFIGS, *OPTIONS, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr
