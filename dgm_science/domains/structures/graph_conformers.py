"""A two-stage model of 3D molecules, p(G, x) = p(G) p(x | G): an autoregressive transformer over the
molecule's SMILES or SELFIES (the molecular graph G, hydrogens implicit) and an E(3)-equivariant diffusion of
its atoms' positions given the graph (hydrogens explicit), the denoiser an EGNN over each molecule's fully
connected graph whose edges carry the bond order, the pairs two and three bonds apart (GeoDiff-style
extended edges: Xu et al., ICLR 2022) and, for a bonded pair, its distance minus the mean training length of
that bond (element pair and order).

Why two stages: EDM (``edm.py``) must learn the elements, the hydrogens' count and every bond length
from noise at once, and at a CPU budget its samples' valences are off (molecule stability 0-1 %
after 3,000-5,000 steps). Given the graph, the positions' chain only has to place bonded atoms at
their bond order's length; the graph is a molecule by construction wherever RDKit reads the sampled
string (every SELFIES string is one).

Training data are QM9's (or a user's) conformers: the graph of a training molecule is the one EDM's
metrics perceive from its positions (``metrics.bond_orders``: the bond-length tables; for 97.7 % of QM9's
training molecules a molecule RDKit sanitizes), so the chain learns the lengths the metrics read back; the
string model learns the training split's SMILES (``train_smiles.txt``, the same perception, largest fragment;
hydrogens removed). Half of the chain's training t's (``low_noise_fraction``) come from its lowest tenth,
where bond lengths are settled. Sampling: string -> RDKit (hydrogens added, kekulized) -> elements and bond
orders -> positions. A string RDKit rejects, with an element outside the model's, a formal charge, a radical
or more than ``max_atoms`` atoms gives an empty molecule (invalid and unstable in the metrics): nothing is
resampled or corrected.

The likelihood is a bound: log p of the canonical string (exact under the transformer; a lower bound on log
p(G), which sums over the graph's strings) + the chain's ELBO of log p(x | G) on the zero-CoM subspace (N is
a function of G). Scoring a molecule needs its graph and string, both perceived from its positions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgm_science.backbones import CausalTransformer
from dgm_science.base import GenerativeModel, ModelSpec
from dgm_science.config import bounded
from dgm_science.domains.structures import metrics
from dgm_science.domains.structures.edm import Conformers, FullyConnectedGraphs, egnn_layer_class, remove_mean, \
    zero_com_space
from dgm_science.errors import DataError
from dgm_science.families.autoregressive import AutoregressiveModel
from dgm_science.families.diffusion import GaussianDiffusion, Layout
from dgm_science.registry import register
from dgm_science.resources import TrainResources

EDGE_FEATURES = 8
"""Per directed edge: [bond order 1, 2, 3 (one-hot; 0 = not bonded), two bonds apart, three bonds apart,
the squared distance at the chain's input, that distance, its excess over the bond's mean training length
(0 for a pair that is not bonded)]."""


def bond_length_table(positions: np.ndarray, types: np.ndarray, n_atoms: np.ndarray, n_types: int) -> np.ndarray:
    """(E, E, 4) mean length in Angstrom of the bonds of each element pair and order 1-3 that EDM's tables
    perceive in ``positions`` (B, N, 3) (``types`` (B, N): indices into ``metrics.METRIC_ELEMENTS``, E of
    them); 0 where no such bond occurs (and at order 0)."""
    total = np.zeros((n_types, n_types, 4))
    count = np.zeros((n_types, n_types, 4))
    for start in range(0, len(n_atoms), 4096):
        sl = slice(start, start + 4096)
        p, t, n = positions[sl], types[sl], n_atoms[sl]
        orders = metrics.bond_orders(p, t, n)
        b, i, j = np.nonzero(orders)
        d = np.sqrt(((p[b, i] - p[b, j]) ** 2).sum(-1))
        np.add.at(total, (t[b, i], t[b, j], orders[b, i, j]), d)
        np.add.at(count, (t[b, i], t[b, j], orders[b, i, j]), 1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


class MolecularGraphs(NamedTuple):
    """Padded graphs: atom_types (B, N) long (0 at padding), bonds (B, N, N) long orders 0-3, n_atoms (B,)."""

    atom_types: torch.Tensor
    bonds: torch.Tensor
    n_atoms: torch.Tensor


def edge_attributes(bonds: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """bonds (B, N, N) orders, node_mask (B, N) bool -> (B, N, N, 5) float: one-hot bond order 1-3 and the
    pairs two and three bonds apart (shortest path), zero elsewhere and at padding."""
    pair = node_mask[:, :, None] & node_mask[:, None, :]
    adjacency = (bonds > 0) & pair
    eye = torch.eye(bonds.shape[1], dtype=torch.bool, device=bonds.device)[None]
    a = adjacency.float()
    reach2 = (torch.bmm(a, a) > 0) & pair & ~adjacency & ~eye
    reach3 = (torch.bmm((adjacency | reach2).float(), a) > 0) & pair & ~adjacency & ~reach2 & ~eye
    order = F.one_hot(bonds.clamp(0, 3) * adjacency, 4)[..., 1:]
    return torch.cat([order.float(), reach2[..., None].float(), reach3[..., None].float()], dim=-1)


class GraphConformerDenoiser(nn.Module):
    """eps-prediction network of the positions given the graph: node input [one-hot element, t] ->
    Linear -> L x EGNN layers (edge features: ``edge_attributes`` and the input's squared distance,
    residual on h); eps_x = x_L - x_0, mean removed."""

    def __init__(self, n_types: int, hidden_dim: int, n_layers: int, bond_lengths: torch.Tensor | None = None) -> None:
        super().__init__()
        self.n_types = n_types
        self.register_buffer("bond_lengths", torch.zeros(n_types, n_types, 4) if bond_lengths is None
                             else torch.as_tensor(bond_lengths, dtype=torch.float32))
        self.embed = nn.Linear(n_types + 1, hidden_dim)
        layer_class = egnn_layer_class()
        self.layers = nn.ModuleList(layer_class(hidden_dim, hidden_dim, hidden_dim, edge_feat_size=EDGE_FEATURES)
                                    for _ in range(n_layers))
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.coord_mlp[-1].weight, gain=0.001)
        # the last layer's node update reaches no output (only its coordinates do): frozen, so that every trained
        # parameter gets a gradient (DDP without find_unused_parameters)
        self.layers[-1].node_mlp.requires_grad_(False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor, types: torch.Tensor, graph: Any,
                edge_attr: torch.Tensor) -> torch.Tensor:
        """x (B, N, 3), t (B,) in [0, 1], node_mask (B, N) bool, types (B, N) long, graph (EdgeIndex of the
        fully connected molecules), edge_attr (E, 5) -> eps_x (B, N, 3)."""
        x0 = x[node_mask].to(torch.promote_types(x.dtype, torch.float32))
        onehot = F.one_hot(types[node_mask], self.n_types).to(self.embed.weight.dtype)
        time = t[:, None].expand(-1, x.shape[1])[node_mask][:, None].to(onehot.dtype)
        hidden = self.embed(torch.cat([onehot, time], dim=-1))
        src, dst = graph.edges()
        radial0 = (x0[src] - x0[dst]).square().sum(-1, keepdim=True)
        flat_types = types[node_mask]
        order = (edge_attr[:, :3] * torch.arange(1, 4, device=edge_attr.device, dtype=edge_attr.dtype)).sum(-1).long()
        reference = self.bond_lengths[flat_types[src], flat_types[dst], order][:, None].to(radial0.dtype)
        distance = (radial0 + 1e-8).sqrt()
        excess = torch.where(reference > 0, distance - reference, torch.zeros_like(distance))
        edge_feat = torch.cat([edge_attr.to(radial0.dtype), radial0, distance, excess], dim=-1)
        coords = x0
        for layer in self.layers:
            update, coords = layer(graph, hidden, coords, edge_feat)
            hidden = hidden + update
        eps = torch.zeros_like(x, dtype=x0.dtype)
        eps[node_mask] = coords - x0
        return remove_mean(eps, node_mask[..., None].float())


class ConformerDiffusion(GaussianDiffusion):
    """p(x | G): Gaussian diffusion of the positions (zero-CoM subspace, Angstrom / ``position_norm``)
    given the graph, EDM's chain (``low_noise_fraction`` of its training t's from the lowest tenth) (polynomial schedule, epsilon prediction, its l2 objective). Batches:
    positions (B, N, 3), atom_types (B, N), bonds (B, N, N), n_atoms (B,); ``sample(n, condition=graphs)``
    -> positions (n, N, 3) Angstrom."""

    def __init__(self, n_types: int, *, hidden_dim: int, n_layers: int, steps: int, sampling_steps: int | None,
                 precision: float, ema_decay: float, position_norm: float, bond_lengths: Any = None,
                 low_noise_fraction: float = 0.0) -> None:
        super().__init__(GraphConformerDenoiser(n_types, hidden_dim, n_layers, bond_lengths), steps=steps,
                         schedule="polynomial",
                         precision=precision, prediction="epsilon", objective="l2", sampling_steps=sampling_steps,
                         clip=None, ema_decay=ema_decay, decoder_draw=True)
        self.position_norm = position_norm
        self.low_noise_fraction = low_noise_fraction

    def training_times(self, b: int, device: torch.device) -> torch.Tensor:
        """The family's uniform t, a ``low_noise_fraction`` of them redrawn from {0..T/10}."""
        uniform = super().training_times(b, device)
        if not self.low_noise_fraction:
            return uniform
        low = torch.randint(0, self.T // 10 + 1, (b,), device=device)
        return torch.where(torch.rand(b, device=device) < self.low_noise_fraction, low, uniform)

    def _layout(self, graphs: MolecularGraphs) -> Layout:
        n_max = graphs.atom_types.shape[1]
        node_mask = torch.arange(n_max, device=graphs.n_atoms.device)[None, :] < graphs.n_atoms[:, None]
        mask = node_mask.float()[..., None]
        edges = FullyConnectedGraphs.build(node_mask)
        pair = node_mask[:, :, None] & node_mask[:, None, :]
        pair &= ~torch.eye(n_max, dtype=torch.bool, device=node_mask.device)
        attr = edge_attributes(graphs.bonds.long(), node_mask)[pair]  # row-major (mol, i, j): FullyConnectedGraphs'
        offset = -(mask.sum((1, 2)) - 1) * 3 * math.log(self.position_norm)
        return Layout(((*node_mask.shape, 3),), (zero_com_space(mask),),
                      (node_mask, graphs.atom_types.long().clamp(min=0), edges, attr), log_prob_offset=offset)

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor], Layout]:
        graphs = MolecularGraphs(batch["atom_types"], batch["bonds"], batch["n_atoms"])
        layout = self._layout(graphs)
        mask = layout.spaces[0].mask
        return (remove_mean(batch["positions"].float() * mask, mask) / self.position_norm,), layout

    def sample_layout(self, n: int, generator: torch.Generator | None, condition: Any) -> Layout:
        if not isinstance(condition, MolecularGraphs) or len(condition.n_atoms) != n:
            raise ValueError(f"sampling positions needs the {n} molecules' graphs (MolecularGraphs)")
        return self._layout(MolecularGraphs(*(v.to(self.gamma.device) for v in condition)))

    def decode(self, values: tuple[torch.Tensor, ...], layout: Layout) -> torch.Tensor:
        mask = layout.spaces[0].mask.double()
        return (remove_mean(values[0].double(), mask) * self.position_norm).float()


# ----------------------------------------------------------------------------- graphs from SMILES


def heavy_atom_smiles(smiles: Sequence[str]) -> list[str | None]:
    """Canonical SMILES without explicit hydrogens (what the graph model learns) of SMILES that may carry
    them (``train_smiles.txt`` writes hydrogens as atoms); None where RDKit rejects one."""
    from rdkit import Chem, rdBase

    out: list[str | None] = []
    with rdBase.BlockLogs():
        for s in smiles:
            mol = Chem.MolFromSmiles(s)
            out.append(None if mol is None else Chem.MolToSmiles(Chem.RemoveHs(mol)))
    return out


def graphs_of_smiles(smiles: Sequence[str | None], elements: Sequence[str], max_atoms: int
                     ) -> tuple[MolecularGraphs, np.ndarray]:
    """SMILES -> their molecules with explicit hydrogens, kekulized (bond orders 1-3), as padded
    ``MolecularGraphs`` over ``elements``, and which of them are molecules (B,) bool: a None, a SMILES
    RDKit rejects, an element outside ``elements``, a formal charge, a radical or more than ``max_atoms``
    atoms gives n_atoms 0."""
    from rdkit import Chem, rdBase

    lookup = {e: i for i, e in enumerate(elements)}
    rows: list[tuple[list[int], list[tuple[int, int, int]]] | None] = []
    with rdBase.BlockLogs():
        for s in smiles:
            mol = Chem.MolFromSmiles(s) if s else None
            if mol is not None:
                mol = Chem.AddHs(mol)
                try:
                    Chem.Kekulize(mol, clearAromaticFlags=True)
                except Exception:  # noqa: BLE001 - RDKit's KekulizeException: not a molecule of orders 1-3
                    mol = None
            if (mol is None or mol.GetNumAtoms() > max_atoms
                    or any(a.GetSymbol() not in lookup or a.GetFormalCharge() or a.GetNumRadicalElectrons()
                           for a in mol.GetAtoms())):
                rows.append(None)
                continue
            bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondTypeAsDouble())) for b in mol.GetBonds()]
            rows.append(([lookup[a.GetSymbol()] for a in mol.GetAtoms()], bonds))
    n_max = max([len(r[0]) for r in rows if r is not None], default=1)
    types = torch.zeros(len(rows), n_max, dtype=torch.long)
    orders = torch.zeros(len(rows), n_max, n_max, dtype=torch.long)
    n_atoms = torch.zeros(len(rows), dtype=torch.long)
    for k, row in enumerate(rows):
        if row is None:
            continue
        atoms, bonds = row
        types[k, : len(atoms)] = torch.tensor(atoms)
        n_atoms[k] = len(atoms)
        for i, j, order in bonds:
            orders[k, i, j] = orders[k, j, i] = order
    return MolecularGraphs(types, orders, n_atoms), np.array([r is not None for r in rows], dtype=bool)


# ----------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class GraphConformerConfig:
    """p(G): a causal transformer over the SMILES (``tokenizer``: smiles, or selfies, whose strings all
    decode to a molecule); p(x | G): EDM's chain over the positions with an EGNN of ``egnn_layers`` x
    ``hidden_dim`` whose edges carry the graph; ``low_noise_fraction`` of the training examples draw t
    from the lowest tenth of the chain (where the bond lengths are settled), the rest uniformly."""

    tokenizer: str = bounded("smiles", choices=("smiles", "selfies"))
    d_model: int = bounded(128, minimum=8)
    n_layers: int = bounded(4, minimum=1)
    n_heads: int = bounded(4, minimum=1)
    dropout: float = bounded(0.0, minimum=0, maximum=1)
    max_length: int = bounded(64, minimum=4)
    hidden_dim: int = bounded(64, minimum=1)
    egnn_layers: int = bounded(4, minimum=1)
    diffusion_steps: int = bounded(500, minimum=10)
    sampling_steps: int | None = bounded(100, minimum=1)
    noise_precision: float = bounded(1e-5, exclusive_minimum=0)
    position_norm: float = bounded(1.0, exclusive_minimum=0)
    low_noise_fraction: float = bounded(0.5, minimum=0, maximum=1)
    ema_decay: float = bounded(0.999, minimum=0, maximum=1)


class GraphThenConformers(GenerativeModel):
    """p(G, x) = p(G) p(x | G) (the module's docstring). Batches: tokens (B, L) (the graph's SMILES /
    SELFIES ids), positions (B, N, 3), atom_types (B, N), bonds (B, N, N), n_atoms (B,); samples:
    ``Conformers`` (n_atoms 0 where the sampled string is not a molecule the model can place)."""

    likelihood = "bound"
    family = "diffusion"

    def __init__(self, cfg: GraphConformerConfig, tokenizer: Any, elements: Sequence[str], max_atoms: int,
                 bond_lengths: Sequence[Any]) -> None:
        super().__init__()
        network = CausalTransformer(len(tokenizer), d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                    max_length=cfg.max_length, dropout=cfg.dropout)
        self.graph_model = AutoregressiveModel(network, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                                               eos_id=tokenizer.eos_id)
        self.conformer_model = ConformerDiffusion(
            len(elements), hidden_dim=cfg.hidden_dim, n_layers=cfg.egnn_layers, steps=cfg.diffusion_steps,
            sampling_steps=cfg.sampling_steps, precision=cfg.noise_precision, ema_decay=cfg.ema_decay,
            position_norm=cfg.position_norm, low_noise_fraction=cfg.low_noise_fraction,
            bond_lengths=torch.tensor(bond_lengths, dtype=torch.float32) / cfg.position_norm)
        self.tokenizer = tokenizer
        self.elements = list(elements)
        self.max_atoms = max_atoms

    @property
    def sampling_steps(self) -> int | None:
        """The positions' reverse steps (``curve.snapshot_point`` and the CLI may override them)."""
        return self.conformer_model.sampling_steps

    @sampling_steps.setter
    def sampling_steps(self, steps: int | None) -> None:
        self.conformer_model.sampling_steps = steps

    def set_training_step(self, step: int) -> None:
        self.conformer_model.set_training_step(step)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean NLL per token of the strings + EDM's l2 objective of the positions (one optimiser)."""
        graph = self.graph_model.loss({"tokens": batch["tokens"]})
        positions = self.conformer_model.loss(batch)
        self._last = {"graph_nll_per_token": graph.detach(), "positions_loss": positions.detach()}
        return graph + positions

    def metrics_to_log(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self, "_last", {}))

    def log_prob(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(G) (exact) + the ELBO of log p(x | G), nats per molecule (B,)."""
        return self.graph_model.log_prob({"tokens": batch["tokens"]}) + self.conformer_model.log_prob(
            batch, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, condition: Any = None,
               temperature: float | None = None) -> Conformers:
        """Strings from p(G) (``temperature`` on its softmax), their graphs, then positions from p(x | G)."""
        tokens = self.graph_model.sample(n, generator=generator, temperature=temperature)
        strings = [self.tokenizer.decode(row) for row in tokens.cpu().tolist()]
        graphs, ok = graphs_of_smiles(strings, self.elements, self.max_atoms)
        device = self.conformer_model.gamma.device
        positions = torch.zeros(n, graphs.atom_types.shape[1], 3, device=device)
        keep = torch.from_numpy(np.flatnonzero(ok))
        if len(keep):
            chosen = MolecularGraphs(*(v[keep].to(device) for v in graphs))
            n_max = int(chosen.n_atoms.max())
            chosen = MolecularGraphs(chosen.atom_types[:, :n_max], chosen.bonds[:, :n_max, :n_max], chosen.n_atoms)
            positions[keep.to(device), :n_max] = self.conformer_model.sample(len(keep), generator=generator,
                                                                             condition=chosen)
        mask = torch.arange(graphs.atom_types.shape[1])[None, :] < graphs.n_atoms[:, None]
        return Conformers(positions, graphs.atom_types.masked_fill(~mask, -1).to(device), graphs.n_atoms.to(device))


@register("model", "qm9-graph-conformer")
class QM9GraphConformer(ModelSpec):
    """Registry entry: p(G) p(x | G), a SMILES / SELFIES transformer and an EGNN diffusion of the positions given the graph,
    on 3D molecules with hydrogens (QM9's or a user's conformers)."""

    domain: ClassVar[str] = "conformers"
    Config = GraphConformerConfig
    batch_fields: ClassVar[tuple[str, ...]] = ("positions", "atom_types", "n_atoms", "bonds", "tokens")
    training_only_keys: ClassVar[tuple[str, ...]] = ("dropout", "low_noise_fraction")
    # estimate: EGNN 4 x 64 over batches of 64 molecules and a 4-layer transformer, one GPU
    train_resources = TrainResources(seconds_per_step=0.05, mem_mb=16000)

    @staticmethod
    def build(cfg: GraphConformerConfig, state: dict[str, Any]) -> GenerativeModel:
        from dgm_science.tokenizer import Tokenizer

        return GraphThenConformers(cfg, Tokenizer.from_state(state["tokenizer"]), state["elements"],
                                   state["max_atoms"], state["bond_lengths"])


# ----------------------------------------------------------------------------- the domain's side


@functools.lru_cache(maxsize=4)
def _heavy_atom_file(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    return tuple(s for s in heavy_atom_smiles(Path(path).read_text().split()) if s)


def _atom_counts(smiles: Sequence[str | None]) -> list[int]:
    """Atoms with hydrogens of each SMILES (0 for None or a string RDKit rejects)."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    return [0 if m is None else m.GetNumAtoms() + sum(a.GetTotalNumHs() for a in m.GetAtoms()) for m in mols]


def graph_strings(data_dir: Path, split: str, *, n_jobs: int = 1) -> list[str]:
    """The SMILES (no explicit hydrogens) a graph model learns for a split: the training split's are
    ``train_smiles.txt`` (EDM's perception of every training molecule, deduplicated), another split's are
    perceived from its positions alike; molecules RDKit rejects are left out."""
    data_dir = Path(data_dir)
    if split == "train" and (data_dir / "train_smiles.txt").is_file():
        stat = (data_dir / "train_smiles.txt").stat()
        strings = list(_heavy_atom_file(str(data_dir / "train_smiles.txt"), stat.st_mtime_ns, stat.st_size))
    else:
        from dgm_science.domains.structures.data import elements_of, load_npz, metric_types

        data = load_npz(data_dir / f"{split}.npz")
        types = metric_types(data["atom_types"], elements_of(data, str(data_dir / f"{split}.npz")))
        perceived = metrics.molecules_smiles(data["positions"], types, data["n_atoms"], n_jobs=n_jobs)
        strings = [s for s in heavy_atom_smiles([p for p in perceived if p]) if s]
    if not strings:
        raise DataError(f"{data_dir / split}: no molecule whose graph RDKit accepts (a graph model needs some)")
    return strings


def fit_tokenizer(data_dir: Path, kind: str) -> dict[str, Any]:
    """The vocabulary (``Tokenizer.state()``) of the training split's graph strings."""
    from dgm_science.tokenizer import Tokenizer

    return Tokenizer.fit(kind, graph_strings(data_dir, "train")).state()


def token_rows(strings: Sequence[str], tokenizer_state: dict[str, Any], max_length: int) -> torch.Tensor:
    """(S, L) padded ids of the strings that fit ``max_length`` tokens (longer ones are left out)."""
    from dgm_science.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_state(tokenizer_state)
    rows, _ = tokenizer.encode_batch(list(strings), max_length)
    complete = (rows == tokenizer.eos_id).any(1)
    if not bool(complete.any()):
        raise DataError(f"no graph string fits max_length {max_length} tokens")
    return rows[complete]


def perceived_graphs(positions: np.ndarray, metric_types_: np.ndarray, n_atoms: np.ndarray,
                     tokenizer_state: dict[str, Any], max_length: int) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """For scoring molecules: the bond orders EDM's tables perceive (B, N, N), the token rows (K, L) of the
    molecules whose perceived graph is a molecule RDKit accepts and fits ``max_length``, and which (B,) bool."""
    from dgm_science.tokenizer import Tokenizer

    orders = metrics.bond_orders(positions, metric_types_, n_atoms)
    strings = [metrics.molecule_smiles((metric_types_[k, :n], orders[k, :n, :n])) if n else None
               for k, n in enumerate(np.asarray(n_atoms).tolist())]
    heavy = heavy_atom_smiles([s or "" for s in strings])
    sizes = _atom_counts(heavy)
    tokenizer = Tokenizer.from_state(tokenizer_state)
    ids = [tokenizer.encode(h) if h and size == n else None  # size != n: a fragment's string, not the molecule's
           for h, size, n in zip(heavy, sizes, np.asarray(n_atoms).tolist())]
    ok = np.array([x is not None and len(x) <= max_length and tokenizer.unk_id not in x for x in ids], dtype=bool)
    length = max([len(x) for x, good in zip(ids, ok) if good], default=2)
    rows = torch.zeros(int(ok.sum()), length, dtype=torch.long)
    for r, x in enumerate(x for x, good in zip(ids, ok) if good):
        rows[r, : len(x)] = torch.tensor(x)
    return orders, rows, ok
