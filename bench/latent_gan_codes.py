"""Where latent-gan's invalid samples come from (issue 36): decode the autoencoder's own codes, the
codes plus Gaussian noise, and the generator's codes of a trained latent-gan checkpoint, and report
the share of valid SMILES (RDKit parse) and of exact reconstructions; then, with ``--gan-steps N``,
train a fresh generator and critic on the frozen autoencoder's codes of 50,000 training molecules
(the model's own WGAN-GP loss, AdamW, cosine decay to 10 %) and report validity and uniqueness of
2,000 decoded samples every 2,000 steps.

    python bench/latent_gan_codes.py CHECKPOINT QM9_DATA_DIR [--gan-steps 12000] [--lr 0.002]

QM9_DATA_DIR: a prepared qm9 folder (``dgm prepare qm9``: train.smi, valid.smi). One line per report.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from rdkit import Chem, RDLogger

from dgm_science import api
from dgm_science.tokenizer import Tokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("data", type=Path)
    p.add_argument("--gan-steps", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--betas", default="0.9,0.98")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    loaded = api.load(args.checkpoint, device="cpu")
    model = loaded.model.eval()
    codec, gan = model.codec, model.gan
    tokenizer = Tokenizer.from_state(loaded.state["tokenizer"])

    def smiles_of(path: Path, n: int) -> list[str]:
        with open(path) as f:
            return [line.split()[0] for _, line in zip(range(n), f)]

    def encode(smiles: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([codec.encode({"tokens": tokenizer.encode_batch(smiles[i:i + 2000], codec.max_length)[0]})
                              for i in range(0, len(smiles), 2000)])

    def decoded(codes: torch.Tensor) -> list[str | None]:
        with torch.no_grad():
            return [tokenizer.decode(row.tolist()) for row in codec.decode(codes)]

    def valid(strings: list[str | None]) -> list[str]:
        mols = [Chem.MolFromSmiles(s) if s else None for s in strings]
        return [Chem.MolToSmiles(m) for m in mols if m is not None]

    reference = smiles_of(args.data / "valid.smi", 2000)
    codes = encode(reference)
    for sd in (0.0, 0.05, 0.1, 0.2):
        out = decoded(codes + sd * torch.randn_like(codes))
        exact = sum(a == b for a, b in zip(out, reference)) / len(out)
        print(f"real codes + noise sd {sd}: valid {len(valid(out)) / len(out):.4f}, exact {exact:.4f}")
    with torch.no_grad():
        fake = gan.generator(torch.randn(2000, gan.generator.latent_dim))
    print(f"generator codes: valid {len(valid(decoded(fake))) / 2000:.4f}")
    nearest = torch.cdist(fake, codes).min(1).values.median().item()
    between = torch.cdist(codes[:1000], codes[1000:]).min(1).values.median().item()
    print(f"median distance to the nearest real code: generator {nearest:.3f}, real (half to half) {between:.3f}")
    if args.gan_steps <= 0:
        return

    bank = encode(smiles_of(args.data / "train.smi", 50000))
    for module in [*gan.generator.modules(), *gan.critic.modules()]:
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    batch = 128
    gan.real = lambda _: (bank[torch.randint(0, len(bank), (batch,))],)
    params = [*gan.generator.parameters(), *gan.critic.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=tuple(float(b) for b in args.betas.split(",")),
                                  weight_decay=0.0)
    start = time.time()
    gan.train()
    for step in range(args.gan_steps):
        gan.set_training_step(step)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.gan_steps)))
        loss = gan.loss(None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 2000 == 0:
            with torch.no_grad():
                ok = valid(decoded(gan.generator(torch.randn(2000, gan.generator.latent_dim))))
            print(f"GAN step {step + 1}: valid {len(ok) / 2000:.4f}, unique among valid "
                  f"{len(set(ok)) / max(1, len(ok)):.4f} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
