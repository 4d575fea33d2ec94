"""The pipeline config's JSON Schema, with every model's block generated from its dataclass.

``workflows/schemas/config.schema.yaml`` holds the pipeline-level part only (``seeds``, each
domain's dataset blocks: ``subset``, ``simulation``, ``collect`` ...). Where a dataset block says
``models: {x-models-of-domain: <domain>}``, :func:`pipeline_schema` puts the models registered for
that domain (``spec.domain``), each with its ``model`` / ``train`` / ``sample`` blocks generated from
``spec.Config``, :class:`~dgm_science.config.TrainConfig` and the domain's ``Domain.SampleConfig``
(:class:`~dgm_science.config.SampleConfig` or its domain's subclass): types from the annotations, defaults from the field
defaults, descriptions from the attribute docstrings, no other key allowed. A hyper-parameter is
thus written once, in its dataclass; a field may add JSON Schema keywords of its own with
``dataclasses.field(..., metadata={"schema": {"minimum": 1}})``.

The Snakefile validates the config (filling in the defaults) against :func:`pipeline_schema` as the
catalog caches it (:mod:`dgm_science.catalog`, so that the parse imports no model);
``python -m dgm_science.schema [BASE]`` prints the whole schema as YAML.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from dgm_science import registry
from dgm_science.config import TrainConfig

BASE = Path(__file__).resolve().parents[1] / "workflows" / "schemas" / "config.schema.yaml"
"""The hand-written part, in a source checkout (the Snakefile passes its own copy's path)."""

MODELS_OF_DOMAIN = "x-models-of-domain"
PREDICTORS_OF_DOMAIN = "x-predictors-of-domain"
"""The key that marks a dataset block's ``models`` node to be filled in with a domain's models."""
SOURCES_OF_DOMAIN = "x-sources-of-domain"
"""The key that marks a user dataset's ``source`` node: one of the file kinds registered for a domain."""
USER_DATASETS = "x-user-datasets"
"""The key of a config group's ``additionalProperties``: a user dataset of one of the listed domains, its
block ``$defs/user_dataset.<domain>`` chosen by its ``source.kind``."""
DATASET_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
"""What a dataset's name may be (a folder name and a Snakemake wildcard value)."""

_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def annotation_schema(annotation: Any, where: str = "annotation") -> dict[str, Any]:
    """JSON Schema of a config annotation: ``int``, ``float``, ``str``, ``bool``, ``None``, unions of
    them (``int | None``, ``Union[int, str]``), ``list[...]`` and ``Literal[...]``; the same values
    that ``config.from_dict`` accepts (an integer is a number; a bool is not an integer)."""
    if annotation in _TYPES:
        return {"type": _TYPES[annotation]}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [annotation_schema(arg, where) for arg in args]
        if all(set(option) == {"type"} for option in options):
            return {"type": [option["type"] for option in options]}
        return {"anyOf": options}
    if origin is list or annotation is list:
        return {"type": "array", **({"items": annotation_schema(args[0], where)} if args else {})}
    raise TypeError(f"{where}: no JSON Schema for the annotation {annotation!r}")


def _docstrings(cls: type) -> tuple[str | None, dict[str, str]]:
    """The class docstring and the attribute docstrings (a string literal right after an annotated
    attribute) of ``cls`` and its bases, read from the source; nothing where there is no source."""
    attributes: dict[str, str] = {}
    doc = None
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
        if node is None:
            continue
        doc = ast.get_docstring(node) if klass is cls else doc
        for statement, following in zip(node.body, node.body[1:]):
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                attributes[statement.target.id] = inspect.cleandoc(following.value.value)
    return doc, attributes


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return dataclasses.MISSING
    return list(value) if isinstance(value, tuple) else value


def dataclass_schema(cls: type) -> dict[str, Any]:
    """JSON Schema of a config dataclass: one property per field (type, default, description),
    no other key (``additionalProperties: false``), fields without a default required."""
    hints = typing.get_type_hints(cls)
    doc, attribute_docs = _docstrings(cls)
    properties, required = {}, []
    for field in dataclasses.fields(cls):
        prop = annotation_schema(hints[field.name], f"{cls.__qualname__}.{field.name}")
        if field.name in attribute_docs:
            prop["description"] = _one_line(attribute_docs[field.name])
        bounds = copy.deepcopy(dict(field.metadata.get("schema", {})))
        (prop["items"] if prop.get("type") == "array" and "items" in prop else prop).update(bounds)  # list: each item
        default = _default(field)
        if default is dataclasses.MISSING:
            required.append(field.name)
        else:
            prop["default"] = default
        properties[field.name] = prop
    schema: dict[str, Any] = {"description": _one_line(doc)} if doc else {}
    schema.update(type="object", additionalProperties=False, properties=properties)
    if required:
        schema["required"] = required
    return schema


MODEL_SEEDS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "uniqueItems": True,
               "description": "this model's seeds instead of the pipeline's (e.g. 3 for the spread over seeds)"}


def model_def(name: str) -> str:
    """The ``$defs`` entry of model ``name``'s ``model:`` block."""
    return f"model.{name}"


def sample_def(domain: str) -> str:
    """The ``$defs`` entry of the ``sample:`` block of ``domain``'s models (its ``Domain.SampleConfig``)."""
    return f"sample.{domain}"


def models_schema(domain: str, *, predictors: bool = False) -> dict[str, Any]:
    """A dataset block's ``models``: each generative model registered for ``domain`` (``predictors``:
    each property predictor instead, a spec with ``predicts``), its block with ``model`` / ``train``
    / ``sample`` (``$ref`` to the generated definitions), at least one model."""
    names = [name for name in registry.names("model") if registry.get("model", name).domain == domain
             and registry.get("model", name).predicts == predictors]
    if not names:
        kind = "property predictor" if predictors else "model"
        raise ValueError(f"{MODELS_OF_DOMAIN}: no {kind} is registered for domain {domain!r}")
    properties = {}
    for name in names:
        spec = registry.get("model", name)
        doc = inspect.getdoc(spec)
        entry: dict[str, Any] = {"description": _one_line(doc.split("\n\n")[0])} if doc else {}
        entry.update(type="object", additionalProperties=False,
                     properties={"model": {"$ref": f"#/$defs/{model_def(name)}"},
                                 "train": {"$ref": "#/$defs/train"},
                                 "sample": {"$ref": f"#/$defs/{sample_def(domain)}"}})
        if not predictors:  # left out: the dataclass's defaults, filled in (a predictor does not sample)
            for block in ("train", "sample"):
                entry["properties"][block]["default"] = {}
        if not predictors:  # a predictor's seeds are the prediction block's
            entry["properties"]["seeds"] = MODEL_SEEDS
        # A generative model's entry always names its model block: an entry that is only `seeds`
        # (tradeoff.yaml's) is an overlay laid on a config that lacks the model, not a request for the
        # dataclass's defaults.
        # A fine-tuning entry (train.init_from: a checkpoint's path) may leave it out: the prior's is used.
        if not predictors or any(_default(f) is dataclasses.MISSING for f in dataclasses.fields(spec.Config)):
            entry["if"] = {"required": ["train"], "properties": {"train": {
                "required": ["init_from"], "properties": {"init_from": {"type": "string"}}}}}
            entry["else"] = {"required": ["model"]}
        properties[name] = entry
    return {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": properties}


def _kind_condition(kinds: list[str]) -> dict[str, Any]:
    return {"properties": {"kind": {"enum": kinds}}, "required": ["kind"]}


def sources_schema(domain: str) -> dict[str, Any]:
    """A user dataset's ``source``: ``kind`` one of the file kinds registered for ``domain``, the other keys
    that kind's ``Options`` (generated from the dataclass, as a model's block is), chosen by ``if``/``then``
    so that the defaults filled in are the chosen kind's."""
    from dgm_science import sources

    kinds = sources.kinds(domain)
    if not kinds:
        return {"not": {}, "description": f"no file kind is registered for domain {domain}"}
    branches = []
    for kind in kinds:
        cls = registry.get("source", kind)
        options = dataclass_schema(cls.Options)
        options["properties"]["kind"] = {"const": kind, "description": options["properties"]["kind"].get(
            "description", "")}
        options["properties"]["split"] = {**options["properties"]["split"], "enum": list(cls.split_methods),
                                          "default": cls.split_methods[0]}
        doc = inspect.getdoc(cls)
        if doc:
            options["description"] = _one_line(doc.split("\n\n")[0])
        branches.append({"if": _kind_condition([kind]), "then": options})
    return {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": kinds}},
            "allOf": branches}


def user_datasets_schema(domains: list[str]) -> dict[str, Any]:
    """A config group's user datasets (any name that is not a built-in dataset): a block with a ``source``,
    checked against ``$defs/user_dataset.<domain>`` of the domain whose file kind it names."""
    from dgm_science import sources

    by_domain = {domain: sources.kinds(domain) for domain in domains}
    every = [kind for kinds in by_domain.values() for kind in kinds]
    if not every:  # no file kind for these domains: only the built-in datasets' names are allowed
        return {"not": {}, "description": f"no file kind is registered for {', '.join(domains)}: "
                                          "a built-in dataset's name is needed"}
    return {"type": "object", "required": ["source", "models"],
            "properties": {"source": {"type": "object", "required": ["kind"],
                                      "properties": {"kind": {"enum": every}}}},
            "allOf": [{"if": {"properties": {"source": _kind_condition(kinds)}},
                       "then": {"$ref": f"#/$defs/user_dataset.{domain}"}}
                      for domain, kinds in by_domain.items() if kinds]}


def pipeline_schema(base: str | Path = BASE) -> dict[str, Any]:
    """The whole config schema: ``base`` (the hand-written YAML) with every
    ``models: {x-models-of-domain: <domain>}`` filled in and the ``train``, ``sample`` and
    ``model.<name>`` definitions of the models it names and the ``sample.<domain>`` ones of their domains
    added to ``$defs``."""
    schema = yaml.safe_load(Path(base).read_text())
    used: set[str] = set()

    def fill(node: Any) -> Any:
        if isinstance(node, list):
            return [fill(item) for item in node]
        if not isinstance(node, dict):
            return node
        for key, predictors in ((MODELS_OF_DOMAIN, False), (PREDICTORS_OF_DOMAIN, True)):
            if key in node:
                rest = {k: v for k, v in node.items() if k != key}
                models = models_schema(node[key], predictors=predictors)
                used.update(models["properties"])
                return {**rest, **models}
        if SOURCES_OF_DOMAIN in node:
            return sources_schema(node[SOURCES_OF_DOMAIN])
        if USER_DATASETS in node:
            return user_datasets_schema(list(node[USER_DATASETS]))
        return {key: fill(value) for key, value in node.items()}

    schema = fill(schema)
    defs = schema.setdefault("$defs", {})
    generated = {"train": dataclass_schema(TrainConfig)}
    domains = sorted({registry.get("model", name).domain for name in used})
    generated.update({sample_def(d): dataclass_schema(registry.get("domain", d).SampleConfig) for d in domains})
    generated.update({model_def(name): dataclass_schema(registry.get("model", name).Config) for name in sorted(used)})
    clash = sorted(set(defs) & set(generated))
    if clash:
        raise ValueError(f"{base}: $defs {', '.join(clash)} would be replaced by generated definitions")
    defs.update(generated)
    return schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgm_science.schema",
                                     description="Print the pipeline config's JSON Schema as YAML.")
    parser.add_argument("base", nargs="?", default=str(BASE),
                        help="the hand-written part (default: %(default)s)")
    args = parser.parse_args(argv)
    yaml.safe_dump(pipeline_schema(args.base), sys.stdout, sort_keys=False, width=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
