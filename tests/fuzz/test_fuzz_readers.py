"""Fuzz the input readers with Hypothesis: SMILES files through the tokenizers, FASTA files, run
configs (``load_mapping`` + ``RunConfig.parse``) and files written by ``dgm compress``.

Property of every reader: for any input it returns a valid result or raises the project's error
(``DataError``, ``ConfigError``, ``CompressionError``: ``ValueError`` subclasses that the CLI
prints as one ``dgm: error: ...`` line), with a message of bounded length; never another
exception, and never a hang: each example has a Hypothesis deadline and a hard wall-clock limit.

Bounded by default (the whole module runs in well under a minute on two cores, deterministic
examples, no example database); ``FUZZ_EXAMPLES=5000 pytest -m fuzz tests/fuzz`` runs each target
on that many random examples instead (and ``FUZZ_DEADLINE_MS`` relaxes the per-example deadline).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import lzma
import os
import signal
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dgm_science.config import ConfigError, load_mapping  # noqa: E402
from dgm_science.errors import DataError  # noqa: E402

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
LONG_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
"""Examples per target when set (a long local run); 0: the bounded CI defaults below."""
DEADLINE_MS = int(os.environ.get("FUZZ_DEADLINE_MS", "5000"))
HARD_LIMIT_S = 30.0
"""Wall-clock limit of one example: a hang fails the test instead of stalling the run."""
MAX_MESSAGE = 1000
"""An error message longer than this is not "one clear line" (e.g. a 1 MB SMILES echoed back)."""


def fuzz_settings(examples: int, deadline_ms: int = DEADLINE_MS) -> settings:
    """Hypothesis settings of one target: ``examples`` in CI (deterministic, no database), or
    ``FUZZ_EXAMPLES`` random ones."""
    return settings(
        max_examples=LONG_EXAMPLES or examples,
        deadline=datetime.timedelta(milliseconds=deadline_ms),
        derandomize=not LONG_EXAMPLES,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


class Hang(Exception):
    """An example ran past ``HARD_LIMIT_S``."""


@contextlib.contextmanager
def hard_limit(seconds: float = HARD_LIMIT_S) -> Iterator[None]:
    """Raise ``Hang`` in the code under test after ``seconds`` (SIGALRM; a no-op off the main
    thread or where there is no SIGALRM)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"example ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(function: Callable[[], Any], allowed: tuple[type[BaseException], ...],
            path: str = "") -> tuple[Any, BaseException | None]:
    """(result, None) or (None, error) when ``function`` raised one of ``allowed`` with a short
    message (not counting the file ``path`` it names); any other exception propagates and fails
    the example."""
    with hard_limit():
        try:
            return function(), None
        except allowed as err:
            message = str(err)
            assert message, f"{type(err).__name__} without a message"
            length = len(message) - (len(path) if path and path in message else 0)
            assert length <= MAX_MESSAGE, f"{type(err).__name__} message of {len(message)} characters"
            return None, err


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dgm-fuzz-") as tmp:
        yield Path(tmp)


def mutate(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """``data`` with a few random edits: flipped/overwritten bytes, insertions, deletions, a cut."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        if not out:
            out.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        i = draw(st.integers(0, len(out) - 1))
        if kind == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            out[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("\n"), ord(">"), ord("{"), ord("1")]))
        elif kind == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[i:i + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del out[i:]
        else:
            j = draw(st.integers(i, min(len(out), i + 32)))
            out[j:j] = out[i:j]
    return bytes(out)


# ----------------------------------------------------------------------------- SMILES files

from dgm_science.domains.molecules.data import read_smiles  # noqa: E402
from dgm_science.tokenizer import (  # noqa: E402
    MAX_SMILES_LENGTH, SMILES_REGEX, Tokenizer, split_smiles,
)

MOSES = (ROOT / "tests" / "data" / "moses_sample.smi").read_text().split()[:40]
SMILES_CHARS = "CNOSPFIBrcnosl()[]=#@+-\\/%0123456789.H*$:~?> \t,"


@st.composite
def smiles_files(draw: Callable) -> tuple[str, bytes]:
    """(file suffix, bytes) of a SMILES file: real MOSES lines, SMILES-like text, random bytes,
    any of them mutated; CSVs with or without a SMILES column; gzip, intact or corrupted."""
    suffix = draw(st.sampled_from([".smi", ".csv", ".csv.gz", ".smi.gz"]))
    kind = draw(st.sampled_from(["moses", "text", "binary"]))
    if kind == "moses":
        lines = draw(st.lists(st.sampled_from(MOSES), max_size=8))
        text = "\n".join(lines)
    elif kind == "text":
        lines = draw(st.lists(st.text(alphabet=SMILES_CHARS, max_size=40), max_size=8))
        text = "\n".join(lines)
    else:
        text = None
    if text is not None and ".csv" in suffix:
        header = draw(st.sampled_from(["SMILES", "smiles,SPLIT", "id,Smiles", "index", ""]))
        text = header + "\n" + text
    raw = draw(st.binary(max_size=300)) if text is None else text.encode()
    if draw(st.booleans()):
        raw = mutate(raw, draw)
    if suffix.endswith(".gz") and draw(st.integers(0, 3)):
        raw = gzip.compress(raw, mtime=0)
        if draw(st.booleans()):
            raw = mutate(raw, draw)
    return suffix, raw


@pytest.mark.parametrize("raw", [b"\x1f\x8b\x08\x04" + b"\x00" * 17,
                                 b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\x03\x03" + b"\x00" * 9])
def test_read_smiles_corrupted_gzip_is_a_data_error(workdir, raw):
    path = workdir / "corrupted.smi.gz"
    path.write_bytes(raw)
    with pytest.raises(DataError):
        read_smiles(path)


def _tokenize_all(kind: str, smiles: list[str]) -> Tokenizer:
    tokenizer = Tokenizer.fit(kind, smiles)
    for s in smiles:
        ids = tokenizer.encode(s)
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        assert all(0 <= i < len(tokenizer) for i in ids)
        if kind == "smiles":
            assert tokenizer.decode(ids) == s
    again = Tokenizer.from_state(tokenizer.state())
    assert again.tokens == tokenizer.tokens
    return tokenizer


@fuzz_settings(200)
@given(case=smiles_files(), kind=st.sampled_from(["smiles", "smiles", "selfies"]))
@example(case=(".smi", b"[" * 5000 + b"\n"), kind="smiles")
@example(case=(".csv.gz", gzip.compress(b"SMILES\nCCO\n", mtime=0)[:-9] + b"\x00" * 9), kind="smiles")
@example(case=(".smi", b"C1CC\n"), kind="selfies")
def test_fuzz_smiles_file_reader_and_tokenizers(workdir, case, kind):
    """read_smiles, then the tokenizer fitted on the file and every line encoded (as fit_state and
    MoleculeDataset do): a list of strings and a working tokenizer, or DataError / ValueError."""
    suffix, raw = case
    path = workdir / f"molecules{suffix}"
    path.write_bytes(raw)
    smiles, error = outcome(lambda: read_smiles(path), DataError)
    if error is not None:
        return
    assert isinstance(smiles, list) and all(isinstance(s, str) for s in smiles)
    assert any(smiles)  # require_any
    assert all(s == s.strip() and not any(c in s for c in "\n\r") for s in smiles if ".csv" not in suffix)
    outcome(lambda: _tokenize_all(kind, smiles), (ValueError,))


def test_smiles_long_lines_are_refused_quickly(workdir):
    """A 1 MB SMILES line (valid atoms, or '[' that never close: quadratic in the old bracket
    regex) is refused in well under a second with a short message naming the limit."""
    for line in ("C" * 1_000_000, "[" * 1_000_000, "[C" * 500_000):
        path = workdir / "long.smi"
        path.write_text("CCO\n" + line + "\nCCO\n")
        start = time.perf_counter()
        with pytest.raises(DataError, match="long.smi: line 2: a SMILES of 1,000,000 characters") as info:
            read_smiles(path)
        assert len(str(info.value)) < 200 + len(str(path))
        for kind in ("smiles", "selfies"):  # the tokenizer's own bound, for SMILES that come from elsewhere
            with pytest.raises(ValueError, match=f"longer than {MAX_SMILES_LENGTH} characters") as info:
                Tokenizer.fit(kind, [line])
            assert len(str(info.value)) < 200
        assert time.perf_counter() - start < 5
    # the bracket-atom pattern is linear: 200k unclosed '[' (13 s with the old pattern)
    start = time.perf_counter()
    assert SMILES_REGEX.findall("[" * 200_000) == []
    assert split_smiles("[C@@H]" * 1600) == ["[C@@H]"] * 1600
    assert time.perf_counter() - start < 1


# ----------------------------------------------------------------------------- FASTA files

from dgm_science.domains.sequences.fasta import DNA, IUPAC_DNA, PROTEIN, FastaRecord, read_fasta  # noqa: E402


@st.composite
def fasta_bytes(draw: Callable) -> bytes:
    """FASTA-like files (headers, wrapped sequences, blank lines, CRLF, stray text, any case) or
    random bytes; plain or gzip-compressed, either possibly corrupted."""
    if draw(st.integers(0, 4)) == 0:
        raw = draw(st.binary(max_size=400))
    else:
        letters = draw(st.sampled_from(["ACGTN", "acgtRYn", "ACDEFGHIKLMNPQRSTVWY", "ACGT-*. 0Xé"]))
        end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        lines = []
        for _ in range(draw(st.integers(0, 5))):
            if draw(st.integers(0, 5)):
                lines.append(">" + draw(st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t)))
            for _ in range(draw(st.integers(0, 3))):
                lines.append(draw(st.text(alphabet=letters, max_size=70)))
        raw = end.join(lines).encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            raw = mutate(raw, draw)
    if draw(st.integers(0, 3)) == 0:
        raw = gzip.compress(raw, mtime=0)
        if draw(st.booleans()):
            raw = mutate(raw, draw)
    return raw


@fuzz_settings(250)
@given(raw=fasta_bytes(), alphabet=st.sampled_from([None, DNA, IUPAC_DNA, PROTEIN]), uppercase=st.booleans())
@example(raw=gzip.compress(b">a\nACGT\n" * 50, mtime=0)[:10] + b"\xff" * 40, alphabet=None, uppercase=True)
@example(raw=b"\x1f\x8b", alphabet=DNA, uppercase=True)
@example(raw=b">" + b"x" * 100_000 + b"\nACGTX\n", alphabet=DNA, uppercase=True)
def test_fuzz_fasta_reader(workdir, raw, alphabet, uppercase):
    """read_fasta: records with an id, a non-empty sequence in the alphabet, or DataError."""
    path = workdir / "sequences.fasta"
    path.write_bytes(raw)
    records, error = outcome(lambda: read_fasta(path, alphabet, uppercase=uppercase), (DataError,))
    if error is not None:
        return
    assert records and all(isinstance(r, FastaRecord) for r in records)
    for record in records:
        assert record.header and record.id and record.header == record.header.strip()
        assert record.sequence and "\n" not in record.sequence and "\r" not in record.sequence
        if alphabet is not None:
            assert set(record.sequence) <= alphabet
        if uppercase:
            assert record.sequence == record.sequence.upper()


def test_fasta_long_line_is_read_in_linear_time(workdir):
    path = workdir / "long.fasta"
    path.write_bytes(b">chr1 one long line\n" + b"ACGT" * 250_000 + b"\n")
    start = time.perf_counter()
    (record,) = read_fasta(path, DNA)
    assert len(record.sequence) == 1_000_000 and time.perf_counter() - start < 5


# ----------------------------------------------------------------------------- configs

from dgm_science import api, registry  # noqa: E402

MODELS = registry.names("model")
SECTIONS = ("model", "train", "sample")

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(), st.sampled_from([2**63, -(2**63), 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["auto", "cpu", "smiles", "selfies", "1e-3", "32", "x0", "eps", ""]),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _field_names(model: str) -> dict[str, list[str]]:
    import dataclasses

    from dgm_science.config import TrainConfig

    spec = registry.get("model", model)
    classes = {"model": spec.Config, "train": TrainConfig, "sample": registry.get("domain", spec.domain).SampleConfig}
    return {section: [f.name for f in dataclasses.fields(cls)] for section, cls in classes.items()}


@st.composite
def run_configs(draw: Callable) -> tuple[str, Any]:
    """(model name, config mapping) near the real schema: real keys (and a few unknown or
    non-string ones) with values of any type, range or nesting; sometimes not a mapping at all."""
    model = draw(st.sampled_from(MODELS))
    if draw(st.integers(0, 9)) == 0:
        return model, draw(_values)
    names = _field_names(model)
    config: dict[Any, Any] = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "optimizer", 1]), max_size=3, unique=True)):
        if section not in SECTIONS or draw(st.integers(0, 9)) == 0:
            config[section] = draw(_values)
            continue
        keys = st.one_of(st.sampled_from(names[section]), st.sampled_from(["bach_size", "", None, 3, True]))
        config[section] = draw(st.dictionaries(keys, _values, max_size=5))
    return model, config


def _parse(model: str, data: Any) -> api.RunConfig:
    parsed = api.RunConfig.parse(model, data, where="fuzz")
    # a valid result is one that parses back to itself from its own dict (types checked, no NaN)
    assert api.RunConfig.parse(model, json.loads(json.dumps(parsed.to_dict())), where="again") == parsed
    return parsed


@fuzz_settings(300)
@given(case=run_configs())
def test_fuzz_run_config_parse(case):
    """RunConfig.parse (what ``dgm train --config`` calls after load_mapping) on near-valid
    mappings: a RunConfig that round-trips, or ConfigError."""
    model, data = case
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return  # load_mapping refuses these (test_fuzz_load_mapping); parse takes its mappings
    outcome(lambda: _parse(model, data), (ConfigError,))


@st.composite
def config_sources(draw: Callable) -> tuple[str, Any]:
    """(how, payload): a YAML/JSON dump of a near-valid config, random text (often YAML-ish),
    or random bytes, for a file; or an inline JSON string."""
    model, data = draw(run_configs())
    how = draw(st.sampled_from(["yaml", "json", "inline", "text", "bytes", "yaml-mutated"]))
    if how in ("yaml", "yaml-mutated"):
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()))
        if how == "yaml-mutated":
            return model, ("bytes", mutate(text.encode(), draw))
        return model, ("text", text)
    if how in ("json", "inline"):
        text = json.dumps(data, allow_nan=True, default=str, ensure_ascii=draw(st.booleans()))
        if draw(st.integers(0, 3)) == 0:
            text = mutate(text.encode(), draw).decode("utf-8", "replace")
        return model, ("inline" if how == "inline" else "text", text)
    if how == "text":
        alphabet = st.sampled_from(list("{}[]:,-&*!|>'\"#? \n\tabcdemlorstiny_0123456789.%@`~"))
        return model, ("text", draw(st.text(alphabet=st.one_of(alphabet, st.characters()), max_size=120)))
    return model, ("bytes", draw(st.binary(max_size=200)))


YAML_SPECIALS = [
    # billion laughs: a few lines, 10^9 leaves through aliases
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    + "model: {d_model: *i}\n",
    "model: &m {d_model: *m}\n",  # undefined alias
    "model: &m [*m]\n",  # self-reference
    "train: &t {batch_size: 1}\nsample: *t\n",
    "train: {batch_size: " + "9" * 5000 + "}\n",  # an integer of over 4300 digits
    "[" * 5000 + "]" * 5000,
    "model: !!python/object/apply:os.system ['true']\n",
    "1: 2\ntrain: {3: 4}\n",
    "train: {? [a, b] : 1}\n",
    "train: {max_time_minutes: .nan, lr: .inf}\n",
    "train: false\n",
    "model: 2024-01-01\n",
    "train: {batch_size: 2024-01-01}\n",
    "\ufeffmodel: {}\n",
]


@fuzz_settings(300)
@given(case=config_sources())
@example(case=("seq-arm", ("bytes", b"\xff\xfe\x00m\x00o")))
@example(case=("seq-arm", ("inline", "{" + '"a":' * 3000 + "1" + "}" * 3000)))
@example(case=("seq-arm", ("inline", '{"train": {"batch_size": ' + "1" * 5000 + "}}")))
@example(case=("seq-arm", ("inline", '{"train": {"lr": NaN, "max_time_minutes": Infinity}}')))
@example(case=("smiles-arm", ("inline", '{"model": {"tokenizer": "' + "x" * 1_000_000 + '"}}')))
def test_fuzz_load_mapping_and_parse(workdir, case):
    """load_mapping (a file, or inline JSON) then RunConfig.parse: a RunConfig or ConfigError."""
    model, (how, payload) = case
    if how == "inline":
        source = payload if payload.lstrip().startswith("{") else "{" + payload
    else:
        source = workdir / "config.yaml"
        source.write_bytes(payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass"))
    data, error = outcome(lambda: load_mapping(source), (ConfigError,))
    if error is None:
        assert isinstance(data, dict) and all(isinstance(k, str) for k in data)
        outcome(lambda: _parse(model, data), (ConfigError,))


@pytest.mark.parametrize("text", YAML_SPECIALS, ids=range(len(YAML_SPECIALS)))
def test_hostile_yaml_configs(workdir, text):
    """YAML that PyYAML parses into something odd (aliases, huge integers, deep nesting, tags,
    non-string keys, dates, NaN) is a ConfigError or a valid config, quickly."""
    source = workdir / "hostile.yaml"
    source.write_text(text)
    start = time.perf_counter()
    data, error = outcome(lambda: load_mapping(source), (ConfigError,))
    if error is None:
        outcome(lambda: _parse("seq-arm", data), (ConfigError,))
    assert time.perf_counter() - start < 5


@fuzz_settings(100)
@given(name=st.text(max_size=300), long=st.booleans())
def test_fuzz_config_paths(workdir, name, long):
    """Any path string (NUL bytes, names too long for the OS, directories) is a ConfigError or
    names a file; never an OSError the CLI would not print."""
    text = str(workdir / (name * 40 if long else name))
    if text.lstrip().startswith("{"):
        return
    outcome(lambda: load_mapping(text), (ConfigError,), path=text)


# ----------------------------------------------------------------------------- dgm compress files

from dgm_science.domains.sequences import compression  # noqa: E402

FASTA = b">a one\nACgT\nA\n\n>b\r\nNC\r\n>c x\nGG\rT"
"""Short records (each decoding step is a model call), lower case, an empty line, CRLF and a lone
CR (which the skeleton did not restore before: a file ``dgm compress`` wrote but could not
decompress), no final line break."""


@pytest.fixture(scope="module")
def codec(workdir) -> Iterator[tuple[Any, Path, bytes]]:
    """(a tiny untrained seq-arm, loaded; the work folder; the compressed bytes of ``FASTA``), on
    one torch thread (a tiny model's steps are many times slower on two contended ones)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _codec(workdir)
    finally:
        torch.set_num_threads(threads)


def _codec(workdir: Path) -> tuple[Any, Path, bytes]:
    import torch

    from dgm_science import checkpoint
    from dgm_science.config import SampleConfig, TrainConfig, from_dict

    spec = registry.get("model", "seq-arm")
    cfg = from_dict(spec.Config, {"d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0, "max_length": 40,
                                  "conditional": False}, "seq-arm")
    state = {"dataset": "16s-v4", "kind": "dna", "alphabet": "ACGTN", "v4": True, "layout": "causal",
             "max_length": 40, "labels": [], "label_weights": []}
    torch.manual_seed(0)
    net = spec.build(cfg, state)
    path = workdir / "seq-arm.ckpt"
    checkpoint.save(path, domain="sequences", model_name="seq-arm",
                    config=api.RunConfig(cfg, TrainConfig(), SampleConfig()).to_dict(),
                    state_dict=net.state_dict(), domain_state=state, info={})
    loaded = api.load(path, device="cpu")
    source = workdir / "original.fasta"
    source.write_bytes(FASTA)
    compression.compress(loaded, source, workdir / "original.dgmz", group_size=2)
    packed = (workdir / "original.dgmz").read_bytes()
    compression.decompress(loaded, workdir / "original.dgmz", workdir / "restored.fasta")  # warm up
    assert (workdir / "restored.fasta").read_bytes() == FASTA
    return loaded, workdir, packed


def _container(header: dict[str, Any], skeleton: bytes, words: bytes) -> bytes:
    head = json.dumps(header, sort_keys=True).encode()
    return (compression.MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<Q", len(skeleton)) + skeleton
            + words)


def _split(packed: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    n = struct.unpack_from("<I", packed, 5)[0]
    header = json.loads(packed[9:9 + n])
    m = struct.unpack_from("<Q", packed, 9 + n)[0]
    start = 17 + n
    return header, packed[start:start + m], packed[start + m:]


def _check_decompress(codec: tuple[Any, Path, bytes], data: bytes) -> None:
    """Decompressing ``data``: the original bytes, or CompressionError and no output file."""
    loaded, workdir, _ = codec
    source, out = workdir / "fuzzed.dgmz", workdir / "fuzzed.fasta"
    source.write_bytes(data)
    out.unlink(missing_ok=True)
    stats, error = outcome(lambda: compression.decompress(loaded, source, out), (compression.CompressionError,))
    if error is None:
        assert out.read_bytes() == FASTA and stats["output_bytes"] == len(FASTA)
    else:
        assert not out.exists()


@fuzz_settings(150)
@given(data=st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: compression.MAGIC + b)))
@example(data=b"")
@example(data=compression.MAGIC + struct.pack("<I", 2**32 - 1))
def test_fuzz_decompress_random_bytes(codec, data):
    _check_decompress(codec, data)


@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_decompress_mutated_file(codec, data):
    """Byte-level mutations of a valid file (header, skeleton and range-coded words alike)."""
    _check_decompress(codec, mutate(codec[2], data.draw))


XZ_BOMB = lzma.compress(b"\n" * 2_000_000)
"""2 MB of line breaks in a few hundred bytes of xz: over the skeleton bound of any small file."""
_header_values = st.one_of(_scalars, st.lists(st.one_of(st.integers(-2, 5), _scalars), max_size=5),
                           st.dictionaries(st.text(max_size=5), _scalars, max_size=2))


@fuzz_settings(200)
@given(data=st.data())
def test_fuzz_decompress_structured_edits(codec, data):
    """Well-framed files with edited header fields, another skeleton (xz of random or crafted
    text, an xz bomb, trailing bytes) or other range-coded words: past the framing checks, into
    the header validation, the skeleton bound and the decoder."""
    header, skeleton, words = _split(codec[2])
    draw = data.draw
    part = draw(st.sampled_from(["header", "header", "skeleton", "words", "all"]))
    if part in ("header", "all"):
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(sorted(header) + ["extra"]))
            if draw(st.integers(0, 5)) == 0:
                header.pop(key, None)
            else:
                header[key] = draw(_header_values)
    if part in ("skeleton", "all"):
        text = draw(st.one_of(
            st.text(alphabet=">#~\n\r0123456789:,ACGTacgt x", max_size=200).map(str.encode),
            st.binary(max_size=100),
            st.just(XZ_BOMB),
        ))
        skeleton = (text if text is XZ_BOMB else lzma.compress(text)) if draw(st.integers(0, 4)) else draw(
            st.binary(max_size=100))
        if draw(st.integers(0, 4)) == 0:
            skeleton += draw(st.binary(min_size=1, max_size=8))
    if part in ("words", "all"):
        words = draw(st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
    _check_decompress(codec, _container(header, skeleton, words))


@fuzz_settings(250)
@given(content=st.one_of(st.binary(max_size=300), fasta_bytes()))
@example(content=b">a\nAC\x0cGT\n")
@example(content=b"\n \n>a\nacGT\r\nA\rC\n")
def test_fuzz_compress_input_split_join(content):
    """The compressor's FASTA split (``dgm compress``'s reader): CompressionError, or residues
    and skeleton that join back to the same bytes whenever the residues are letters (anything
    else the vocabulary refuses before coding)."""
    result, error = outcome(lambda: compression.split_fasta(content, "input.fasta"), (compression.CompressionError,))
    if error is None:
        sequences, skeleton = result
        assert sequences and all(sequences)
        if all(s.isalpha() for s in sequences):
            assert compression.join_fasta(sequences, skeleton) == content


def test_hard_limit_interrupts_a_hang():
    """The per-example guard itself: a busy loop is interrupted."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("no SIGALRM")
    with pytest.raises(Hang):
        with hard_limit(0.2):
            while True:
                pass
