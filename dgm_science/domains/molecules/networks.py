"""Graph neural networks over the molecular graphs of :mod:`.featurize`."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, global_add_pool, global_mean_pool

from dgm_science.domains.molecules.featurize import ATOM_FEATURE_DIM, BOND_FEATURE_DIM


class _GINEBlock(nn.Module):
    """Pre-norm residual GINE layer: ``h + Dropout(GINEConv(LayerNorm(h)))``."""

    def __init__(self, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        mlp = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim),
            nn.SiLU(),
            nn.Linear(2 * hidden_dim, hidden_dim),
        )
        self.conv = GINEConv(mlp, edge_dim=hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_embedding: torch.Tensor
    ) -> torch.Tensor:
        return h + self.dropout(self.conv(self.norm(h), edge_index, edge_embedding))


class GraphEncoder(nn.Module):
    """GINE message-passing encoder of a molecular graph to a diagonal Gaussian q(z | G).

    GINE (Hu et al. 2020, "Strategies for Pre-training Graph Neural Networks") layers with bond
    features, pre-LayerNorm residuals, then a sum + mean readout, LayerNorm and an MLP head.
    ``forward(graph)``: ``graph.x: (N, ATOM_FEATURE_DIM)``, ``graph.edge_index: (2, 2E)``,
    ``graph.edge_attr: (2E, BOND_FEATURE_DIM)``, ``graph.batch: (N,)`` ->
    ``(mu, log_var)``, each ``(B, latent_dim)``.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_dim: int = 128,
        num_layers: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.atom_embedding = nn.Linear(ATOM_FEATURE_DIM, hidden_dim)
        self.bond_embedding = nn.Linear(BOND_FEATURE_DIM, hidden_dim)
        self.blocks = nn.ModuleList(_GINEBlock(hidden_dim, dropout) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden_dim)
        self.head = nn.Sequential(
            nn.LayerNorm(2 * hidden_dim),
            nn.Linear(2 * hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )

    def forward(self, graph: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.atom_embedding.weight.dtype  # features are stored as uint8 0/1 flags
        h = self.atom_embedding(graph.x.to(dtype))
        edge_embedding = self.bond_embedding(graph.edge_attr.to(dtype))
        for block in self.blocks:
            h = block(h, graph.edge_index, edge_embedding)
        h = self.final_norm(h)
        batch = graph.batch
        if batch is None:
            batch = h.new_zeros(h.shape[0], dtype=torch.long)
        num_graphs = graph.num_graphs if hasattr(graph, "num_graphs") else int(batch.max()) + 1
        pooled = torch.cat(
            [global_add_pool(h, batch, num_graphs), global_mean_pool(h, batch, num_graphs)], dim=-1
        )
        mu, log_var = self.head(pooled).chunk(2, dim=-1)
        return mu, log_var
