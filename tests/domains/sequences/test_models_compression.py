"""Sequence models, the sequences domain and lossless compression."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from dgm_science.base import Samples
from dgm_science import api, checkpoint, registry
from dgm_science.config import SampleConfig, TrainConfig, from_dict
from dgm_science.domains.sequences import compression
from dgm_science.domains.sequences.data import SequenceSample
from dgm_science.domains.sequences.domain import SequenceDomain
from dgm_science.domains.sequences.fasta import read_fasta
from dgm_science.domains.sequences.tokens import BOS, EOS, MASK, PAD, Vocabulary, token_rows
from dgm_science.families.discrete_diffusion import MaskedDiffusion
from tests.domains.sequences.fixtures import TINY_CONFIGS, prepared


def test_vocabulary_round_trip_and_invalid_rows():
    vocab = Vocabulary("ACGTN")
    ids = vocab.encode("ACGTNA")
    assert ids.tolist() == [4, 5, 6, 7, 8, 4]
    assert vocab.decode_row(np.array([BOS, *ids, EOS, PAD, PAD])) == "ACGTNA"
    assert vocab.decode_row(np.array([*ids, EOS, PAD]), canvas=True) == "ACGTNA"
    assert vocab.decode_row(np.array([BOS, *ids, EOS]), canvas=True) is None  # <bos> inside a canvas
    assert vocab.decode_row(np.array([*ids, EOS, PAD])) is None  # a causal row starts with <bos>
    assert vocab.decode_row(np.array([BOS, *ids])) is None  # no end
    assert vocab.decode_row(np.array([BOS, EOS, PAD])) is None  # empty
    assert vocab.decode_row(np.array([BOS, 4, MASK, 5, EOS])) is None  # special inside
    assert vocab.decode_row(np.array([4, 5, EOS, 6, PAD]), canvas=True) is None  # residues after the end
    with pytest.raises(ValueError, match="'X' is not in the alphabet"):
        vocab.encode("ACXG")


def test_token_layouts():
    rows = [np.array([4, 5]), np.array([6])]
    assert token_rows(rows, None, canvas=False).tolist() == [[BOS, 4, 5, EOS], [BOS, 6, EOS, PAD]]
    assert token_rows(rows, 5, canvas=True).tolist() == [[4, 5, EOS, PAD, PAD], [6, EOS, PAD, PAD, PAD]]


class _Uniform(torch.nn.Module):
    """A denoiser with equal logits everywhere: p(x_l | z_t) = 1/(V - 1) over the non-mask classes."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens, condition=None):
        return torch.zeros(*tokens.shape, self.vocab) + 0 * self.dummy


def test_masked_diffusion_elbo_weighting_is_exact_for_a_uniform_denoiser():
    """E_t[(1/t) sum_masked -log p] with P(masked) = t equals L log(V - 1) for a uniform model:
    a wrong weight (e.g. 1 instead of 1/t) or masking rate would miss it."""
    vocab, length = 9, 40
    model = MaskedDiffusion(_Uniform(vocab), mask_id=MASK, length=length, elbo_samples=400)
    tokens = torch.randint(4, vocab, (3, length))
    torch.manual_seed(0)
    log_p = model.log_prob({"tokens": tokens})
    assert torch.allclose(log_p, torch.full((3,), -length * math.log(vocab - 1)), rtol=0.03)


def test_masked_diffusion_with_lengths_diffuses_residues_only_and_scores_the_length():
    """Variable length: samples are ``residues <eos> <pad>*`` with n ~ P(n); padding is never
    masked or predicted, and log p adds log P(n) (uniform denoiser: exactly log P(n) - n log(V - 3))."""
    vocab, length = 9, 12
    counts = [0, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0]  # n = 3 (1/4) or n = 5 (3/4)
    model = MaskedDiffusion(_Uniform(vocab), mask_id=MASK, length=length, elbo_samples=20000,
                            length_distribution=counts, eos_id=EOS, pad_id=PAD)
    out = model.sample(400, generator=torch.Generator().manual_seed(0))
    n = ((out != EOS) & (out != PAD)).sum(1)  # the positions before <eos>
    assert set(n.tolist()) == {3, 5} and abs((n == 5).float().mean().item() - 0.75) < 0.07
    decoded = [Vocabulary("ACGTN").decode_row(row, canvas=True) for row in out.numpy()]
    # the uniform denoiser may draw <bos> (id 1, a class this toy vocabulary allows): such rows are invalid
    assert all(d is None or len(d) in (3, 5) for d in decoded) and sum(d is not None for d in decoded) > 50
    tokens = token_rows([np.array([4, 5, 6]), np.array([4, 5, 6, 7, 8])], length, canvas=True)
    torch.manual_seed(0)
    expected = torch.tensor([math.log(0.25) - 3 * math.log(vocab - 3), math.log(0.75) - 5 * math.log(vocab - 3)])
    assert torch.allclose(model.log_prob({"tokens": tokens}), expected, rtol=0.03)
    with pytest.raises(ValueError, match="length_distribution must have"):
        MaskedDiffusion(_Uniform(vocab), mask_id=MASK, length=5, length_distribution=[1, 1], eos_id=EOS, pad_id=PAD)


def test_masked_diffusion_samples_are_fully_revealed_and_conditional_needs_a_label():
    case = TINY_CONFIGS["seq-diffusion"] | {"conditional": True}
    spec = registry.get("model", "seq-diffusion")
    state = {"alphabet": "ACGTN", "labels": ["a", "b", "unknown"], "layout": "canvas", "max_length": 30,
             "length_counts": [0] * 20 + [1] * 9}
    model = spec.build(from_dict(spec.Config, case | {"max_length": 30}, "tiny"), state).eval()
    condition = torch.eye(3)[[0, 1, 2, 2]]
    out = model.sample(4, generator=torch.Generator().manual_seed(0), condition=condition)
    assert out.shape == (4, 29) and not (out == MASK).any()
    with pytest.raises(ValueError, match="conditional"):
        model.sample(2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepared(tmp_path_factory.mktemp("seq"), n=120)


def _checkpoint(tmp_path, data_dir, name, **model):
    spec = registry.get("model", name)
    cfg = from_dict(spec.Config, TINY_CONFIGS[name] | model, name)
    state = SequenceDomain.fit_state(data_dir, spec, cfg)
    torch.manual_seed(0)
    net = spec.build(cfg, state)
    path = tmp_path / f"{name}.ckpt"
    config = api.RunConfig(cfg, TrainConfig(), SampleConfig(n=6, batch_size=3))
    checkpoint.save(path, domain="sequences", model_name=name, config=config.to_dict(), state_dict=net.state_dict(),
                    domain_state=state, info={"data_dir": str(data_dir)})
    return path


def test_prepare_keeps_every_record_once_with_its_split(data_dir):
    stats = __import__("json").loads((data_dir / "prepare.json").read_text())
    counts = {split: len(read_fasta(data_dir / f"{split}.fasta")) for split in ("train", "valid", "test")}
    assert counts == {"train": 96, "valid": 12, "test": 12}
    assert stats["test"]["sequences"] == 12 and stats["v4"] and stats["kind"] == "dna"
    with pytest.raises(ValueError, match="fixed identity-cluster split"):
        registry.get("dataset", "16s-v4").prepare(data_dir, data_dir / "x", val_size=10)


def test_prepare_max_residues_filters_every_split(tmp_path):
    from dgm_science.cli import main
    from tests.domains.sequences.fixtures import write_raw

    raw = write_raw(tmp_path / "raw", "swissprot", n=100)
    lengths = [len(r.sequence) for r in read_fasta(raw / "swissprot.fasta.gz")]
    assert main(["prepare", "swissprot", "--raw", str(raw), "--out", str(tmp_path / "d"), "--max-residues", "200"]) == 0
    stats = __import__("json").loads((tmp_path / "d" / "prepare.json").read_text())
    kept = [r for split in ("train", "valid", "test") for r in read_fasta(tmp_path / "d" / f"{split}.fasta")]
    assert all(len(r.sequence) <= 200 for r in kept)
    assert len(kept) == sum(n <= 200 for n in lengths) and stats["dropped_over_max_residues"] == 100 - len(kept)
    assert main(["prepare", "qm9", "--raw", str(raw), "--out", str(tmp_path / "q"), "--max-residues", "5"]) == 2


def test_conditional_sampling_keeps_labels_through_files(tmp_path, data_dir):
    loaded = api.load(_checkpoint(tmp_path, data_dir, "seq-arm", conditional=True), device="cpu")
    assert loaded.state["labels"][-1] == "unknown" and sum(loaded.state["label_weights"]) == 96
    items, columns = loaded.sample_table(6, seed=1, label="Firmicutes")
    assert columns["label"] == ["Firmicutes"] * 6
    assert all(item is None or item.label == "Firmicutes" for item in items)
    with pytest.raises(ValueError, match="not one of this model's labels"):
        loaded.sample_table(2, label="Chordata")
    _, columns = loaded.sample_table(12, seed=2)
    assert len(set(columns["label"])) >= 2  # labels drawn from the training frequencies
    # write/read: valid samples in the FASTA, every draw in the CSV, invalid ones counted
    items = [SequenceSample("ACGT", "Firmicutes"), None, SequenceSample("GGCA", None)]
    out = tmp_path / "samples.fasta"
    assert SequenceDomain.write_samples(out, Samples(items, np.array([-5.0, math.nan, -6.0]))) == 2
    assert SequenceDomain.read_samples(out) == items
    with pytest.raises(ValueError, match=r"\.fasta"):
        SequenceDomain.write_samples(tmp_path / "s.csv", Samples(items, np.zeros(3)))
    ll = loaded.log_likelihood([SequenceSample("ACGT", "Firmicutes"), SequenceSample("ACGT", None), "ACXT", None])
    assert np.isfinite(ll[:2]).all() and ll[0] != ll[1] and np.isnan(ll[2:]).all()


def _random_fasta(rng: random.Random, n: int) -> bytes:
    lines = []
    for i in range(n):
        sequence = "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 120)))
        if i % 3 == 0:  # a soft-masked (lower-case) run
            sequence = sequence[:5] + sequence[5:17].lower() + sequence[17:]
        width = rng.choice([60, 70, 80, 1000])
        end = "\r\n" if i % 4 == 1 else "\n"
        lines.append(f">seq{i} some description{end}")
        lines.extend(sequence[j:j + width] + end for j in range(0, len(sequence), width))
    return ("".join(lines)).encode()[:-1]  # no final newline


def test_compression_round_trips_random_and_real_files_bit_exact(tmp_path, data_dir):
    loaded = api.load(_checkpoint(tmp_path, data_dir, "seq-arm"), device="cpu")
    random_file = tmp_path / "random.fasta"
    random_file.write_bytes(b"\n" + _random_fasta(random.Random(0), 40))
    for source in (random_file, data_dir / "test.fasta"):
        packed, restored = tmp_path / "x.dgmz", tmp_path / "restored.fasta"
        stats = compression.compress(loaded, source, packed, group_size=16)
        compression.decompress(loaded, packed, restored)
        assert restored.read_bytes() == source.read_bytes()
        assert stats["output_bytes"] == packed.stat().st_size
    # an untrained model codes near log2(5 residues + specials) bits; the coder adds little
    assert 1.5 < stats["range_coded_bits_per_residue"] < 3.5


def test_decompression_refuses_the_wrong_model_and_corrupted_files(tmp_path, data_dir):
    loaded = api.load(_checkpoint(tmp_path, data_dir, "seq-arm"), device="cpu")
    packed = tmp_path / "x.dgmz"
    compression.compress(loaded, data_dir / "test.fasta", packed)
    (tmp_path / "other").mkdir()
    other = api.load(_checkpoint(tmp_path / "other", data_dir, "seq-arm", d_model=16), device="cpu")
    with pytest.raises(compression.CompressionError, match="compressed with another model"):
        compression.decompress(other, packed, tmp_path / "out.fasta")
    data = bytearray(packed.read_bytes())
    data[-7] ^= 0x5A  # a flipped byte in the range-coded stream
    corrupted = tmp_path / "corrupted.dgmz"
    corrupted.write_bytes(bytes(data))
    with pytest.raises(compression.CompressionError, match="corrupted|checksum"):
        compression.decompress(loaded, corrupted, tmp_path / "out.fasta")
    assert not (tmp_path / "out.fasta").exists()
    (tmp_path / "truncated.dgmz").write_bytes(packed.read_bytes()[:20])
    with pytest.raises(compression.CompressionError, match="truncated"):
        compression.decompress(loaded, tmp_path / "truncated.dgmz", tmp_path / "out.fasta")


@pytest.mark.parametrize("content, message", [
    (b"ACGT\n>a\nACGT\n", "sequence before the first"),
    (b">a\nACGT\n>b\n>c\nAC\n", "has no sequence"),
    (b">a\nACRT\n", "'R' is not in the alphabet"),
    (b">a\nAC\xffGT\n", "not ASCII"),
    (b">a\n" + b"A" * 400 + b"\n", "this model codes at most"),
])
def test_compression_rejects_bad_input_naming_the_record(tmp_path, data_dir, content, message):
    loaded = api.load(_checkpoint(tmp_path, data_dir, "seq-arm"), device="cpu")
    source = tmp_path / "bad.fasta"
    source.write_bytes(content)
    with pytest.raises(compression.CompressionError, match=message):
        compression.compress(loaded, source, tmp_path / "x.dgmz")


def test_compression_needs_an_autoregressive_model(tmp_path, data_dir):
    loaded = api.load(_checkpoint(tmp_path, data_dir, "seq-diffusion"), device="cpu")
    with pytest.raises(compression.CompressionError, match="not an autoregressive model"):
        compression.compress(loaded, data_dir / "test.fasta", tmp_path / "x.dgmz")


def test_cli_sample_likelihood_and_compress(tmp_path, data_dir):
    import json

    from dgm_science.cli import main

    ckpt = _checkpoint(tmp_path, data_dir, "seq-arm", conditional=True)
    out = tmp_path / "samples.fasta"
    assert main(["sample", "--checkpoint", str(ckpt), "-n", "5", "--label", "Proteobacteria", "--out", str(out)]) == 0
    table = out.with_suffix(".csv").read_text().splitlines()
    assert len(table) == 6 and all(",Proteobacteria," in row for row in table[1:])
    assert main(["sample", "--checkpoint", str(ckpt), "-n", "5", "--out", str(tmp_path / "s.csv")]) == 2
    assert main(["likelihood", "--checkpoint", str(ckpt), "--fasta", str(data_dir / "test.fasta"),
                 "--out", str(tmp_path / "ll.json")]) == 0
    stats = json.loads((tmp_path / "ll.json").read_text())
    assert stats["scored"] == 12 and stats["likelihood"] == "exact" and 1 < stats["bits_per_residue"] < 4
    assert main(["compress", "--checkpoint", str(ckpt), "--input", str(data_dir / "test.fasta"), "--out",
                 str(tmp_path / "t.dgmz"), "--verify", "--stats", str(tmp_path / "c.json")]) == 0
    stats = json.loads((tmp_path / "c.json").read_text())
    assert stats["round_trip"] == "bit-exact" and stats["xz9_bits_per_residue"] > 0
    assert main(["decompress", "--checkpoint", str(ckpt), "--input", str(tmp_path / "t.dgmz"), "--out",
                 str(tmp_path / "back.fasta")]) == 0
    assert (tmp_path / "back.fasta").read_bytes() == (data_dir / "test.fasta").read_bytes()


@pytest.mark.parametrize("name, layers", [("seq-vae", 1), ("seq-hvae", 2), ("seq-arm", 0)])
def test_dgm_likelihood_reports_each_latent_layers_active_units_and_kl(tmp_path, data_dir, name, layers):
    import json

    from dgm_science.cli import main

    ckpt = _checkpoint(tmp_path, data_dir, name)
    out = tmp_path / "ll.json"
    assert main(["likelihood", "--checkpoint", str(ckpt), "--fasta", str(data_dir / "test.fasta"),
                 "--out", str(out)]) == 0
    stats = json.loads(out.read_text())
    if not layers:
        assert "latent" not in stats and stats["likelihood"] == "exact"
        return
    latent = stats["latent"]
    assert stats["likelihood"] == "bound" and latent["layers"] == layers and latent["items"] == 12
    dims = TINY_CONFIGS[name]["latent_dim"]
    assert latent["latent_dims"] == [dims] * layers
    assert all(0 <= a <= dims for a in latent["active_units"]) and all(k >= 0 for k in latent["kl_nats"])
    # the same numbers from the API, whose posterior samples are seeded
    loaded = api.load(ckpt, device="cpu")
    from dgm_science.domains.sequences.fasta import read_fasta

    again = loaded.latent_statistics(read_fasta(data_dir / "test.fasta"))
    assert again["kl_nats"] == pytest.approx(latent["kl_nats"]) and again["active_units"] == latent["active_units"]


def _scale_posteriors(ckpt, tmp_path, factor: float):
    """The same checkpoint with every posterior network's last layer times ``factor``: 0 gives, with
    the residual posterior, q(z_l | ..) = p(z_l | z_>l) and q(z_L | x) = N(0, I) for every x (a
    collapsed HVAE); a large factor posterior means that vary with x in every layer."""
    payload = checkpoint.load(ckpt)
    state = {k: (v * factor if (k.startswith("posteriors.") or k.startswith("top_posterior."))
                 and ".net.2." in k else v) for k, v in payload["state_dict"].items()}
    path = tmp_path / f"posteriors_x{factor:g}.ckpt"
    checkpoint.save(path, domain="sequences", model_name=payload["model"], config=payload["config"],
                    state_dict=state, domain_state=payload["domain_state"], info=payload["info"])
    return path


@pytest.mark.parametrize("name, layers", [("seq-hvae", 2), ("seq-vae", 1), ("seq-arm", 0)])
def test_dgm_evaluate_counts_each_latent_layers_active_units_on_the_validation_split(tmp_path, data_dir, name,
                                                                                    layers):
    """Every run that evaluates its samples counts its active units (metrics.json's latent), not only
    where ``dgm likelihood`` runs; a collapsed hierarchical VAE shows 0 in every layer."""
    import json

    from dgm_science.cli import main
    from dgm_science.domains.sequences.fasta import read_fasta

    # the residual posterior: zeroing the posterior networks' outputs makes q the prior in every layer
    ckpt = _checkpoint(tmp_path, data_dir, name, **({"residual_posterior": True} if name == "seq-hvae" else {}))
    samples, out = tmp_path / "samples.fasta", tmp_path / "metrics.json"
    assert main(["sample", "--checkpoint", str(ckpt), "-n", "4", "--out", str(samples)]) == 0
    args = ["evaluate", "--domain", "sequences", "--samples", str(samples), "--reference", str(data_dir)]
    assert main([*args, "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    if not layers:
        assert "latent" not in metrics
        return
    latent = metrics["latent"]
    assert latent["layers"] == layers and latent["items"] == len(read_fasta(data_dir / "valid.fasta"))
    assert len(latent["active_units"]) == layers and all(k >= 0 for k in latent["kl_nats"])
    if name != "seq-hvae":
        return
    # the active-unit check: 0 in every layer of a collapsed HVAE, > 0 in every layer where q varies with x
    assert main([*args, "--checkpoint", str(_scale_posteriors(ckpt, tmp_path, 0.0)), "--out", str(out)]) == 0
    collapsed = json.loads(out.read_text())["latent"]
    assert collapsed["active_units"] == [0] * layers and max(collapsed["kl_nats"]) < 1e-4, collapsed
    assert main([*args, "--checkpoint", str(_scale_posteriors(ckpt, tmp_path, 300.0)), "--out", str(out)]) == 0
    used = json.loads(out.read_text())["latent"]
    assert all(a > 0 for a in used["active_units"]) and min(used["kl_nats"]) > 0.1, used


@pytest.mark.parametrize("name", ["seq-vae", "seq-hvae"])
def test_posterior_bn_makes_every_layers_posterior_mean_vary_with_x_from_the_start(data_dir, name):
    """BN-VAE (``posterior_bn``, the default's fix of seq-hvae's collapse): on 16S-like data an
    untrained encoder's posterior means barely vary over x (0 active units in some layer); batch-
    normalised with gamma 0.3, every unit of every layer has Var_x E_q[z | x] ~ 0.09 > 0.01."""
    from dgm_science.families.hierarchical_vae import active_units

    spec = registry.get("model", name)
    extra = {"residual_posterior": True} if name == "seq-hvae" else {}
    items = read_fasta(data_dir / "train.fasta")
    counts = {}
    for gamma in (0.0, 0.3):
        cfg = from_dict(spec.Config, TINY_CONFIGS[name] | extra | {"posterior_bn": gamma}, name)
        state = SequenceDomain.fit_state(data_dir, spec, cfg)
        torch.manual_seed(0)
        model = spec.build(cfg, state)
        batch, _ = SequenceDomain.batch_of(items, spec, cfg, state)
        for module in model.modules():  # running statistics: the cumulative average of training batches
            if isinstance(module, torch.nn.BatchNorm1d):
                module.momentum = None
        with torch.no_grad():
            for _ in range(3):
                model.latent_terms(batch)
            model.eval()
            means, kls = model.latent_terms(batch)
        counts[gamma] = active_units(means)
        if gamma:
            assert counts[gamma] == [m.shape[1] for m in means], counts
            assert bool((kls.mean(0) > 0.05).all()), kls.mean(0)
    assert min(counts[0.0]) < min(counts[0.3]), counts


def test_deep_features_give_every_latent_layer_the_last_convolutions_pooled_features(data_dir):
    """seq-hvae's ``deep_features``: each layer's posterior reads the features after every convolution
    (as seq-vae's latent does); by default the ladder gives layer 1 the shallower stage's."""
    from dgm_science.domains.sequences.models import LadderConvEncoder

    spec = registry.get("model", "seq-hvae")
    items = read_fasta(data_dir / "train.fasta")[:8]
    for deep in (False, True):
        cfg = from_dict(spec.Config, TINY_CONFIGS["seq-hvae"] | {"deep_features": deep, "encoder_layers": 4},
                        "seq-hvae")
        state = SequenceDomain.fit_state(data_dir, spec, cfg)
        model = spec.build(cfg, state)
        batch, _ = SequenceDomain.batch_of(items, spec, cfg, state)
        assert isinstance(model.encoder, LadderConvEncoder)
        with torch.no_grad():
            features = model.encoder(batch)
            (last,) = model.encoder.pooled(batch, [4])
        assert len(features) == 2 and torch.equal(features[-1], last)
        assert torch.equal(features[0], last) == deep
