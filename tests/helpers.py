"""Helpers shared by the test modules (one place instead of tests importing each other): settings built the way
the stages build them, and the small crystals, graphs and models many tests use.

Test modules import from here, never from each other (tests/test_architecture.py checks it); a helper only one
module uses stays in that module."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.batch import GraphBatch
from pipeline.data.featurize import FeaturizeSettings
from pipeline.data.graphs import Graph, build_graph, build_graphs
from pipeline.data.shards import ShardRecord, write_shard
from pipeline.grid import FREQ_CM
from pipeline.nn.model import ALIGNN, ModelConfig


# ------------------------------------------------------------------------------------------ settings ----------
def featurize_settings(n_shards: int = 1, **values: Any) -> FeaturizeSettings:
    """The ``featurize`` section with ``values`` over the schema defaults (one shard unless given)."""
    return FeaturizeSettings.from_config({"n_shards": n_shards, **values})


def figshare_settings(**values: Any):
    """The ``figshare`` section with ``values`` over the schema defaults (pipeline.data.fetch)."""
    from pipeline.data.fetch import FigshareSettings

    return FigshareSettings.from_config(values)


def split_settings(**values: Any):
    """The ``split`` section with ``values`` over the schema defaults (pipeline.data.dos)."""
    from pipeline.data.dos import SplitSettings

    return SplitSettings.from_config(values)


def report_settings(**values: Any):
    """The ``report`` section with ``values`` over the schema defaults (pipeline.reports.figures)."""
    from pipeline.reports.figures import ReportSettings

    return ReportSettings.from_config(values)


def evaluate_settings(**values: Any):
    """The ``evaluate`` section with ``values`` over the schema defaults (pipeline.reports.evaluate)."""
    from pipeline.reports.evaluate import EvaluateSettings

    return EvaluateSettings.from_config(values)


def properties_settings(**values: Any):
    """The ``properties`` section with ``values`` over the schema defaults (pipeline.physics.properties)."""
    from pipeline.physics.properties import PropertiesSettings

    return PropertiesSettings.from_config(values)


def train_settings(preset: str = "demo", **values: Any):
    """The ``train`` section with ``values`` over what ``preset`` (model.preset) and the schema supply
    (pipeline.nn.train.TrainConfig)."""
    from pipeline.nn.train import TrainConfig

    return TrainConfig.from_config(values, preset=preset)


# ------------------------------------------------------------------------------------------ graphs ------------
def graph_settings(**overrides: Any) -> dict[str, Any]:
    """``k``, ``cutoff`` and ``min_distance`` as the featurize stage has them by default (the schema's), with
    ``overrides`` (not validated, so a test can pass a value the schema refuses): the graph builders' keywords."""
    defaults = FeaturizeSettings.from_config({})
    return {"k": defaults.k, "cutoff": defaults.cutoff, "min_distance": defaults.min_distance, **overrides}


def graph_of(lattice_mat: Any, frac_coords: Any, elements: Any, **overrides: Any) -> Graph:
    """:func:`pipeline.data.graphs.build_graph` with the featurize defaults (:func:`graph_settings`)."""
    return build_graph(lattice_mat, frac_coords, elements, **graph_settings(**overrides))


def graphs_of(structures: list, **overrides: Any) -> list:
    """:func:`pipeline.data.graphs.build_graphs` with the featurize defaults (:func:`graph_settings`)."""
    return build_graphs(structures, **graph_settings(**overrides))


# ------------------------------------------------------------------------------------------ crystals ----------
def fcc(a: float) -> np.ndarray:
    """Primitive face-centred cubic lattice rows (Angstrom) of cubic lattice constant ``a``."""
    return 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)


#: textbook crystals: (lattice rows in Angstrom, fractional coordinates, elements)
CRYSTALS = {
    "Si": (fcc(5.43), [[0, 0, 0], [0.25, 0.25, 0.25]], ["Si", "Si"]),
    "NaCl": (fcc(5.64), [[0, 0, 0], [0.5, 0.5, 0.5]], ["Na", "Cl"]),
    "SrTiO3": (
        3.905 * np.eye(3),
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        ["Sr", "Ti", "O", "O", "O"],
    ),
    "Cu": (fcc(3.61), [[0, 0, 0]], ["Cu"]),
}


def crystal_graph(name: str, **overrides: Any) -> Graph:
    """The graph of ``CRYSTALS[name]`` with the featurize defaults (``overrides``, e.g. ``k=6``, over them)."""
    lattice, frac, elements = CRYSTALS[name]
    return graph_of(np.asarray(lattice), np.asarray(frac, dtype=float), elements, **overrides)


def strained_crystals(n: int) -> list[tuple[str, object, np.ndarray]]:
    """(id, graph, target) for rocksalt/diamond crystals under strain, with a Debye DOS (g ~ w^2 up to a cutoff
    that stiffens as the cell shrinks), max-normalised on the 66-bin grid: a learnable, physical target."""
    protos = [
        ("NaCl", fcc(5.64), [[0, 0, 0], [0.5, 0.5, 0.5]], ["Na", "Cl"], 260.0),
        ("Si", fcc(5.43), [[0, 0, 0], [0.25, 0.25, 0.25]], ["Si", "Si"], 520.0),
        ("MgO", fcc(4.21), [[0, 0, 0], [0.5, 0.5, 0.5]], ["Mg", "O"], 700.0),
    ]
    out = []
    for i in range(n):
        name, lattice, frac, elements, w_debye = protos[i % len(protos)]
        scale = 0.96 + 0.08 * (i // len(protos)) / max(1, (n - 1) // len(protos))
        w_cut = w_debye * scale**-3  # stiffer when compressed (Grueneisen-like)
        g = np.where((FREQ_CM > 0) & (FREQ_CM <= w_cut), FREQ_CM**2, 0.0)
        target = (g / g.max()).astype(np.float32)
        graph = graph_of(lattice * scale, np.asarray(frac, float), elements)
        out.append((f"{name}-{i}", graph, target))
    return out


def rocksalt_crystals(n: int, offset: int = 0) -> tuple[list[str], list[Graph]]:
    """n rocksalt crystals under different strains: (ids, graphs)."""
    ids, graphs = [], []
    for i in range(offset, offset + n):
        ids.append(f"JVASP-{1000 + i}")
        graphs.append(graph_of(fcc(5.64) * (0.95 + 0.01 * i), np.array([[0, 0, 0], [0.5] * 3]), ["Na", "Cl"]))
    return ids, graphs


def in_memory(items):
    """(id, graph, target) items as the train stage's in-memory data set."""
    from pipeline.nn.train import InMemoryGraphs

    return InMemoryGraphs([ShardRecord(jid, g, t) for jid, g, t in items])


def write_split(path: Path, items) -> Path:
    """(id, graph, target) items -> one labelled HDF5 shard at ``path``."""
    write_shard(path, [i for i, _, _ in items], [g for _, g, _ in items], [t for _, _, t in items])
    return path


# ------------------------------------------------------------------------------------------ models ------------
#: a 1+1-layer, 16-wide model: trains in seconds
TINY = ModelConfig.from_config(
    {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16}
)
#: a 2+2-layer, 32-wide model: the model tests' size
SMALL = ModelConfig.from_config(
    {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 32, "embedding_features": 16}
)


def trained_like(model: ALIGNN, seed: int = 0) -> ALIGNN:
    """Eval-mode model with non-trivial batch-norm statistics (fresh BN layers are the identity in eval)."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.copy_(0.1 * torch.randn(mod.num_features, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(mod.num_features, generator=g))
    return model.eval()


def with_accelerator(model: ALIGNN, accelerator: str) -> ALIGNN:
    """A copy of ``model`` (weights, BatchNorm statistics, train/eval mode) built with ``model.accelerator`` =
    ``accelerator``."""
    other = ALIGNN(dataclasses.replace(model.config, accelerator=accelerator))
    other.load_state_dict(model.state_dict())
    return other.train(model.training)


def permute_graph(batch: GraphBatch, seed: int = 0) -> GraphBatch:
    """Same crystal graph with atoms, bonds and bond pairs renumbered by random permutations."""
    g = torch.Generator().manual_seed(seed)
    n, e, t = batch.atom_features.shape[0], batch.edge_src.numel(), batch.line_src.numel()
    atom_perm, edge_perm, line_perm = (torch.randperm(m, generator=g) for m in (n, e, t))
    new_atom = torch.empty_like(atom_perm)
    new_atom[atom_perm] = torch.arange(n)  # old atom index -> new index
    new_edge = torch.empty_like(edge_perm)
    new_edge[edge_perm] = torch.arange(e)
    return GraphBatch(
        atom_features=batch.atom_features[atom_perm],
        edge_src=new_atom[batch.edge_src[edge_perm]],
        edge_dst=new_atom[batch.edge_dst[edge_perm]],
        bond_vec=batch.bond_vec[edge_perm],
        line_src=new_edge[batch.line_src[line_perm]],
        line_dst=new_edge[batch.line_dst[line_perm]],
        angle_cos=batch.angle_cos[line_perm],
        node_graph=batch.node_graph[atom_perm],
        n_graphs=batch.n_graphs,
        ids=batch.ids,
        targets=batch.targets,
    )


def save_model(path: Path, model: ALIGNN) -> Path:
    """``model`` as a minimal model.pt (one member, no training record) at ``path``."""
    torch.save(
        {"model_config": model.config.to_dict(), "train_config": {}, "state_dict": model.state_dict(), "best_epoch": 1,
         "best_val_mae": 0.1},
        path,
    )  # fmt: skip
    return path


def train_members(
    train_shard: Path, val_shard: Path, out: Path, settings: str, members: Sequence[int] = (0, 1)
) -> list[Path]:
    """Train ``members`` through the train stage's command line (``--settings`` JSON, CPU, no bars) into
    ``out/member-{i}``; returns their directories."""
    from pipeline.stages.train import main

    dirs = []
    for member in members:
        d = out / f"member-{member}"
        argv = ["--train-shards", str(train_shard), "--val-shards", str(val_shard), "--out-dir", str(d)]
        argv += ["--settings", settings, "--member", str(member), "--no-progress", "--device", "cpu"]
        assert main(argv) == 0, f"training member {member} failed"
        dirs.append(d)
    return dirs
