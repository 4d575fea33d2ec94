"""Configs: every shipped config validates, the schema mirrors the dataclasses, bad keys fail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from dgm_science import api, registry
from dgm_science.config import ConfigError, SampleConfig, TrainConfig, from_dict, load_mapping

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflows/schemas/config.schema.yaml").read_text())
CONFIGS = sorted((ROOT / "workflows/config").glob("*.yaml")) + sorted((ROOT / "tests/data").glob("*.yaml"))
SCHEMA_DEFS = {"train": TrainConfig, "sample": SampleConfig, "smiles_arm": registry.get("model", "smiles-arm").Config,
               "graph_vae": registry.get("model", "graph-vae").Config,
               "graph_flow": registry.get("model", "graph-flow").Config,
               "graph_diffusion": registry.get("model", "graph-diffusion").Config,
               "qm9_edm": registry.get("model", "qm9-edm").Config, "ala2_flow": registry.get("model", "ala2-flow").Config,
               "seq_arm": registry.get("model", "seq-arm").Config,
               "seq_diffusion": registry.get("model", "seq-diffusion").Config,
               "seq_vae": registry.get("model", "seq-vae").Config,
               "maze_diffuser": registry.get("model", "maze-diffuser").Config,
               "traj_arm": registry.get("model", "traj-arm").Config}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_parse(path):
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, SCHEMA)
    for domain in ("molecules", "structures", "sequences", "trajectories"):
        for dataset in config.get(domain, {}).values():
            for name, model_config in dataset["models"].items():
                api.RunConfig.parse(name, model_config, where=f"{path.name}:{name}")


def _merged(base, overlay):
    """Snakemake's deep merge of config files given in order."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "workflows/config/overlays").glob("*.yaml")), ids=lambda p: p.name)
def test_overlays_validate_on_top_of_their_base(path):
    """``paper-*`` overlays go on top of paper.yaml, the others on top of the default."""
    base = "paper.yaml" if path.name.startswith("paper-") else "default.yaml"
    merged = _merged(yaml.safe_load((ROOT / "workflows/config" / base).read_text()), yaml.safe_load(path.read_text()))
    jsonschema.validate(merged, SCHEMA)
    for domain in ("molecules", "structures", "sequences", "trajectories"):
        for dataset in merged.get(domain, {}).values():
            for name, model_config in dataset["models"].items():
                api.RunConfig.parse(name, model_config, where=f"{path.name}:{name}")
    if path.name == "molecules-table.yaml":
        assert set(merged["molecules"]["qm9"]["models"]) == set(merged["molecules"]["moses"]["models"])
    if path.name == "all-mazes.yaml":
        assert set(merged["trajectories"]) == {"pointmaze-umaze", "pointmaze-medium", "pointmaze-large"}


@pytest.mark.parametrize("name", sorted(SCHEMA_DEFS))
def test_schema_mirrors_dataclass_keys_and_defaults(name):
    cls = SCHEMA_DEFS[name]
    props = SCHEMA["$defs"][name]["properties"]
    fields = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
              for f in dataclasses.fields(cls)}
    assert set(props) == set(fields)
    for key, default in fields.items():
        assert props[key]["default"] == default, key


def test_every_registered_model_is_in_the_schema():
    molecules = SCHEMA["$defs"]["molecule_dataset"]["properties"]["models"]["properties"]
    assert set(molecules) == {n for n in registry.names("model") if registry.get("model", n).domain == "molecules"}
    structures = {name for dataset in ("qm9_3d_dataset", "ala2_dataset")
                  for name in SCHEMA["$defs"][dataset]["properties"]["models"]["properties"]}
    sequences = set(SCHEMA["$defs"]["sequence_dataset"]["properties"]["models"]["properties"])
    assert sequences == {n for n in registry.names("model") if registry.get("model", n).domain == "sequences"}
    trajectories = set(SCHEMA["$defs"]["trajectory_dataset"]["properties"]["models"]["properties"])
    assert trajectories == {n for n in registry.names("model") if registry.get("model", n).domain == "trajectories"}
    assert structures == {n for n in registry.names("model")
                          if registry.get("model", n).domain not in ("molecules", "sequences", "trajectories")}


def test_unknown_key_and_wrong_type_are_named():
    with pytest.raises(ConfigError, match=r"config\.train: unknown key\(s\) bach_size"):
        api.RunConfig.parse("smiles-arm", {"train": {"bach_size": 3}})
    with pytest.raises(ConfigError, match=r"config\.model\.d_model: expected an integer"):
        api.RunConfig.parse("smiles-arm", {"model": {"d_model": "big"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) optimizer"):
        api.RunConfig.parse("smiles-arm", {"optimizer": {}})
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(TrainConfig, {"lr": True}, "t")
    assert from_dict(TrainConfig, {"lr": 1, "max_time_minutes": None}, "t").lr == 1.0


def test_schema_rejects_unknown_pipeline_keys():
    config = yaml.safe_load((ROOT / "workflows/config/default.yaml").read_text())
    config["molecules"]["moses"]["models"]["smiles-arm"]["train"]["bach_size"] = 3
    with pytest.raises(jsonschema.ValidationError, match="bach_size"):
        jsonschema.validate(config, SCHEMA)


def test_load_mapping_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_mapping(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_mapping("{bad json")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_mapping(tmp_path / "list.yaml")


def test_conda_env_lists_the_same_packages_as_pyproject():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "envs/conda.yaml").read_text())
    pip_list = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(pip_list) == sorted(deps)
