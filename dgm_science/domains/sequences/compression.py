"""Lossless FASTA compression with an autoregressive sequence model and a range coder.

An exact-likelihood model p(x) = prod_t p(x_t | x_<t) codes a sequence in about -log2 p(x) bits
(Shannon): each residue, and the <eos> that ends the sequence, is range-coded (``constriction``'s
queue ``RangeEncoder``, Bamler 2022) with the model's next-token distribution. Everything that is
not a residue (headers, line breaks and widths, lower-case runs) goes to a text "skeleton"
compressed with xz (``lzma``), so the original bytes come back exactly.

Records are coded in groups of ``group_size``; within a group the symbols are ordered position by
position, so the decoder runs the same batched, KV-cached steps as the encoder. Both sides compute
the probabilities with the same code on the same batch shapes; the file stores the SHA-256 of the
model's weights and of the original bytes, so decoding with another model, or a corrupted file,
or on hardware whose arithmetic differs, fails with an error instead of returning wrong bytes.

File layout: ``MAGIC`` | uint32 LE header length | header JSON | uint64 LE skeleton length |
xz skeleton | range-coder words (uint32 LE).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import struct
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from dgm_science.domains.sequences.tokens import BOS, EOS, PAD, Vocabulary, condition_matrix, token_rows
from dgm_science.errors import DataError
from dgm_science.families.autoregressive import AutoregressiveModel
from dgm_science.utils import atomic_path

MAGIC = b"DGMZ\x01"
FORMAT_VERSION = 1
_LENGTH_LINE = re.compile(r"#(\d+)(\r\n|\n|\r|)$")
"""A sequence line of the skeleton: its length and line end (any that ``str.splitlines`` splits
FASTA text at and ``split_fasta`` keeps: CRLF, LF, a lone CR, or none at the end of the file)."""


class CompressionError(DataError):
    """A file cannot be compressed with this model, or decompressed to the original bytes."""


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's weights (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def split_fasta(content: bytes, source: str = "input") -> tuple[list[str], str]:
    """(residue strings in upper case, skeleton text) of FASTA bytes: the skeleton keeps header
    lines verbatim, each sequence line as ``#<length><line end>`` and each record's lower-case runs
    as a ``~start:length,..`` line after its header. Errors name the line: non-ASCII bytes, a
    sequence before any header, a record without residues."""
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as err:
        line = content[: err.start].count(b"\n") + 1
        raise CompressionError(f"{source}:{line}: not ASCII text") from None
    sequences: list[str] = []
    skeleton: list[str] = []
    current: list[str] | None = None
    header_at = 0

    def close() -> None:
        if current is None:
            return
        residues = "".join(current)
        if not residues:
            raise CompressionError(f"{source}:{header_at}: record {skeleton_header!r} has no sequence")
        runs = [f"{m.start()}:{m.end() - m.start()}" for m in re.finditer(r"[a-z]+", residues)]
        if runs:
            skeleton.insert(header_index + 1, "~" + ",".join(runs) + "\n")
        sequences.append(residues.upper())

    skeleton_header, header_index = "", 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        body = line.rstrip("\r\n")
        if body.startswith(">"):
            close()
            current, header_at, skeleton_header = [], number, body
            header_index = len(skeleton)
            skeleton.append(line)
        else:
            if current is None:
                if not body.strip():
                    skeleton.append(line)  # blank lines before the first header
                    continue
                raise CompressionError(f"{source}:{number}: sequence before the first '>' header")
            current.append(body)
            skeleton.append(f"#{len(body)}{line[len(body):]}")
    close()
    if not sequences:
        raise CompressionError(f"{source}: no FASTA record")
    return sequences, "".join(skeleton)


def join_fasta(sequences: list[str], skeleton: str) -> bytes:
    """Inverse of ``split_fasta``."""
    out: list[str] = []
    record = -1
    residues = ""
    position = 0
    for line in skeleton.splitlines(keepends=True):
        if line.startswith(">"):
            record += 1
            residues, position = sequences[record], 0
            out.append(line)
        elif line.startswith("~"):
            chars = list(residues)
            for run in line[1:].strip().split(","):
                start, length = map(int, run.split(":"))
                chars[start:start + length] = [c.lower() for c in chars[start:start + length]]
            residues = "".join(chars)
        else:
            match = _LENGTH_LINE.match(line)
            if match is None:
                out.append(line)
                continue
            length = int(match.group(1))
            out.append(residues[position:position + length] + match.group(2))
            position += length
    return "".join(out).encode("ascii")


def _groups(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


class _Stepper:
    """Batched next-token distributions of a causal model with a KV cache, float64 (B, V)."""

    def __init__(self, model: AutoregressiveModel, state: dict[str, Any], batch: int) -> None:
        network = model.network
        self.network = network
        device = network.head.weight.device
        self.cache = network.new_cache(batch, network.head.weight)
        condition = condition_matrix(state, [None] * batch)  # conditional models: the "unknown" label
        self.condition = None if condition is None else condition.to(device)
        self.device = device

    @torch.no_grad()
    def probs(self, previous: np.ndarray) -> np.ndarray:
        logits = self.network.step(torch.from_numpy(previous).to(self.device), self.cache, self.condition)
        return torch.softmax(logits.double(), dim=-1).cpu().numpy()


def _check_model(loaded: Any) -> AutoregressiveModel:
    if not isinstance(loaded.model, AutoregressiveModel):
        raise CompressionError(f"{loaded.name} is not an autoregressive model: lossless compression needs "
                               "exact next-token probabilities (use a seq-arm checkpoint)")
    if loaded.domain.name != "sequences":
        raise CompressionError(f"{loaded.path}: {loaded.name} is a {loaded.domain.name} model, not a sequence model")
    return loaded.model


def compress(loaded: Any, source: Path, out: Path, *, group_size: int = 256) -> dict[str, Any]:
    """Compress FASTA ``source`` into ``out`` with a loaded ``seq-arm`` model; returns sizes and bits
    per residue (whole file, and the range-coded residue stream alone)."""
    import constriction

    model = _check_model(loaded)
    source, out = Path(source), Path(out)
    content = source.read_bytes()
    sequences, skeleton = split_fasta(content, str(source))
    vocab = Vocabulary(loaded.state["alphabet"])
    limit = model.network.max_length - 2
    rows = []
    for i, sequence in enumerate(sequences):
        try:
            rows.append(vocab.encode(sequence))
        except ValueError as err:
            raise CompressionError(f"{source}: record {i + 1}: {err}") from None
        if len(sequence) > limit:
            raise CompressionError(f"{source}: record {i + 1} has {len(sequence)} residues; this model codes at "
                                   f"most {limit} (its max_length {model.network.max_length} includes <bos>, <eos>)")
    model.eval()
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    groups = []
    for group in _groups(len(rows), group_size):
        lengths = np.array([len(rows[i]) for i in group])
        tokens = token_rows([rows[i] for i in group], None, canvas=False).numpy()
        stepper = _Stepper(model, loaded.state, len(group))
        for t in range(1, tokens.shape[1]):
            probs = stepper.probs(tokens[:, t - 1])
            active = lengths + 1 >= t  # positions 1 .. length + 1 (<eos>) are coded
            encoder.encode(tokens[active, t].astype(np.int32), family, probs[active])
        groups.append(len(group))
    words = encoder.get_compressed()
    packed_skeleton = lzma.compress(skeleton.encode("ascii"), preset=9 | lzma.PRESET_EXTREME)
    header = {
        "format": FORMAT_VERSION, "model": loaded.name, "model_sha256": model_digest(model),
        "content_sha256": hashlib.sha256(content).hexdigest(), "content_bytes": len(content),
        "records": len(rows), "residues": int(sum(len(r) for r in rows)), "groups": groups,
        "alphabet": loaded.state["alphabet"],
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    payload = (MAGIC + struct.pack("<I", len(header_bytes)) + header_bytes
               + struct.pack("<Q", len(packed_skeleton)) + packed_skeleton + words.astype("<u4").tobytes())
    with atomic_path(out) as tmp:
        tmp.write_bytes(payload)
    residues = header["residues"]
    return {
        "records": len(rows), "residues": residues, "input_bytes": len(content), "output_bytes": len(payload),
        "skeleton_bytes": len(packed_skeleton), "range_coded_bytes": int(words.size * 4),
        "bits_per_residue": 8 * len(payload) / residues,
        "range_coded_bits_per_residue": 32 * words.size / residues,
    }


def compress_verified(loaded: Any, source: Path, out: Path, *, group_size: int = 256,
                      verify: bool = True) -> dict[str, Any]:
    """``compress`` plus its timing (MB/s), the gzip -9 / xz -9 baselines and, with ``verify``,
    a decompression into a temporary file compared byte for byte with ``source`` (``round_trip``);
    a mismatch is a CompressionError."""
    import filecmp
    import tempfile
    import time

    start = time.perf_counter()
    stats = compress(loaded, source, out, group_size=group_size)
    stats["compress_seconds"] = time.perf_counter() - start
    stats.update(baseline_bits_per_residue(source, stats["residues"]))
    megabytes = stats["input_bytes"] / 1e6
    stats["compress_mb_per_s"] = megabytes / stats["compress_seconds"]
    if verify:
        with tempfile.TemporaryDirectory() as tmp:
            restored = Path(tmp) / "restored.fasta"
            start = time.perf_counter()
            decompress(loaded, out, restored)
            stats["decompress_seconds"] = time.perf_counter() - start
            if not filecmp.cmp(restored, source, shallow=False):
                raise CompressionError(f"{out}: the round trip did not restore {source}")
        stats["decompress_mb_per_s"] = megabytes / stats["decompress_seconds"]
        stats["round_trip"] = "bit-exact"
    return stats


_SKELETON_RATIO = 16
"""Upper bound on skeleton bytes per byte of the original file (a residue costs at most a few
skeleton bytes: an empty line ``#0\n``, a one-letter lower-case run ``~123456:1,``), so that an
xz stream that expands without end (a corrupted or crafted file) is refused instead of filling
memory."""


def _check_header(header: Any) -> dict[str, Any]:
    """The header's fields decompress relies on, with their types; ValueError naming the first
    that is missing or wrong."""
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {repr(header.get('format'))[:40]}, this version reads {FORMAT_VERSION}")
    for key in ("model_sha256", "content_sha256"):
        if not isinstance(header.get(key), str):
            raise ValueError(f"the header has no {key} string")
    for key in ("content_bytes", "records"):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"the header's {key} is not a count")
    groups = header.get("groups")
    if not isinstance(groups, list) or not all(
            isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in groups):
        raise ValueError("the header's groups are not a list of positive counts")
    if sum(groups) != header["records"]:
        raise ValueError(f"the header's groups hold {sum(groups)} records, its records field says {header['records']}")
    return header


def _decompress_skeleton(packed: bytes, limit: int) -> str:
    """One xz stream, at most ``limit`` bytes once decompressed, with nothing after it."""
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    text = decompressor.decompress(packed, max_length=limit + 1)
    if len(text) > limit:
        raise ValueError(f"the skeleton decompresses to more than {limit} bytes")
    if not decompressor.eof:
        raise ValueError("the skeleton's xz stream is truncated")
    if decompressor.unused_data:
        raise ValueError("bytes after the skeleton's xz stream")
    return text.decode("ascii")


def read_container(path: Path) -> tuple[dict[str, Any], str, np.ndarray]:
    """(header, skeleton, range-coder words) of a compressed file; CompressionError when malformed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CompressionError(f"{path}: file not found") from None
    except OSError as err:
        raise CompressionError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not data.startswith(MAGIC):
        raise CompressionError(f"{path}: not a dgm compressed FASTA (bad magic bytes)")
    try:
        offset = len(MAGIC)
        (n_header,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + n_header > len(data):
            raise ValueError(f"header of {n_header} bytes, the file has {len(data) - offset} left")
        header = _check_header(json.loads(data[offset:offset + n_header]))
        offset += n_header
        (n_skeleton,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        if offset + n_skeleton > len(data):
            raise ValueError(f"skeleton of {n_skeleton} bytes, the file has {len(data) - offset} left")
        limit = min(_SKELETON_RATIO * header["content_bytes"] + 4096, 2**62)
        skeleton = _decompress_skeleton(data[offset:offset + n_skeleton], limit)
        offset += n_skeleton
        if (len(data) - offset) % 4:
            raise ValueError("range-coded stream is not a whole number of 32-bit words")
        words = np.frombuffer(data[offset:], dtype="<u4").astype(np.uint32)
        headers = sum(1 for line in skeleton.splitlines() if line.startswith(">"))
        if headers != header["records"]:
            raise ValueError(f"the skeleton has {headers} headers for {header['records']} records")
    except (struct.error, ValueError, lzma.LZMAError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise CompressionError(f"{path}: corrupted or truncated ({str(err)[:200]})") from None
    return header, skeleton, words


def decompress(loaded: Any, source: Path, out: Path) -> dict[str, Any]:
    """Restore the original FASTA bytes of ``source`` into ``out``; CompressionError (and no
    output) if the model is not the one that compressed it or the result fails its checksum."""
    import constriction

    model = _check_model(loaded)
    source, out = Path(source), Path(out)
    header, skeleton, words = read_container(source)
    if header.get("model_sha256") != model_digest(model):
        raise CompressionError(f"{source}: compressed with another model ({str(header.get('model'))[:60]}, weights sha256 "
                               f"{str(header.get('model_sha256'))[:12]}..), not with {loaded.name} "
                               f"({model_digest(model)[:12]}..)")
    vocab = Vocabulary(loaded.state["alphabet"])
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)
    model.eval()
    sequences: list[str] = []
    try:
        for size in header["groups"]:
            stepper = _Stepper(model, loaded.state, size)
            previous = np.full(size, BOS, dtype=np.int64)
            finished = np.zeros(size, dtype=bool)
            decoded: list[list[int]] = [[] for _ in range(size)]
            for _ in range(1, model.network.max_length):
                probs = stepper.probs(previous)
                active = ~finished
                try:
                    symbols = np.asarray(decoder.decode(family, probs[active]), dtype=np.int64)
                except (AssertionError, RuntimeError) as err:  # constriction: data invalid for the model
                    raise ValueError(f"the range-coded stream is invalid for this model ({err})") from None
                step = np.full(size, PAD, dtype=np.int64)
                step[active] = symbols
                for j in np.flatnonzero(active):
                    if step[j] != EOS:
                        decoded[j].append(int(step[j]))
                finished |= step == EOS
                previous = step
                if finished.all():
                    break
            if not finished.all():
                raise ValueError("a sequence did not end within the model's max_length")
            for ids in decoded:
                sequence = vocab.decode_row(np.array([BOS, *ids, EOS], dtype=np.int64))
                if sequence is None:
                    raise ValueError("decoded a special token inside a sequence")
                sequences.append(sequence)
        content = join_fasta(sequences, skeleton)
        if len(content) != header["content_bytes"]:
            raise ValueError(f"decoded {len(content)} bytes, the header says {header['content_bytes']}")
    except (ValueError, IndexError) as err:
        raise CompressionError(f"{source}: cannot be decoded with {loaded.name} ({err}); the file is corrupted") from None
    if hashlib.sha256(content).hexdigest() != header.get("content_sha256"):
        raise CompressionError(f"{source}: the decoded bytes fail the content checksum (corrupted file, or "
                               "decoding on hardware whose arithmetic differs from the compressing machine's)")
    with atomic_path(out) as tmp:
        tmp.write_bytes(content)
    return {"records": len(sequences), "output_bytes": len(content)}


def baseline_bits_per_residue(source: Path, residues: int) -> dict[str, float]:
    """Bits per residue of gzip -9 and xz -9 on the same file's bytes, and on its residues alone
    (one upper-case line per record: what the model's range-coded stream holds)."""
    import gzip

    content = Path(source).read_bytes()
    sequences = "\n".join(split_fasta(content, str(source))[0]).encode("ascii")
    out = {}
    for name, data in (("", content), ("sequences_", sequences)):
        out[f"gzip9_{name}bits_per_residue"] = 8 * len(gzip.compress(data, compresslevel=9, mtime=0)) / residues
        out[f"xz9_{name}bits_per_residue"] = 8 * len(lzma.compress(data, preset=9)) / residues
    return out
