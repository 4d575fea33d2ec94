"""Contract tests every registered model must pass, whatever its family or domain."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections import defaultdict

import pytest
import torch

from dgm_science.resources import TrainResources
from dgm_science import api, checkpoint, registry
from dgm_science.base import Autoencoder, GenerativeModel, LatentVariableModel, ModelSpec
from dgm_science.config import ConfigError, SampleConfig, TrainConfig, from_dict
from dgm_science.families.vae import VAE
from dgm_science.tradeoff import FAMILY_ORDER

MODELS = registry.names("model")


def fixtures_of(name: str):
    """The test fixtures of a model's domain package: ``tests/domains/<package>/fixtures.py``, with
    ``TINY_CONFIGS``, ``DENSITY`` and ``tiny_case(name, n) -> (config, state, batch)``. A new
    domain gives its models' contract-test inputs there."""
    package = registry.get("model", name).__module__.split(".")[2]
    return importlib.import_module(f"tests.domains.{package}.fixtures")


def tensors(sample):
    """The tensors of a model's raw sample: token ids (B, L), internal coordinates (B, D), or the
    fields of a DenseGraphs / Conformers batch."""
    if isinstance(sample, torch.Tensor):
        return (sample,)
    fields = sample._asdict().values() if hasattr(sample, "_asdict") else dataclasses.astuple(sample)
    return tuple(t for t in fields if isinstance(t, torch.Tensor))


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(tensors(a), tensors(b), strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_every_registered_model_has_a_tiny_config(name):
    assert name in fixtures_of(name).TINY_CONFIGS


_CASES: dict[str, tuple] = {}


@pytest.fixture
def setup():
    """setup(name) -> (spec, cfg, model, state, batch of 16) for any registered model; each tiny
    case is built once per session."""

    def make(name):
        spec = registry.get("model", name)
        if name not in _CASES:
            _CASES[name] = fixtures_of(name).tiny_case(name, 16)
        tiny, state, batch = _CASES[name]
        cfg = from_dict(spec.Config, tiny, name)
        torch.manual_seed(0)
        return spec, cfg, spec.build(cfg, state), state, batch

    return make


@pytest.mark.parametrize("name", MODELS)
def test_loss_is_finite_and_falls_on_a_tiny_batch(name, setup):
    _, _, model, _, batch = setup(name)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        model.set_training_step(step)
        loss = model.loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # a dequantized flow's loss (nats per dimension) has a large irreducible part early on, so
    # "falls" is measured as >= 10% below the first step, averaged over the last five
    # (a density's loss can be negative, hence |first|)
    assert sum(losses[-5:]) / 5 < losses[0] - 0.1 * abs(losses[0])


def has_density(model) -> bool:
    """Whether the model has a p(x) (a property regressor has none, and says so)."""
    return type(model).likelihood != "none"


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_shape_finite_and_likelihood_kind(name, setup):
    spec, _, model, _, batch = setup(name)
    model.eval()
    # the family the checkpoint records and the report's trade-off table groups by
    families = FAMILY_ORDER + ["hybrid p(x, y)", "discriminative"]
    assert type(model).family in families and type(model).representation.split(":")[0] in ("yes", "no")
    if not has_density(model):
        assert spec.predicts or spec.implicit, (
            "only a property predictor or an implicit model (a GAN) may have no p(x)")
        with pytest.raises(TypeError, match="no p\\(x\\)"):
            model.log_prob(batch)
        return
    lp = model.log_prob(batch)
    assert lp.shape == (16,) and torch.isfinite(lp).all()
    if not fixtures_of(name).DENSITY:  # probabilities of discrete objects; 3D and trajectory models give densities
        assert (lp < 0).all()
    assert type(model).likelihood in ("exact", "bound", "unnormalized")


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_samples_and_shapes(name, setup):
    spec, _, model, _, _ = setup(name)
    model.eval()
    if not has_density(model) and not spec.implicit:  # a regressor does not sample
        with pytest.raises(TypeError, match="no p\\(x\\)"):
            model.sample(7)
        return
    a = model.sample(7, generator=torch.Generator().manual_seed(3))
    b = model.sample(7, generator=torch.Generator().manual_seed(3))
    c = model.sample(7, generator=torch.Generator().manual_seed(4))
    assert tensors(a) and all(t.shape[0] == 7 and (t.dtype == torch.long or t.is_floating_point()) for t in tensors(a))
    assert all(torch.isfinite(t.float()).all() for t in tensors(a))
    assert same(a, b)
    assert not same(a, c)
    with pytest.raises(ValueError):
        model.sample(0)


def test_arm_log_prob_is_exactly_normalised():
    """Brute force: with <pad>/<bos> made impossible, the probabilities of every sequence the
    sampler can emit (<= 2 symbols then <eos>, or 3 symbols hitting max_length) sum to 1."""
    from itertools import product

    from torch import nn

    from dgm_science.backbones import CausalTransformer
    from dgm_science.families.autoregressive import AutoregressiveModel

    torch.manual_seed(0)
    net = CausalTransformer(5, d_model=16, n_layers=1, n_heads=2, max_length=4, dropout=0.0)
    net.head = nn.Linear(16, 5)  # untied, with a bias that rules out <pad> (0) and <bos> (1)
    with torch.no_grad():
        net.head.bias[:2] = -1e4
    model = AutoregressiveModel(net, pad_id=0, bos_id=1, eos_id=2).eval()
    seqs = [[1, *body, 2] + [0] * (2 - k) for k in range(3) for body in product([3, 4], repeat=k)]
    seqs += [[1, *body] for body in product([3, 4], repeat=3)]
    total = model.log_prob({"tokens": torch.tensor(seqs)}).exp().sum().item()
    assert abs(total - 1.0) < 1e-4


def test_vae_encode_and_interpolate(moses_smiles, molecule_state, setup, tmp_path):
    spec, cfg, model, _, _ = setup("graph-vae")
    config = api.RunConfig(cfg, TrainConfig(), SampleConfig())
    path = tmp_path / "vae.ckpt"
    checkpoint.save(path, domain="molecules", model_name="graph-vae", config=config.to_dict(),
                    state_dict=model.state_dict(), domain_state=molecule_state)
    loaded = api.load(path, device="cpu")
    z = loaded.encode(moses_smiles[:3])
    assert z.shape == (3, cfg.latent_dim) and torch.isfinite(z).all()
    path_smiles = loaded.interpolate(moses_smiles[0], moses_smiles[1], steps=4)
    assert len(path_smiles) == 4
    ends = VAE.interpolate(z[0], z[1], 5)
    assert torch.allclose(ends[0], z[0], atol=1e-5) and torch.allclose(ends[-1], z[1], atol=1e-5)
    with pytest.raises(ValueError, match="cannot encode"):
        loaded.encode(["not a smiles"])


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip(name, tmp_path, setup):
    spec, cfg, model, state, batch = setup(name)
    sample = registry.get("domain", spec.domain).SampleConfig(n=5, batch_size=5)  # the domain's sample block
    config = api.RunConfig(cfg, TrainConfig(), sample)
    path = tmp_path / "model.ckpt"
    checkpoint.save(path, domain=spec.domain, model_name=name, config=config.to_dict(),
                    state_dict=model.state_dict(), domain_state=state, info={"seed": 0})
    loaded = api.load(path, device="cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    model.eval()
    assert loaded.config == config
    if spec.predicts:  # a property predictor predicts the same
        assert all(torch.equal(x, y) for x, y in zip(model.predict(batch), loaded.model.predict(batch)))
    if not has_density(model):
        return
    torch.manual_seed(1)
    a = model.sample(4, generator=torch.Generator().manual_seed(9))
    b = loaded.model.sample(4, generator=torch.Generator().manual_seed(9))
    assert same(a, b)


def test_corrupt_and_foreign_checkpoints_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="bad.ckpt"):
        checkpoint.load(bad)
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "missing.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(checkpoint.CheckpointError, match="not a dgm-science checkpoint"):
        checkpoint.load(foreign)


@pytest.mark.parametrize("name", MODELS)
def test_every_spec_declares_the_model_contract(name):
    """A registered model is a ModelSpec with its domain (a registered one), Config dataclass, batch
    fields and boolean capability flags declared, and a build of its own."""
    spec = registry.get("model", name)
    assert issubclass(spec, ModelSpec) and not inspect.isabstract(spec)
    assert spec.domain in registry.names("domain")
    assert dataclasses.is_dataclass(spec.Config)
    assert isinstance(spec.batch_fields, tuple) and spec.batch_fields and all(isinstance(f, str) for f in spec.batch_fields)
    assert all(isinstance(getattr(spec, flag), bool) for flag in ("predicts", "implicit", "langevin", "canvas"))


@pytest.mark.parametrize("name", MODELS)
def test_every_model_sample_accepts_the_base_signature(name, setup):
    """``LoadedModel.sample_table`` passes ``generator`` and ``temperature`` (and ``condition``) to every
    model: each built model's ``sample`` takes them, as ``GenerativeModel.sample`` declares."""
    _, _, model, _, _ = setup(name)
    assert "temperature" in inspect.signature(GenerativeModel.sample).parameters
    inspect.signature(model.sample).bind(7, generator=None, condition=None, temperature=1.0)  # TypeError if not
    assert isinstance(model.partial_updates, bool)


def test_the_latent_protocols_tell_vaes_from_other_models(setup):
    """The encode / decode / latent-statistics guards of ``api.LoadedModel`` check these protocols:
    a VAE is an Autoencoder, a hierarchical VAE a LatentVariableModel only, an ARM neither."""
    _, _, vae, _, _ = setup("graph-vae")
    _, _, hvae, _, _ = setup("seq-hvae")
    _, _, arm, _, _ = setup("smiles-arm")
    assert isinstance(vae, Autoencoder) and isinstance(vae, LatentVariableModel)
    assert isinstance(hvae, LatentVariableModel) and not isinstance(hvae, Autoencoder)
    assert not isinstance(arm, LatentVariableModel) and not isinstance(arm, Autoencoder)


def _spec(**attrs):
    def build(cfg, state):
        raise NotImplementedError

    body = {"domain": "molecules", "Config": SampleConfig, "batch_fields": ("tokens",), "build": staticmethod(build),
            "train_resources": TrainResources(seconds_per_step=0.1)}
    return {k: v for k, v in {**body, **attrs}.items() if v is not None}


@pytest.mark.parametrize("entry, message", [
    (type("Plain", (), _spec()), "not a subclass of dgm_science.base.ModelSpec"),
    (lambda cfg, state: None, "not a subclass"),
    (type("NoDomain", (ModelSpec,), _spec(domain=None)), "does not declare domain"),
    (type("NoFields", (ModelSpec,), _spec(batch_fields=None, Config=None)), "does not declare Config, batch_fields"),
    (type("NotData", (ModelSpec,), _spec(Config=dict)), "Config is not a dataclass"),
    (type("NoResources", (ModelSpec,), _spec(train_resources=None)), "does not declare train_resources"),
    (type("BadResources", (ModelSpec,), _spec(train_resources={"gpus": 1})), "train_resources is not a TrainResources"),
    (type("NoBuild", (ModelSpec,), _spec(build=None)), "does not implement build"),
])
def test_the_registry_rejects_a_model_entry_that_breaks_the_contract(entry, message, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", defaultdict(dict))
    with pytest.raises(TypeError, match=message):
        registry.register("model", "broken")(entry)
    assert "broken" not in registry._REGISTRY["model"]
    registry.register("model", "fine")(type("Fine", (ModelSpec,), _spec()))
    assert "fine" in registry._REGISTRY["model"]


def test_an_old_checkpoint_with_the_generic_valency_correction_still_loads(setup, tmp_path):
    """Checkpoints written when ``valency_correction`` was a key of every model's sample block load:
    its inert value (false) is dropped where the domain's sample block lacks it; true is an error,
    and a molecules model keeps it."""
    spec, cfg, model, state, _ = setup("seq-arm")
    config = api.RunConfig(cfg, TrainConfig(), SampleConfig(n=5, batch_size=5)).to_dict()
    for value, ok in ((False, True), (True, False)):
        path = tmp_path / f"old-{value}.ckpt"
        old = {**config, "sample": {**config["sample"], "valency_correction": value}}
        checkpoint.save(path, domain=spec.domain, model_name="seq-arm", config=old, state_dict=model.state_dict(),
                        domain_state=state)
        if ok:
            loaded = api.load(path, device="cpu")
            assert type(loaded.config.sample) is SampleConfig and loaded.config.sample.n == 5
        else:
            with pytest.raises(ConfigError, match="valency_correction"):
                api.load(path, device="cpu")
    parsed = api.RunConfig.parse("graph-flow", {"sample": {"valency_correction": True}})
    assert parsed.sample.valency_correction and parsed.sample.decode_options() == {"valency_correction": True}
    assert api.RunConfig.parse("graph-flow", {}).sample.decode_options() == {}
