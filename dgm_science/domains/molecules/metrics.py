"""MOSES evaluation metrics for generated molecules (Polykovskiy et al. 2020, molsets 0.3.1 definitions).

`reference_statistics` summarises a reference set (MOSES Test / TestSF) once; `evaluate` scores a generated
set against two such summaries. All per-molecule RDKit work is one pass per molecule (`describe_molecule`).
"""

from __future__ import annotations

import functools
import io
import os
import pkgutil
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from pathlib import Path

import numpy as np
import torch
from fcd import get_predictions
from fcd.utils import load_imported_model
from rdkit import Chem
from scipy.stats import wasserstein_distance
from tqdm.auto import tqdm

from dgm_science.domains.molecules.properties import (
    MORGAN_BITS,
    MoleculeFeatures,
    canonical_smiles,
    describe_molecule,
    map_molecules,
    parse_smiles,
    passes_filters,
)
from dgm_science.utils import atomic_path

CHEMNET_PAD_LENGTH = 350
CHEMNET_BLOCK = 4096
PROPERTY_NAMES = {"logP": "logp", "SA": "sa", "QED": "qed", "MW": "mw"}
REFERENCE_KEYS = (
    "fcd_mu",
    "fcd_sigma",
    "morgan_fps_packed",
    "fragment_smiles",
    "fragment_counts",
    "scaffold_smiles",
    "scaffold_counts",
    *PROPERTY_NAMES,
)


# --------------------------------------------------------------------------------------------- set metrics


def fraction_valid(smiles: Sequence[str | None]) -> float:
    """Fraction of entries that RDKit parses and sanitises; None and empty strings are invalid."""
    if len(smiles) == 0:
        raise ValueError("fraction_valid: empty list of SMILES")
    return sum(parse_smiles(s) is not None for s in smiles) / len(smiles)


def fraction_unique(canonical: Sequence[str], k: int | None = None) -> float:
    """unique@k: distinct fraction among the first k valid canonical SMILES (all of them if fewer, with a warning)."""
    if any(s is None for s in canonical):
        raise ValueError("fraction_unique expects valid canonical SMILES only; got None")
    if k is not None:
        if len(canonical) < k:
            warnings.warn(
                f"unique@{k}: only {len(canonical)} valid molecules, computed over those", stacklevel=2
            )
        canonical = canonical[:k]
    if len(canonical) == 0:
        return float("nan")
    return len(set(canonical)) / len(canonical)


def novelty(canonical: Sequence[str], train: Iterable[str]) -> float:
    """Fraction of distinct valid generated canonical SMILES absent from the (canonical) training set."""
    generated = set(canonical) - {None}
    if not generated:
        return float("nan")
    train_set = train if isinstance(train, Set) else set(train)
    return sum(s not in train_set for s in generated) / len(generated)


def fraction_passes_filters(molecules: Sequence[Chem.Mol | str | None]) -> float:
    """Filters: fraction of (valid) molecules passing `passes_filters` (MCF, PAINS, atoms, charge, rings)."""
    if len(molecules) == 0:
        return float("nan")
    return sum(passes_filters(m) for m in molecules) / len(molecules)


def cos_similarity(ref_counts: Mapping[str, int], gen_counts: Mapping[str, int]) -> float:
    """Cosine similarity of two count vectors given as {key: count}; missing keys count 0, NaN if either is empty."""
    if len(ref_counts) == 0 or len(gen_counts) == 0:
        return float("nan")
    keys = set(ref_counts) | set(gen_counts)
    ref = np.array([ref_counts.get(key, 0) for key in keys], dtype=np.float64)
    gen = np.array([gen_counts.get(key, 0) for key in keys], dtype=np.float64)
    return float(ref @ gen / (np.linalg.norm(ref) * np.linalg.norm(gen)))


def wasserstein(ref_values: Sequence[float], gen_values: Sequence[float]) -> float:
    """1-D Wasserstein-1 distance between two empirical distributions (scipy)."""
    if len(ref_values) == 0 or len(gen_values) == 0:
        return float("nan")
    return float(wasserstein_distance(ref_values, gen_values))


# ------------------------------------------------------------------------------------------------ Tanimoto


def _matmul_dtype(device: torch.device, n_bits: int) -> torch.dtype:
    """The dtype in which :func:`_bit_products` multiplies 0/1 fingerprints both fast and exactly: int8 on the
    CPU (``torch._int_mm`` sums in int32 with oneDNN's VNNI / AMX int8 kernels, where float16 runs no faster
    than float32 on CPUs without AMX-FP16), float16 on CUDA (bit counts <= 2048 are exact fp16 integers),
    float32 beyond 2048 bits there."""
    if device.type == "cpu" and hasattr(torch, "_int_mm"):
        return torch.int8
    return torch.float16 if n_bits <= 2048 else torch.float32


def _bit_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection counts (n, m) as float32 of 0/1 fingerprints a (n, D) and b (m, D), both of
    :func:`_matmul_dtype`: exact integers."""
    if a.dtype == torch.int8:
        return torch._int_mm(a, b.T).float()
    return (a @ b.T).float()


def _as_bits(fps: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    bits = np.asarray(fps)
    if bits.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (n_molecules, n_bits) 0/1 array, got shape {bits.shape}")
    return bits.astype(np.uint8, copy=False)


def tanimoto(a_fps: np.ndarray, b_fps: np.ndarray) -> np.ndarray:
    """Tanimoto similarity matrix (A, B) of 0/1 fingerprints a_fps (A, D), b_fps (B, D); two empty prints give 1."""
    a = torch.from_numpy(_as_bits(a_fps, "a_fps")).double()
    b = torch.from_numpy(_as_bits(b_fps, "b_fps")).double()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), 1.0).numpy()


def snn(
    gen_fps: np.ndarray,
    ref_fps: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    gen_batch: int = 4096,
    ref_batch: int = 8192,
) -> float:
    """SNN: mean over generated molecules of the max Tanimoto similarity to the reference set.

    gen_fps: (G, D), ref_fps: (R, D) 0/1 arrays. For fixed popcounts a, b the Tanimoto c / (a + b - c) grows
    with the intersection c, so the reference is sorted by popcount and only the max c per popcount is needed.
    """
    gen = _as_bits(gen_fps, "gen_fps")
    ref = _as_bits(ref_fps, "ref_fps")
    if len(gen) == 0 or len(ref) == 0:
        return float("nan")
    device = torch.device(device)
    dtype = _matmul_dtype(device, gen.shape[1])
    ref_counts = ref.sum(1, dtype=np.int64)
    order = np.argsort(ref_counts, kind="stable")
    ref_counts = ref_counts[order]
    gen_bits = torch.from_numpy(gen).to(device=device, dtype=dtype)
    gen_counts = gen_bits.float().sum(1)
    best = torch.zeros(len(gen), device=device)
    for start in range(0, len(ref), ref_batch):
        block_index = order[start : start + ref_batch]
        block = torch.from_numpy(ref[block_index]).to(device=device, dtype=dtype)
        counts, seg_starts = np.unique(ref_counts[start : start + ref_batch], return_index=True)
        seg_ends = np.append(seg_starts[1:], len(block_index))
        for g0 in range(0, len(gen), gen_batch):
            rows = slice(g0, g0 + gen_batch)
            inter = _bit_products(gen_bits[rows], block)
            for count, s, e in zip(counts.tolist(), seg_starts.tolist(), seg_ends.tolist()):
                c = inter[:, s:e].amax(1).float()
                union = gen_counts[rows] + count - c
                sim = torch.where(union > 0, c / union.clamp_min(1), 1.0)
                torch.maximum(best[rows], sim, out=best[rows])
    return float(best.double().mean())


def internal_diversity(
    fps: np.ndarray, p: int = 1, *, device: str | torch.device = "cpu", batch: int = 2048
) -> float:
    """IntDiv_p = 1 - mean_i (mean_j T_ij^p)^(1/p) over all pairs of the set, self-pairs included (molsets 0.3.1).

    fps: (N, D) 0/1 array. For p = 1 this is the paper's 1 - mean T; for p = 2 molsets takes the root per
    molecule before averaging, which is what the published MOSES IntDiv2 numbers use.
    """
    bits_np = _as_bits(fps, "fps")
    if len(bits_np) == 0:
        return float("nan")
    device = torch.device(device)
    bits = torch.from_numpy(bits_np).to(device=device, dtype=_matmul_dtype(device, bits_np.shape[1]))
    counts = bits.float().sum(1)
    per_molecule = torch.empty(len(bits), dtype=torch.float64, device=device)
    for g0 in range(0, len(bits), batch):
        rows = slice(g0, g0 + batch)
        inter = _bit_products(bits[rows], bits)
        union = counts[rows, None] + counts[None, :] - inter
        sim = torch.where(union > 0, inter / union.clamp_min(1), 1.0)
        if p != 1:
            sim = sim**p
        per_molecule[rows] = sim.mean(1, dtype=torch.float64)
    if p != 1:
        per_molecule = per_molecule ** (1.0 / p)
    return float(1.0 - per_molecule.mean())


# ---------------------------------------------------------------------------------------------------- FCD


@functools.lru_cache(maxsize=1)
def chemnet() -> torch.nn.Module:
    """ChemNet (Preuer et al. 2018) as shipped in the `fcd` wheel, loaded with weights_only=True, on CPU."""
    payload = pkgutil.get_data("fcd", "ChemNet_v0.13_pretrained.pt")
    if payload is None:
        raise FileNotFoundError("fcd package data ChemNet_v0.13_pretrained.pt not found")
    config = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    return load_imported_model(config).eval()


def chemnet_activations(
    smiles: Sequence[str], *, device: str = "cpu", batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """Penultimate ChemNet activations (N, 512) float32 via `fcd.get_predictions`, SMILES padded to 350 tokens.

    SMILES of 350+ characters cannot take the standard padding; each is encoded with its own length (fcd would
    otherwise re-pad the whole batch) and a warning is issued.
    """
    model = chemnet()
    activations = np.empty((len(smiles), 512), dtype=np.float32)
    short = [i for i, s in enumerate(smiles) if len(s) < CHEMNET_PAD_LENGTH]
    long = [i for i, s in enumerate(smiles) if len(s) >= CHEMNET_PAD_LENGTH]
    with (
        tqdm(total=len(smiles), desc="ChemNet", disable=not progress, unit="mol") as bar,
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="`row_stack` alias is deprecated", category=DeprecationWarning)
        for start in range(0, len(short), CHEMNET_BLOCK):
            index = short[start : start + CHEMNET_BLOCK]
            block = [smiles[i] for i in index]
            activations[index] = get_predictions(model, block, batch_size=batch_size, n_jobs=0, device=device)
            bar.update(len(index))
        if long:
            warnings.warn(
                f"{len(long)} SMILES longer than {CHEMNET_PAD_LENGTH - 1} characters: ChemNet encodes them "
                "unpadded",
                stacklevel=2,
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Padding lengths differing")
                for i in long:
                    activations[i] = get_predictions(model, [smiles[i]], batch_size=1, n_jobs=0, device=device)[0]
                    bar.update(1)
    return activations


def fcd_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussians (Preuer et al. 2018).

    mu: (D,), sigma: (D, D). tr (S1 S2)^(1/2) is the sum of square roots of the eigenvalues of the PSD matrix
    S1^(1/2) S2 S1^(1/2), which equals the trace of scipy.linalg.sqrtm(S1 @ S2) used by fcd/MOSES while needing
    only symmetric eigensolvers (torch, float64).
    """
    mu1_t, mu2_t = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    if mu1_t.shape != mu2_t.shape or s1.shape != s2.shape or s1.shape != (len(mu1_t), len(mu1_t)):
        raise ValueError(f"fcd_from_stats: shapes {mu1_t.shape}, {s1.shape} vs {mu2_t.shape}, {s2.shape}")
    eigenvalues, eigenvectors = torch.linalg.eigh((s1 + s1.T) / 2)
    root_s1 = (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T
    middle = root_s1 @ s2 @ root_s1
    tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1_t - mu2_t
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


def _gaussian(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return activations.mean(0, dtype=np.float64), np.cov(activations.astype(np.float64), rowvar=False)


# ----------------------------------------------------------------------------------------- reference sets


def _counts_to_arrays(counts: Counter[str]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(counts)
    return np.array(keys, dtype=str), np.array([counts[key] for key in keys], dtype=np.int64)


def _packed_fingerprints(records: Sequence[MoleculeFeatures]) -> np.ndarray:
    packed = np.frombuffer(b"".join(r.fingerprint for r in records), dtype=np.uint8)
    return packed.reshape(len(records), MORGAN_BITS // 8)


def reference_statistics(
    smiles: Sequence[str], *, n_jobs: int = 1, device: str = "cpu", progress: bool = False
) -> dict[str, np.ndarray]:
    """Everything MOSES needs from a reference set (Test / TestSF), as plain arrays (np.savez without pickle).

    Keys: fcd_mu (512,), fcd_sigma (512, 512), morgan_fps_packed (N, 128) uint8 = np.packbits of r=2 1024-bit
    Morgan, fragment_smiles / fragment_counts (BRICS), scaffold_smiles / scaffold_counts (Murcko, >= 2 rings),
    logP / SA / QED / MW (N,). Raises ValueError on an invalid reference SMILES.
    """
    smiles = list(smiles)
    if not smiles:
        raise ValueError("reference_statistics: empty reference set")
    describe = functools.partial(describe_molecule, from_canonical=False, with_filters=False)
    records = map_molecules(describe, smiles, n_jobs=n_jobs, progress=progress, desc="reference molecules")
    invalid = [i for i, record in enumerate(records) if record is None]
    if invalid:
        raise ValueError(
            f"reference SMILES #{invalid[0]} {smiles[invalid[0]]!r} is not a valid molecule "
            f"({len(invalid)} invalid in total)"
        )
    fcd_mu, fcd_sigma = _gaussian(chemnet_activations(smiles, device=device, progress=progress))
    fragment_smiles, fragment_counts = _counts_to_arrays(Counter(f for r in records for f in r.fragments))
    scaffold_smiles, scaffold_counts = _counts_to_arrays(
        Counter(r.scaffold for r in records if r.scaffold is not None)
    )
    stats = {
        "fcd_mu": fcd_mu,
        "fcd_sigma": fcd_sigma,
        "morgan_fps_packed": _packed_fingerprints(records),
        "fragment_smiles": fragment_smiles,
        "fragment_counts": fragment_counts,
        "scaffold_smiles": scaffold_smiles,
        "scaffold_counts": scaffold_counts,
    }
    for name, field in PROPERTY_NAMES.items():
        stats[name] = np.array([getattr(r, field) for r in records], dtype=np.float64)
    return stats


def save_reference(path: str | os.PathLike, stats: Mapping[str, np.ndarray]) -> None:
    """Write reference statistics to `path` (.npz, compressed, no pickle); atomic replace."""
    path = Path(path)
    missing = [key for key in REFERENCE_KEYS if key not in stats]
    if missing:
        raise ValueError(f"save_reference {path}: statistics lack keys {missing}")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **{key: np.asarray(value) for key, value in stats.items()})


def load_reference(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read statistics written by `save_reference` (np.load with allow_pickle=False); DataError
    naming the file when it is missing or not such an .npz (e.g. pickled data, object arrays)."""
    from dgm_science.errors import DataError

    if not Path(path).is_file():
        raise DataError(f"{path}: reference statistics not found (run `dgm reference`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            stats = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable reference-statistics .npz ({err})") from None
    missing = [key for key in REFERENCE_KEYS if key not in stats]
    if missing:
        raise ValueError(f"{path}: not a reference-statistics file, missing keys {missing}")
    return stats


# ------------------------------------------------------------------------------------------------ evaluate


def _counts(keys: np.ndarray, counts: np.ndarray) -> dict[str, int]:
    return dict(zip(keys.tolist(), counts.tolist()))


def evaluate(
    generated: Sequence[str | None],
    *,
    train: Iterable[str],
    test_stats: Mapping[str, np.ndarray],
    test_scaffolds_stats: Mapping[str, np.ndarray] | None,
    n_jobs: int = 1,
    device: str = "cpu",
    k: Sequence[int] = (1000, 10000),
    progress: bool = False,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """All MOSES metrics of a generated set against Test and TestSF statistics (`reference_statistics`;
    the TestSF metrics are left out when `test_scaffolds_stats` is None).

    Invalid entries (None, unparseable) count in `valid` and are excluded from the other metrics, as in MOSES;
    `unique@k_n` records how many valid molecules unique@k was computed over (< k when too few were valid).
    `train` is the canonical training SMILES (a set is used as is). Wall times per stage go into `timings`.
    """
    if len(generated) == 0:
        raise ValueError("evaluate: generated set is empty")
    times = timings if timings is not None else {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[stage] = now - clock
        clock = now

    records = map_molecules(
        describe_molecule, list(generated), n_jobs=n_jobs, progress=progress, desc="generated molecules"
    )
    valid = [r for r in records if r is not None]
    canonical = [r.canonical for r in valid]
    lap("rdkit")

    metrics: dict[str, float] = {"valid": len(valid) / len(generated)}
    if not valid:
        warnings.warn("evaluate: no valid molecule; all other metrics are NaN", stacklevel=2)
    for k_value in k:
        metrics[f"unique@{k_value}"] = fraction_unique(canonical, k_value)
    metrics["novelty"] = novelty(canonical, train)
    lap("unique_novelty")

    references = {"Test": test_stats}
    if test_scaffolds_stats is not None:  # MOSES has a scaffold split; QM9 has none
        references["TestSF"] = test_scaffolds_stats
    nan = float("nan")
    if len(valid) >= 2:
        gen_mu, gen_sigma = _gaussian(chemnet_activations(canonical, device=device, progress=progress))
        lap("chemnet")
        for name, ref in references.items():
            metrics[f"FCD/{name}"] = fcd_from_stats(gen_mu, gen_sigma, ref["fcd_mu"], ref["fcd_sigma"])
        lap("fcd")
    else:
        warnings.warn(f"FCD needs >= 2 valid molecules, got {len(valid)}: reported as NaN", stacklevel=2)
        metrics.update({f"FCD/{name}": nan for name in references})

    gen_fps = np.unpackbits(_packed_fingerprints(valid), axis=1) if valid else np.zeros((0, MORGAN_BITS))
    for name, ref in references.items():
        metrics[f"SNN/{name}"] = snn(gen_fps, np.unpackbits(ref["morgan_fps_packed"], axis=1), device=device)
    lap("snn")

    gen_fragments = Counter(f for r in valid for f in r.fragments)
    gen_scaffolds = Counter(r.scaffold for r in valid if r.scaffold is not None)
    for name, ref in references.items():
        metrics[f"Frag/{name}"] = cos_similarity(
            _counts(ref["fragment_smiles"], ref["fragment_counts"]), gen_fragments
        )
    for name, ref in references.items():
        metrics[f"Scaf/{name}"] = cos_similarity(
            _counts(ref["scaffold_smiles"], ref["scaffold_counts"]), gen_scaffolds
        )
    lap("frag_scaf")

    metrics["IntDiv1"] = internal_diversity(gen_fps, 1, device=device)
    metrics["IntDiv2"] = internal_diversity(gen_fps, 2, device=device)
    lap("intdiv")

    metrics["Filters"] = float(np.mean([r.passes_filters for r in valid])) if valid else nan
    for name, field in PROPERTY_NAMES.items():
        metrics[name] = wasserstein(test_stats[name], [getattr(r, field) for r in valid])
    lap("filters_properties")

    metrics["n_generated"] = float(len(generated))
    metrics["n_valid"] = float(len(valid))
    for k_value in k:
        metrics[f"unique@{k_value}_n"] = float(min(k_value, len(valid)))
    return metrics
