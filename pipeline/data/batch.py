"""``GraphBatch``: the in-memory contract between graph shards (featurize) and the model (train/predict).

A batch is the disjoint union of B crystal graphs and their line graphs, with indices already offset so that
edge ``e`` of graph ``g`` refers to atoms of graph ``g`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class GraphBatch:
    atom_features: torch.Tensor  # (N, 92) float32, CGCNN atom features
    edge_src: torch.Tensor  # (E,) int64, atom index the bond starts at
    edge_dst: torch.Tensor  # (E,) int64, atom index the bond ends at (a neighbour of edge_src)
    bond_vec: torch.Tensor  # (E, 3) float32, r_dst + image - r_src in Angstrom
    line_src: torch.Tensor  # (T,) int64, bond index a = (i->j)
    line_dst: torch.Tensor  # (T,) int64, bond index b = (j->k), sharing atom j
    angle_cos: torch.Tensor  # (T,) float32, cos of the angle at j between j->i and j->k
    node_graph: torch.Tensor  # (N,) int64, graph index of each atom, 0..B-1
    n_graphs: int
    ids: list[str]
    targets: torch.Tensor | None = None  # (B, 66) float32 when labelled

    def to(self, device: torch.device | str) -> GraphBatch:
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        return GraphBatch(**moved)
