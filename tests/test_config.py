"""Configs: every shipped config validates (as the Snakefile does, defaults filled) and parses; the
schema's model blocks come from the registry and the dataclasses, so a new model or domain needs no
schema edit; bad keys fail with their name."""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections import defaultdict
from pathlib import Path
from typing import ClassVar, Literal, Optional, Union

import jsonschema
import pytest
import yaml
from snakemake.utils import validate as snakemake_validate
from snakemake_interface_common.exceptions import WorkflowError

from dgm_science import api, registry, schema
from dgm_science.resources import TrainResources
from dgm_science.base import Domain, GenerativeModel, ModelSpec
from dgm_science.config import ConfigError, SampleConfig, TrainConfig, as_dict, from_dict, load_mapping

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = schema.pipeline_schema()
CONFIGS = sorted((ROOT / "workflows/config").glob("*.yaml")) + sorted((ROOT / "tests/data").glob("*.yaml"))
OVERLAYS = sorted((ROOT / "workflows/config/overlays").glob("*.yaml"))
DEFAULT = yaml.safe_load((ROOT / "workflows/config/default.yaml").read_text())
# Sections of datasets (the domains), whatever they are called: the schema's object-valued keys.
BLOCKS = ("design", "prediction")
"""Blocks of their own, not domains of datasets: goal-directed design and property prediction."""
DOMAINS = [key for key, node in SCHEMA["properties"].items() if node.get("type") == "object" and key not in BLOCKS]
"""The domain blocks."""


def resolve(node: dict, root: dict = SCHEMA) -> dict:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def dataset_schema(domain: str, dataset: str, root: dict = SCHEMA) -> dict:
    return resolve(root["properties"][domain]["properties"][dataset], root)


def runs(config: dict):
    """(where, model name, model config) of every model of every dataset of every domain."""
    for domain in DOMAINS:
        for dataset, ds_cfg in config.get(domain, {}).items():
            for name, model_config in ds_cfg["models"].items():
                yield f"{domain}.{dataset}.models.{name}", name, model_config


def first_run(config: dict) -> tuple[str, str, str]:
    """(domain, dataset, model) of the config's first model."""
    domain = next(d for d in DOMAINS if config.get(d))
    dataset = next(iter(config[domain]))
    return domain, dataset, next(iter(config[domain][dataset]["models"]))


@pytest.fixture(scope="module")
def schema_path(tmp_path_factory) -> str:
    """The generated schema as the Snakefile hands it to snakemake.utils.validate."""
    path = tmp_path_factory.mktemp("schema") / "config.schema.yaml"
    path.write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    return str(path)


def _merged(base, overlay):
    """Snakemake's deep merge of config files given in order."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _validates_and_parses(config: dict, schema_path: str, label: str) -> dict:
    """Validate as the Snakefile does (defaults filled in), then parse every model's config."""
    config = copy.deepcopy(config)
    snakemake_validate(config, schema_path)
    assert list(runs(config)), f"{label}: no model"
    for where, name, model_config in runs(config):
        # as the rules pass it to `dgm train`: without the model's seeds
        api.RunConfig.parse(name, {k: v for k, v in model_config.items() if k != "seeds"}, where=f"{label}:{where}")
    return config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_parse(path, schema_path):
    config = yaml.safe_load(path.read_text())
    assert set(config) <= {"seeds", *BLOCKS, *DOMAINS}, path.name
    _validates_and_parses(config, schema_path, path.name)


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_overlays_validate_on_top_of_their_base(path, schema_path):
    """``paper-*`` overlays go on top of paper.yaml, ``all-mazes-*`` on top of the default and
    all-mazes.yaml, tradeoff.yaml on top of the default and sequences-table.yaml (16S seq-diffusion's
    config), the others on top of the default."""
    base = ["paper.yaml"] if path.name.startswith("paper-") else ["default.yaml"]
    if path.name == "your-data.yaml":  # a config of its own (the shipped example files)
        base = []
    if path.name.startswith("all-mazes-"):
        base.append("overlays/all-mazes.yaml")
    if path.name == "tradeoff.yaml":
        base.append("overlays/sequences-table.yaml")
    merged = {}
    for name in base:
        merged = _merged(merged, yaml.safe_load((ROOT / "workflows/config" / name).read_text()))
    overlay = yaml.safe_load(path.read_text())
    merged = _merged(merged, overlay)
    merged = _validates_and_parses(merged, schema_path, path.name)
    touched = [domain for domain in DOMAINS if domain in overlay]
    if path.name == "molecules-table.yaml":
        # every dataset it touches runs every model its domain has
        for domain in touched:
            for dataset, ds_cfg in merged[domain].items():
                allowed = dataset_schema(domain, dataset)["properties"]["models"]["properties"]
                assert set(ds_cfg["models"]) == set(allowed), (domain, dataset)
    if path.name == "all-mazes.yaml":
        # every dataset of the domains it touches
        assert touched
        for domain in touched:
            assert set(merged[domain]) == set(SCHEMA["properties"][domain]["properties"]), domain


def test_a_seeds_only_model_entry_without_its_base_config_is_an_error(schema_path):
    """tradeoff.yaml on the default alone (without sequences-table.yaml, which holds 16S
    seq-diffusion's config): the seeds-only entry must not train the dataclass's default model."""
    merged = _merged(yaml.safe_load((ROOT / "workflows/config/default.yaml").read_text()),
                     yaml.safe_load((ROOT / "workflows/config/overlays/tradeoff.yaml").read_text()))
    assert merged["sequences"]["16s-v4"]["models"]["seq-diffusion"] == {"seeds": [0, 1, 2]}
    with pytest.raises(WorkflowError, match="'model' is a required property"):
        snakemake_validate(merged, schema_path)


def test_every_registered_model_is_reachable_in_the_schema():
    """Each registered model is a key of some dataset's ``models``, its ``model`` block the
    dataclass's fields, and its ``train`` / ``sample`` blocks TrainConfig's / its domain's SampleConfig's
    (``valency_correction`` in a molecules model's only)."""
    reachable = defaultdict(list)
    for domain in DOMAINS:
        for dataset in SCHEMA["properties"][domain]["properties"]:
            for name, entry in dataset_schema(domain, dataset)["properties"]["models"]["properties"].items():
                reachable[name].append(f"{domain}.{dataset}")
                blocks = {block: set(resolve(ref)["properties"]) for block, ref in entry["properties"].items()
                          if block != "seeds"}
                assert entry["properties"]["seeds"]["items"]["type"] == "integer", name  # its own seeds
                spec = registry.get("model", name)
                fields = {f.name for f in dataclasses.fields(spec.Config)}
                sample = {f.name for f in dataclasses.fields(registry.get("domain", spec.domain).SampleConfig)}
                assert blocks == {"model": fields, "train": {f.name for f in dataclasses.fields(TrainConfig)},
                                  "sample": sample}, name
                assert ("valency_correction" in sample) == (spec.domain == "molecules"), name
    for name, entry in SCHEMA["properties"]["prediction"]["properties"]["models"]["properties"].items():
        reachable[name].append("prediction")
    assert set(reachable) == set(registry.names("model")), set(registry.names("model")) ^ set(reachable)


def test_every_shipped_dataset_has_a_model_in_the_default_or_paper_config():
    """No dataset block of the schema is dead: each is run by default.yaml or paper.yaml."""
    paper = yaml.safe_load((ROOT / "workflows/config/paper.yaml").read_text())
    for domain in DOMAINS:
        for dataset in SCHEMA["properties"][domain]["properties"]:
            assert dataset in DEFAULT.get(domain, {}) or dataset in paper.get(domain, {}), (domain, dataset)


def test_snakefile_validation_fills_in_the_dataclass_defaults(schema_path):
    """Empty model / train / sample blocks come out of validation as the dataclasses' defaults,
    which from_dict accepts back (a default of a type the schema or from_dict gets wrong, a tuple
    or a default_factory left out would show here)."""
    config = copy.deepcopy(DEFAULT)
    for _, _, model_config in runs(config):
        model_config.clear()
        model_config.update(model={}, train={}, sample={})
    snakemake_validate(config, schema_path)
    for where, name, model_config in runs(config):
        spec = registry.get("model", name)
        sample = registry.get("domain", spec.domain).SampleConfig()
        assert model_config == {"model": as_dict(spec.Config()), "train": as_dict(TrainConfig()),
                                "sample": as_dict(sample)}, where
        assert api.RunConfig.parse(name, model_config) == api.RunConfig.parse(name, {}), where


def test_the_snakefile_validates_against_the_generated_schema():
    """The Snakefile hands snakemake's validate the catalog's schema, which is the generated one
    (tests/test_catalog.py checks the two equal)."""
    assert "validate(config, CATALOG.schema_path)" in (ROOT / "Snakefile").read_text()


def test_python_m_schema_prints_the_schema(capsys):
    assert schema.main([]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == SCHEMA


# --- a model or a domain the schema has never seen ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A toy model's settings."""

    width: int = 16
    """Hidden units."""
    horizon: int | None = None
    scale: float = 0.5
    devices: Union[int, str] = "auto"
    dims: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    flag: bool = False


class ToyModel(ModelSpec):
    """A toy model, registered by the tests."""

    Config = ToyConfig
    batch_fields: ClassVar[tuple[str, ...]] = ()
    train_resources = TrainResources(seconds_per_step=0.01, mem_mb=4000)
    domain: ClassVar[str] = ""

    @staticmethod
    def build(cfg: ToyConfig, state: dict) -> GenerativeModel:
        raise NotImplementedError("the schema tests never build it")


@pytest.fixture
def toy_registry(monkeypatch):
    """Registration into a copy of the registry, dropped after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", defaultdict(dict, {k: dict(v) for k, v in registry._REGISTRY.items()}))

    def add(name: str, domain: str) -> None:
        registry.register("model", name)(type(name, (ToyModel,), {"domain": domain}))

    return add


def test_a_new_model_is_accepted_without_editing_the_schema_file(toy_registry, tmp_path):
    domain, dataset, model = first_run(DEFAULT)
    toy_registry("toy-model", registry.get("model", model).domain)
    generated = schema.pipeline_schema()
    entry = dataset_schema(domain, dataset, generated)["properties"]["models"]["properties"]["toy-model"]
    assert entry["description"] == "A toy model, registered by the tests."
    model_def = resolve(entry["properties"]["model"], generated)
    assert model_def["description"] == "A toy model's settings."
    assert model_def["properties"]["width"] == {"type": "integer", "description": "Hidden units.", "default": 16}

    config = copy.deepcopy(DEFAULT)
    config[domain][dataset]["models"]["toy-model"] = {"model": {"width": 4}, "train": {"max_steps": 3}}
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(generated))
    snakemake_validate(config, str(path))
    run = config[domain][dataset]["models"]["toy-model"]
    assert run["model"] == {**as_dict(ToyConfig()), "width": 4}
    assert api.RunConfig.parse("toy-model", run).model == ToyConfig(width=4)

    # and its keys are checked: an unknown one is named
    config[domain][dataset]["models"]["toy-model"]["model"]["widht"] = 3
    with pytest.raises(jsonschema.ValidationError, match="'widht' was unexpected"):
        jsonschema.validate(config, generated)


def test_a_new_domain_needs_only_its_dataset_block(toy_registry, tmp_path):
    """A fifth domain: its section in the hand-written part, `models` filled in from the registry (its
    models' ``sample`` block from the domain's ``SampleConfig``, the generic one here)."""
    registry.register("domain", "toy-points")(type("ToyPoints", (Domain,), {"name": "toy-points"}))
    toy_registry("toy-flow", "toy-points")
    base = yaml.safe_load(schema.BASE.read_text())
    base["properties"]["toys"] = {"type": "object", "additionalProperties": False,
                                  "properties": {"rings": {"$ref": "#/$defs/toy_dataset"}}}
    base["$defs"]["toy_dataset"] = {
        "type": "object", "additionalProperties": False, "required": ["models"],
        "properties": {"points": {"type": "integer", "default": 100},
                       "models": {schema.MODELS_OF_DOMAIN: "toy-points"}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    generated = schema.pipeline_schema(tmp_path / "base.yaml")
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(generated))

    config = {"seeds": [0], "toys": {"rings": {"models": {"toy-flow": {"model": {}}}}}}
    snakemake_validate(config, str(tmp_path / "schema.yaml"))
    assert config["toys"]["rings"]["points"] == 100
    assert config["toys"]["rings"]["models"]["toy-flow"]["model"] == as_dict(ToyConfig())
    assert config["toys"]["rings"]["models"]["toy-flow"]["sample"] == as_dict(SampleConfig())  # its defaults
    assert generated["$defs"]["sample.toy-points"] == schema.dataclass_schema(SampleConfig)
    # only the domain's models
    config["toys"]["rings"]["models"][first_run(DEFAULT)[2]] = {}
    with pytest.raises(jsonschema.ValidationError, match="was unexpected"):
        jsonschema.validate(config, generated)


def test_a_domain_without_models_is_an_error(tmp_path):
    base = yaml.safe_load(schema.BASE.read_text())
    base["$defs"]["typo_dataset"] = {"properties": {"models": {schema.MODELS_OF_DOMAIN: "no-such-domain"}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    with pytest.raises(ValueError, match="no-such-domain"):
        schema.pipeline_schema(tmp_path / "base.yaml")


@pytest.mark.parametrize(("annotation", "expected"), [
    (int, {"type": "integer"}),
    (float, {"type": "number"}),
    (bool, {"type": "boolean"}),
    (str, {"type": "string"}),
    (int | None, {"type": ["integer", "null"]}),
    (Optional[float], {"type": ["number", "null"]}),
    (Union[int, str], {"type": ["integer", "string"]}),
    (list[int], {"type": "array", "items": {"type": "integer"}}),
    (Literal["smiles", "selfies"], {"enum": ["smiles", "selfies"]}),
    (Optional[Literal["a", "b"]], {"anyOf": [{"enum": ["a", "b"]}, {"type": "null"}]}),
])
def test_annotation_schema(annotation, expected):
    assert schema.annotation_schema(annotation) == expected


def test_annotation_schema_accepts_what_from_dict_accepts():
    """The schema and from_dict agree on the edge cases: an int is a number, a bool is no int."""

    @dataclasses.dataclass(frozen=True)
    class C:
        x: float = 1.0
        n: int = 1

    props = schema.dataclass_schema(C)
    jsonschema.validate({"x": 2, "n": 3}, props)
    assert from_dict(C, {"x": 2, "n": 3}, "c") == C(2.0, 3)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"n": True}, props)
    with pytest.raises(ConfigError):
        from_dict(C, {"n": True}, "c")
    with pytest.raises(TypeError, match="no JSON Schema"):
        schema.annotation_schema(dict[str, int])


# --- bad keys are named -----------------------------------------------------------------------------


def test_unknown_key_and_wrong_type_are_named():
    name = registry.names("model")[0]
    hints = typing.get_type_hints(registry.get("model", name).Config)
    int_field = next(key for key, annotation in hints.items() if annotation is int)
    with pytest.raises(ConfigError, match=r"config\.train: unknown key\(s\) bach_size"):
        api.RunConfig.parse(name, {"train": {"bach_size": 3}})
    with pytest.raises(ConfigError, match=rf"config\.model\.{int_field}: expected an integer"):
        api.RunConfig.parse(name, {"model": {int_field: "big"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) optimizer"):
        api.RunConfig.parse(name, {"optimizer": {}})
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(TrainConfig, {"lr": True}, "t")
    assert from_dict(TrainConfig, {"lr": 1, "max_time_minutes": None}, "t").lr == 1.0


@pytest.mark.parametrize("change", ["train", "sample", "model", "run", "models", "dataset"])
def test_schema_rejects_unknown_pipeline_keys(change):
    config = copy.deepcopy(DEFAULT)
    domain, dataset, model = first_run(config)
    run = config[domain][dataset]["models"][model]
    key = {"train": "bach_size", "sample": "temprature", "model": "d_modle", "run": "optimizer",
           "models": "no-such-model", "dataset": "subsett"}[change]
    if change in ("train", "sample", "model"):
        run.setdefault(change, {})[key] = 3
    elif change == "run":
        run[key] = {}
    elif change == "models":
        config[domain][dataset]["models"][key] = {}
    else:
        config[domain][dataset][key] = {}
    with pytest.raises(jsonschema.ValidationError, match=f"'{key}' was unexpected"):
        jsonschema.validate(config, SCHEMA)


def test_a_model_of_another_domain_is_rejected():
    config = copy.deepcopy(DEFAULT)
    domain, dataset, model = first_run(config)
    allowed = dataset_schema(domain, dataset)["properties"]["models"]["properties"]
    other = next(name for name in registry.names("model") if name not in allowed)
    config[domain][dataset]["models"][other] = {}
    with pytest.raises(jsonschema.ValidationError, match=f"'{other}' was unexpected"):
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


def test_allowed_ranges_are_written_once_enforced_by_the_library_and_stated_by_the_schema():
    """``config.bounded`` fields: ``from_dict`` (``dgm train --config``) and the pipeline schema
    reject the same values, with the key named."""
    with pytest.raises(ConfigError, match=r"train\.batch_size: 0 must be >= 1"):
        from_dict(TrainConfig, {"batch_size": 0}, "train")
    with pytest.raises(ConfigError, match=r"m\.model\.tokenizer: 'inchi' is not one of smiles, selfies"):
        api.RunConfig.parse("smiles-arm", {"model": {"tokenizer": "inchi"}}, where="m")
    with pytest.raises(ConfigError, match=r"dropout: 1\.5 must be <= 1"):
        api.RunConfig.parse("seq-vae", {"model": {"dropout": 1.5}}, where="m")
    defs = schema.pipeline_schema()["$defs"]
    assert defs["train"]["properties"]["batch_size"]["minimum"] == 1
    assert defs["model.smiles-arm"]["properties"]["tokenizer"]["enum"] == ["smiles", "selfies"]
    with pytest.raises(jsonschema.ValidationError, match="0 is less than the minimum of 1"):
        jsonschema.validate({"batch_size": 0}, {**defs["train"], "$defs": defs})


def test_every_number_of_every_config_has_a_range():
    """A config number without a range is how ``max_steps: -1`` (Lightning: "no limit") and a
    negative width reached training; every int / float field (and every item of a list of them)
    states its allowed values."""
    classes = {TrainConfig, SampleConfig, *(registry.get("model", n).Config for n in registry.names("model")),
               *(registry.get("domain", d).SampleConfig for d in registry.names("domain"))}
    unbounded = []
    for cls in classes:
        for field in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[field.name]
            kinds = typing.get_args(hint) or (hint,)
            numeric = any(k in (int, float) or typing.get_args(k) in ((int,), (float,)) for k in kinds)
            bounds = set(field.metadata.get("schema", {})) & {"minimum", "exclusiveMinimum", "enum"}
            if numeric and not bounds and field.name != "devices":  # devices: "auto", an int or a list of ids
                unbounded.append(f"{cls.__qualname__}.{field.name}")
    assert unbounded == []
    with pytest.raises(ConfigError, match=r"m\.model\.dim_mults\[1\]: 0 must be >= 1"):
        api.RunConfig.parse("maze-diffuser", {"model": {"dim_mults": [1, 0]}}, where="m")
    assert schema.pipeline_schema()["$defs"]["model.maze-diffuser"]["properties"]["dim_mults"]["items"]["minimum"] == 1
