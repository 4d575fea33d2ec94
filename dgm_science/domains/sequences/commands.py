"""The sequences domain's part of the ``dgm`` command: ``likelihood`` (bits per residue of a
FASTA file) and lossless ``compress`` / ``decompress`` with an autoregressive sequence model."""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Callable

from dgm_science.commands import add_device_arguments, add_seed_argument, command, output_argument, positive_int, write_json
from dgm_science.utils import seed_everything, set_threads

log = logging.getLogger("dgm")


def _likelihood_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint of a sequence model")
    p.add_argument("--fasta", type=Path, required=True,
                   help="FASTA file (labels, for conditional models, from the phylum= header field)")
    output_argument(p, "--out", required=True, help="JSON: nats, bits_per_residue, sequences scored")
    add_seed_argument(p, "seed of the bound's Monte-Carlo estimate")
    p.add_argument("--batch-size", type=positive_int, default=250, help="sequences per batch")
    add_device_arguments(p)


@command("likelihood", "log-likelihood of a FASTA file under a sequence model: bits per residue",
         _likelihood_arguments)
def cmd_likelihood(args: argparse.Namespace) -> None:
    import numpy as np

    from dgm_science import api
    from dgm_science.domains.sequences.domain import SequenceDomain
    from dgm_science.domains.sequences.fasta import read_fasta

    set_threads(args.threads)
    seed_everything(args.seed)  # bound models' Monte-Carlo estimate is reproducible
    loaded = api.load(args.checkpoint, device=args.device)
    if loaded.domain is not SequenceDomain:
        raise ValueError(f"{args.checkpoint}: `dgm likelihood` scores sequence models; this is a "
                         f"{loaded.domain.name} model")
    records = read_fasta(args.fasta, frozenset(loaded.state["alphabet"]))
    start = time.perf_counter()
    log_likelihood = loaded.log_likelihood(records, batch_size=args.batch_size)
    sizes = loaded.domain.item_sizes(records)
    scored = np.isfinite(log_likelihood)
    nats = float(-log_likelihood[scored].sum())
    residues = float(sizes[scored].sum())
    stats = {"sequences": len(records), "scored": int(scored.sum()), "residues": int(residues),
             "nats": nats, "bits_per_residue": nats / math.log(2) / residues if residues else math.nan,
             "likelihood": loaded.model.likelihood, "seconds": time.perf_counter() - start}
    latent = loaded.latent_statistics(records, batch_size=args.batch_size)
    if latent is not None:
        stats["latent"] = latent
    write_json(args.out, stats)
    log.info("%s: %.4f bits per residue (%s) over %d of %d sequences", args.fasta, stats["bits_per_residue"],
             stats["likelihood"], stats["scored"], stats["sequences"])


def _codec_arguments(compress: bool) -> Callable[[argparse.ArgumentParser], None]:
    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checkpoint", type=Path, required=True, help="seq-arm checkpoint")
        p.add_argument("--input", type=Path, required=True,
                       help="FASTA file" if compress else "file written by `dgm compress`")
        output_argument(p, "--out", required=True, help="output, written atomically")
        add_device_arguments(p, "auto, cpu, cuda, cuda:1 ... (decompress on the same kind of device that compressed)")
        if compress:
            p.add_argument("--group-size", type=positive_int, default=256, help="records coded as one batch")
            p.add_argument("--verify", action="store_true", help="decompress at once and check the bytes")
            output_argument(p, "--stats", default=None,
                           help="JSON: sizes, bits per residue beside gzip -9 and xz -9, MB/s")

    return arguments


@command("compress", "losslessly compress a FASTA file with an autoregressive sequence model", _codec_arguments(True))
def cmd_compress(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.domains.sequences import compression

    set_threads(args.threads)
    loaded = api.load(args.checkpoint, device=args.device)
    stats = compression.compress_verified(loaded, args.input, args.out, group_size=args.group_size,
                                          verify=args.verify)
    if args.stats is not None:
        write_json(args.stats, stats)
    log.info("%s -> %s: %.3f bits per residue (gzip -9 %.3f, xz -9 %.3f)", args.input, args.out,
             stats["bits_per_residue"], stats["gzip9_bits_per_residue"], stats["xz9_bits_per_residue"])


@command("decompress", "restore a FASTA file compressed by `dgm compress` (same model)", _codec_arguments(False))
def cmd_decompress(args: argparse.Namespace) -> None:
    from dgm_science import api
    from dgm_science.domains.sequences import compression

    set_threads(args.threads)
    loaded = api.load(args.checkpoint, device=args.device)
    stats = compression.decompress(loaded, args.input, args.out)
    log.info("%s -> %s: %d records, %d bytes", args.input, args.out, stats["records"], stats["output_bytes"])
