"""Make a trained checkpoint a shipped prior (data/models/<name>/model.ckpt): the same weights, config and
tokenizer, with ``info.data_dir`` rewritten to the repository-relative folder the README's prepare command
writes (training ran elsewhere) and ``info.trained_on`` saying what the data were.

    python bench/ship_prior.py --checkpoint /tmp/zinc/model.ckpt --data-dir resources/molecules/zinc250k/data \\
        --trained-on "ZINC 250k ..." --out data/models/zinc250k-smiles-arm/model.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dgm_science import checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by dgm train")
    parser.add_argument("--data-dir", required=True, help="repository-relative prepared-data folder to record")
    parser.add_argument("--trained-on", required=True, help="what the training data were, in words")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    payload = checkpoint.load(args.checkpoint)
    info = {**payload["info"], "data_dir": args.data_dir, "trained_on": args.trained_on}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(args.out, domain=payload["domain"], model_name=payload["model"], config=payload["config"],
                    state_dict=payload["state_dict"], domain_state=payload["domain_state"], info=info)
    print(f"{args.checkpoint} -> {args.out}")


if __name__ == "__main__":
    main()
