"""MolGAN (De Cao & Kipf 2018, "MolGAN: An implicit generative model for small molecular graphs"):
a WGAN-GP over dense molecular graphs (``dense.py``: at most N heavy atoms, atom types + "no
atom", bond classes none / single / double / triple).

Generator: z ~ N(0, I) -> MLP -> logits of every atom (B, N, T+1) and every pair's bond class
(B, N, N, 4), the pair logits symmetrised; the critic reads Gumbel-softmax relaxations of them
(temperature ``gumbel_temperature``), samples are categorical draws (Gumbel-max).
Critic: a relational graph convolution (Schlichtkrull et al. 2018) with one weight matrix per bond
type, then MolGAN's gated graph aggregation (sum over atoms of sigmoid(i(h)) * tanh(j(h))) and an
MLP to one score. The paper's optional reinforcement-learning reward is not used: this is the pure
implicit model (lambda = 1), measured like every other QM9 model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.config import bounded
from dgm_science.domains.molecules.dense import NUM_BOND_CLASSES, DenseGraphs
from dgm_science.families.gan import WGANGP, Generator
from dgm_science.resources import TrainResources
from dgm_science.registry import register


@dataclasses.dataclass(frozen=True)
class MolGANConfig:
    """MolGAN's sizes: latent z of ``latent_dim``; generator MLP ``generator_hidden``; critic
    R-GCN ``critic_gcn`` units per layer, aggregation ``critic_aggregation``, MLP ``critic_hidden``;
    ``critic_steps`` critic updates per generator update; WGAN-GP weight ``gradient_penalty``."""

    latent_dim: int = bounded(32, minimum=1)
    generator_hidden: list[int] = bounded([128, 256, 512], minimum=1)
    critic_gcn: list[int] = bounded([128, 64], minimum=1)
    critic_aggregation: int = bounded(128, minimum=1)
    critic_hidden: list[int] = bounded([128, 64], minimum=1)
    gumbel_temperature: float = bounded(1.0, exclusive_minimum=0)
    dropout: float = bounded(0.0, minimum=0, maximum=1)
    critic_steps: int = bounded(5, minimum=1)
    gradient_penalty: float = bounded(10.0, minimum=0)


def _mlp(sizes: list[int], dropout: float, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class GraphGenerator(Generator):
    """z -> (atom probabilities (B, N, T+1), bond probabilities (B, N, N, 4)) relaxed by
    Gumbel-softmax (what the critic reads); ``generate``: categorical draws of them as
    ``DenseGraphs`` (symmetric bonds, zero diagonal)."""

    def __init__(self, latent_dim: int, hidden: list[int], max_atoms: int, atom_classes: int, dropout: float,
                 temperature: float) -> None:
        super().__init__()
        self.latent_dim, self.n, self.t, self.temperature = latent_dim, max_atoms, atom_classes, temperature
        self.body = _mlp([latent_dim, *hidden], dropout)
        self.atoms = nn.Linear(hidden[-1], max_atoms * atom_classes)
        self.bonds = nn.Linear(hidden[-1], max_atoms * max_atoms * NUM_BOND_CLASSES)

    def logits(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(z)
        atoms = self.atoms(h).view(-1, self.n, self.t)
        bonds = self.bonds(h).view(-1, self.n, self.n, NUM_BOND_CLASSES)
        bonds = (bonds + bonds.transpose(1, 2)) / 2
        return atoms, bonds

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        atoms, bonds = self.logits(z)
        atoms = F.gumbel_softmax(atoms, tau=self.temperature, dim=-1)
        bonds = F.gumbel_softmax(bonds, tau=self.temperature, dim=-1)
        bonds = (bonds + bonds.transpose(1, 2)) / 2  # the Gumbel noise differs per direction: symmetrise again
        return atoms, _no_self_bonds(bonds)

    def generate(self, z: torch.Tensor, generator: torch.Generator | None = None) -> DenseGraphs:
        """A class for every atom and pair drawn from the generator's categorical distributions
        (the Gumbel-max trick: the argmax of the logits plus Gumbel noise, the hard limit of what
        the critic reads); a pair's class is drawn once, for both directions."""

        def gumbel(shape: torch.Size) -> torch.Tensor:
            u = torch.rand(shape, generator=generator, device=z.device).clamp(1e-10, 1 - 1e-10)
            return -torch.log(-torch.log(u))

        atoms, bonds = self.logits(z)
        bond_index = torch.triu((bonds + gumbel(bonds.shape)).argmax(-1), diagonal=1)
        return DenseGraphs((atoms + gumbel(atoms.shape)).argmax(-1), bond_index + bond_index.transpose(1, 2))


def _no_self_bonds(bonds: torch.Tensor) -> torch.Tensor:
    """Bond distributions (B, N, N, 4) with every diagonal pair set to "no bond"."""
    n = bonds.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=bonds.device).view(1, n, n, 1)
    none = F.one_hot(torch.zeros((), dtype=torch.long, device=bonds.device), NUM_BOND_CLASSES).to(bonds.dtype)
    return torch.where(eye, none, bonds)


class RelationalCritic(nn.Module):
    """MolGAN's discriminator on (atoms (B, N, T+1), bonds (B, N, N, 4)), one-hot or relaxed:
    R-GCN layers h' = tanh(W_0 [h, x] + sum_r A_r [h, x] W_r) over the 3 bond types, the gated
    aggregation sum_i sigmoid(i([h_i, x_i])) * tanh(j([h_i, x_i])), an MLP, a linear score."""

    def __init__(self, atom_classes: int, gcn: list[int], aggregation: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        relations = NUM_BOND_CLASSES - 1
        self.self_layers, self.relation_layers = nn.ModuleList(), nn.ModuleList()
        width = 0
        for units in gcn:
            self.self_layers.append(nn.Linear(width + atom_classes, units))
            self.relation_layers.append(nn.Linear(width + atom_classes, units * relations, bias=False))
            width = units
        self.units, self.relations, self.dropout = gcn, relations, nn.Dropout(dropout)
        self.gate = nn.Linear(width + atom_classes, aggregation)
        self.value = nn.Linear(width + atom_classes, aggregation)
        self.head = _mlp([aggregation, *hidden], dropout)
        self.out = nn.Linear(hidden[-1] if hidden else aggregation, 1)

    def forward(self, atoms: torch.Tensor, bonds: torch.Tensor) -> torch.Tensor:
        adjacency = bonds[..., 1:].permute(0, 3, 1, 2)  # (B, R, N, N): one matrix per bond type
        h = atoms.new_zeros(*atoms.shape[:2], 0)
        for self_layer, relation_layer, units in zip(self.self_layers, self.relation_layers, self.units):
            x = torch.cat([h, atoms], dim=-1)
            messages = relation_layer(x).view(*x.shape[:2], self.relations, units).permute(0, 2, 1, 3)
            h = torch.tanh(self_layer(x) + torch.einsum("brij,brjk->bik", adjacency, messages))
            h = self.dropout(h)
        x = torch.cat([h, atoms], dim=-1)
        pooled = torch.tanh((torch.sigmoid(self.gate(x)) * torch.tanh(self.value(x))).sum(1))
        return self.out(self.head(pooled)).squeeze(-1)


@register("model", "molgan")
class MolGAN(ModelSpec):
    """Registry entry: MolGAN, a WGAN-GP over dense molecular graphs (an implicit model: samples,
    no likelihood)."""

    domain: ClassVar[str] = "molecules"
    Config = MolGANConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("dense",)
    train_resources = TrainResources(seconds_per_step=0.03, mem_mb=16000)  # estimate: small dense networks, batch 32
    implicit: ClassVar[bool] = True
    """No p(x): log-likelihood columns stay empty and no typical set is scored."""

    @staticmethod
    def build(cfg: MolGANConfig, state: dict[str, Any]) -> GenerativeModel:
        atom_classes = len(state["atom_types"]) + 1
        max_atoms = int(state["max_atoms"])
        generator = GraphGenerator(cfg.latent_dim, list(cfg.generator_hidden), max_atoms, atom_classes, cfg.dropout,
                                   cfg.gumbel_temperature)
        critic = RelationalCritic(atom_classes, list(cfg.critic_gcn), cfg.critic_aggregation, list(cfg.critic_hidden),
                                  cfg.dropout)

        def real(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return (F.one_hot(batch["atoms"], atom_classes).float(),
                    F.one_hot(batch["bonds"], NUM_BOND_CLASSES).float())

        return WGANGP(generator, critic, real, critic_steps=cfg.critic_steps, gradient_penalty=cfg.gradient_penalty)
