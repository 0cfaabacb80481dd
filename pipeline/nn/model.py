"""ALIGNN (Choudhary & DeCost 2021) in plain PyTorch, as used for the phonon DOS by Gurunathan et al. (2023).

Hand-written rather than wrapping the ``alignn`` package: that package needs DGL (or, for its pure-torch variant,
its own graph container and force-field machinery), while this pipeline feeds :class:`pipeline.data.batch.GraphBatch`
straight from HDF5 shards. The architecture follows the paper (Sec. II A) and ``alignn.models.alignn``:

* atoms: 92-d CGCNN features -> Linear/Norm/SiLU to the hidden size;
* bonds: |bond_vec| expanded in 80 Gaussian RBFs on 0..8 A -> 64-d -> hidden (two Linear/Norm/SiLU layers);
* angles: cos(theta) in 40 RBFs on -1..1 -> 64-d -> hidden;
* ``alignn_layers`` ALIGNN layers: an edge-gated convolution on the crystal graph (atoms, bonds) whose edge output
  feeds an edge-gated convolution on the line graph (bonds, angles);
* ``gcn_layers`` edge-gated convolutions on the crystal graph;
* mean pooling over the atoms of each crystal, a linear head to ``out_dim`` (66 DOS bins by default) and an
  optional final ReLU (the paper's guard against negative DOS);
* with ``stability_head``, one more output, the predicted negative-frequency fraction, appended as the last
  column (:func:`split_outputs` separates the two): ``shared``, a second linear head on the same pooled features;
  ``separate``, a trunk of its own (an ALIGNN of the same architecture with a one-value head, no final ReLU).

This module is the model. Message passing uses ``index_select`` / ``index_add_`` on the batch's edge lists. For
speed (the line graph has k^2 rows per atom and dominates the cost): the four node-side linear maps of a
convolution are fused into one matrix product; the fresh linear output is updated in place; and when the edge
list is "regular" (k out-edges per node, listed node by node, which the kNN graphs and their line graphs are), the
source-side gathers are broadcasts instead of ``index_select`` (their backward is a sum, not a scatter) and the
gated mean has a hand-written backward (:class:`GatedMean`). The line graph's destinations come in blocks too
(bond (i -> j) links to the k bonds of j, stored contiguously), so its destination gather and scatters move k rows
at a time. Any other edge list takes the general path with the same result.

How the convolutions run is ``model.accelerator`` (pipeline/config.schema.yaml), resolved once when the model is
built (:func:`pipeline.nn.fused.resolve_accelerator`), logged (INFO) and kept as ``ALIGNN.accelerator``:
``"torch"`` is this PyTorch code alone; ``"fused"`` swaps in the C kernels of :mod:`pipeline.nn.fused` for the
edge side of every convolution and every BatchNorm+SiLU. The kernels take float32 CPU tensors outside
``torch.autocast`` (:func:`pipeline.nn.fused.runs_on`, checked on the features at each forward): a fused model
given CUDA tensors, or run under autocast (bf16), takes this PyTorch path for them. Both agree to float32 rounding
(tests/test_fused.py). Measured speeds of the paths: benchmarks/results/conv_paths.json.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.config import ConfigNode
from pipeline.data.batch import GraphBatch
from pipeline.nn import fused

ATOM_FEATURES = 92
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig(ConfigNode):
    """The ``model`` config section: architecture hyper-parameters and how the convolutions run.

    Meaning, bounds and defaults: pipeline/config.schema.yaml. :meth:`from_config` fills the keys ``preset`` supplies
    (:mod:`pipeline.nn.presets`) before the schema defaults. :meth:`to_dict` is the architecture alone, as model
    files record it (``preset`` and ``accelerator`` are how it was chosen and how it runs, not what it is).
    """

    KEY: ClassVar[str] = "model"
    preset: str
    accelerator: str
    alignn_layers: int
    gcn_layers: int
    hidden_features: int
    embedding_features: int
    atom_input_features: int
    edge_input_features: int
    triplet_input_features: int
    bond_cutoff: float
    out_dim: int
    final_relu: bool
    norm: str
    stability_head: str

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None = None) -> ModelConfig:
        from pipeline.nn.presets import model_values

        return super().from_config(model_values(values))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], accelerator: str | None = None) -> ModelConfig:
        """The architecture a model file records (:meth:`to_dict`), to run with ``accelerator`` (unless ``d``
        names one; None: the schema's ``model.accelerator`` default)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls.from_config(({} if accelerator is None else {"accelerator": accelerator}) | dict(d))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.to_config().items() if k not in _HOW}
        if (
            d["stability_head"] == "none"
        ):  # what model files recorded before the key existed (read back as none)
            del d["stability_head"]
        return d


#: the model-section keys that are not the architecture (model files do not record them)
_HOW = frozenset({"preset", "accelerator"})


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    raise ValueError(f"norm must be 'batch' or 'layer', got {kind!r}")


class RBFExpansion(nn.Module):
    """Gaussian radial basis: exp(-gamma (d - c_k)^2) on ``bins`` evenly spaced centres, gamma = 1/spacing."""

    def __init__(self, vmin: float, vmax: float, bins: int):
        super().__init__()
        self.register_buffer("centers", torch.linspace(vmin, vmax, bins))
        self.gamma = 1.0 / ((vmax - vmin) / (bins - 1))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * (d.unsqueeze(1) - self.centers) ** 2)


class MLPLayer(nn.Sequential):
    """Linear -> norm -> SiLU. ``kernels``: norm and SiLU through :func:`pipeline.nn.fused.norm_silu` where the
    kernels take the features (the model's ``fused`` accelerator)."""

    def __init__(self, n_in: int, n_out: int, norm: str, kernels: bool):
        super().__init__(nn.Linear(n_in, n_out), _norm(norm, n_out), nn.SiLU())
        self.kernels = kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self[0](x)
        if self.kernels and fused.runs_on(u):
            return fused.norm_silu(u, self[1])
        return self[2](self[1](u))


GATE_EPS = 1e-6


class Edges(NamedTuple):
    """An edge list as the PyTorch path reads it (:func:`torch_edges`).

    ``fanout`` > 0 declares ``src == arange(n).repeat_interleave(fanout)`` (see :func:`regular_fanout`): the
    source-side gathers become broadcasts, whose backward is a cheap sum instead of a scatter. ``dst_blocks``
    (with ``fanout``) declares that the ``fanout`` edges of node i go to the nodes ``dst_blocks[i] * fanout +
    0..fanout-1`` (see :func:`line_dst_blocks`): the destination gather and scatters then move blocks of
    ``fanout`` rows at once instead of row-wise ``index_select``. ``fanout`` 0: the general path."""

    src: torch.Tensor
    dst: torch.Tensor
    fanout: int
    dst_blocks: torch.Tensor | None


def _scatter_to_dst(
    values: torch.Tensor, fanout: int, dst: torch.Tensor, dst_blocks: torch.Tensor | None
) -> torch.Tensor:
    """(n, fanout, c) per-edge values -> (n, c) sums per destination node (regular edge list)."""
    n, _, c = values.shape
    if dst_blocks is not None:
        out = values.new_zeros((n // fanout, fanout * c))
        return out.index_add_(0, dst_blocks, values.view(n, fanout * c)).view(n, c)
    return values.new_zeros((n, c)).index_add_(0, dst, values.view(-1, c))


def _gather_from_dst(
    table: torch.Tensor, fanout: int, dst: torch.Tensor, dst_blocks: torch.Tensor | None
) -> torch.Tensor:
    """(n, c) per-node rows -> (n, fanout, c) the row of each edge's destination (regular edge list)."""
    n, c = table.shape
    if dst_blocks is not None:
        return table.view(n // fanout, fanout, c).index_select(0, dst_blocks)
    return table.index_select(0, dst).view(n, fanout, c)


class GatedMean(torch.autograd.Function):
    """h_j = sum_(e: i->j) s_e v_i / (sum_(e: i->j) s_e + eps) with s_e = sigmoid(m_e), for a regular edge list
    (``fanout`` out-edges per node, listed node by node; ``dst`` or ``dst_blocks`` as in :class:`Edges`).

    Same values as the autograd composition in ``EdgeGatedConv``'s general path, with a hand-written backward that
    builds dL/ds in place on the gathered dL/dnorm: four edge-sized temporaries where autograd allocates six, and
    fewer passes over them. Edge-sized tensors (T = atoms * k^2 rows on the line graph) dominate memory traffic,
    which dominates CPU time here.
    """

    @staticmethod
    def forward(ctx, m, v, fanout, dst, dst_blocks):  # type: ignore[override]
        n, d = v.shape
        sigma = torch.sigmoid(m).view(n, fanout, d)
        summed = _scatter_to_dst(sigma * v.unsqueeze(1), fanout, dst, dst_blocks)
        denom = _scatter_to_dst(sigma, fanout, dst, dst_blocks).add_(GATE_EPS)
        h = summed.div_(denom)
        ctx.fanout = fanout
        ctx.save_for_backward(sigma, v, denom, h, dst, dst_blocks)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h):  # type: ignore[override]
        sigma, v, denom, h, dst, dst_blocks = ctx.saved_tensors
        d = v.shape[1]
        grad_sum = grad_h / denom  # dL/dsummed; dL/ddenom = -grad_sum * h
        grad_msg = _gather_from_dst(grad_sum, ctx.fanout, dst, dst_blocks)  # (n, fanout, d) per edge
        grad_s = _gather_from_dst(-(grad_sum * h), ctx.fanout, dst, dst_blocks)
        grad_v = (grad_msg * sigma).sum(dim=1) if ctx.needs_input_grad[1] else None
        grad_s.addcmul_(grad_msg, v.unsqueeze(1))  # dL/ds = dL/dsummed * v + dL/ddenom
        grad_m = torch.ops.aten.sigmoid_backward(grad_s, sigma)
        return grad_m.view(-1, d), grad_v, None, None, None


class EdgeGatedConv(nn.Module):
    """Edge-gated graph convolution (Bresson & Laurent 2017, as modified in ALIGNN), with residuals.

    For an edge e = (i -> j) with features y_e:
        m_e   = A x_i + B x_j + C y_e
        s_e   = sigmoid(m_e)
        x_j'  = x_j + SiLU(Norm(U x_j + sum_e s_e * V x_i / (sum_e s_e + eps)))
        y_e'  = y_e + SiLU(Norm(m_e))
    """

    def __init__(self, dim: int, norm: str):
        super().__init__()
        self.dim = dim
        # A (src gate), B (dst gate), V (message), U (self update) fused into one (dim -> 4 dim) product.
        self.node_linear = nn.Linear(dim, 4 * dim)
        self.edge_linear = nn.Linear(dim, dim)
        self.norm_nodes = _norm(norm, dim)
        self.norm_edges = _norm(norm, dim)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, edges: Edges | fused.EdgeIndex, update_edges: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``edges``: the edge list of the rows of ``y``, as :class:`ALIGNN` prepared it for this batch: an
        :class:`Edges` for this PyTorch code, or a :class:`pipeline.nn.fused.EdgeIndex` for the fused kernels
        (:func:`pipeline.nn.fused.edge_gated_conv`, the same maths). ``update_edges=False`` returns ``y``
        unchanged (for a last layer whose edge output nobody reads)."""
        if isinstance(edges, fused.EdgeIndex):
            return fused.edge_gated_conv(self, x, y, edges, update_edges)
        src, dst, fanout, dst_blocks = edges
        d = self.dim
        n = x.shape[0]
        amp = autocast_enabled(x.device.type)
        src_gate, src_msg, dst_gate, self_update = self.node_linear(x).split(d, dim=1)
        if fanout:
            # m = C y + (A x_src + b) + B x_dst accumulated in place on the gathered gates (a fresh tensor, not a
            # view, so autograd does not clone gradients for it): the only (T, d) temporary is that gather.
            if dst_blocks is not None:
                gates = _gather_from_dst(dst_gate.contiguous(), fanout, dst, dst_blocks)  # fresh, not a view
                gates.add_((src_gate + self.edge_linear.bias).unsqueeze(1))
            else:
                gates = dst_gate.index_select(0, dst).view(n, fanout, d) + (
                    src_gate + self.edge_linear.bias
                ).unsqueeze(1)
            if amp:  # autocast casts the operands of an out-of-place addmm (addmm_ keeps gates' dtype)
                m = torch.addmm(gates.view(-1, d), y, self.edge_linear.weight.t())
            else:
                m = gates.view(-1, d).addmm_(y, self.edge_linear.weight.t())
        else:
            m = src_gate.index_select(0, src) + dst_gate.index_select(0, dst) + self.edge_linear(y)
        if amp:
            # mixed precision: the matrix products above ran in the autocast dtype; the gated mean's sums, the
            # normalisations and the residual streams stay in float32
            m, src_msg = m.float(), src_msg.float()
        if fanout:
            h = GatedMean.apply(m, src_msg.contiguous(), fanout, dst, dst_blocks)
        else:
            sigma = torch.sigmoid(m)
            msg = src_msg.index_select(0, src) * sigma
            # Gated sum and its normaliser, scattered to the destination.
            summed = msg.new_zeros((n, d)).index_add_(0, dst, msg)
            norm = msg.new_zeros((n, d)).index_add_(0, dst, sigma)
            h = summed / (norm + GATE_EPS)
        # residuals added in place on the fresh SiLU outputs (SiLU's backward needs its input, not its output)
        x_new = F.silu(self.norm_nodes(self_update + h)).add_(x)
        y_new = F.silu(self.norm_edges(m)).add_(y) if update_edges else y
        return x_new, y_new


def autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is on for this device type (the PyTorch path then runs the matrix products in
    the autocast dtype and the rest in float32; the fused kernels take float32 only)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def regular_fanout(src: torch.Tensor, n_nodes: int) -> int:
    """k when ``src == arange(n_nodes).repeat_interleave(k)`` (every node has k out-edges, listed node by node,
    as the kNN graphs and their line graphs of :mod:`pipeline.data.graphs` are), else 0 (general gather path)."""
    if n_nodes == 0 or src.numel() == 0 or src.numel() % n_nodes:
        return 0
    k = src.numel() // n_nodes
    rows = torch.arange(n_nodes, device=src.device).unsqueeze(1)
    return k if bool((src.view(n_nodes, k) == rows).all()) else 0


def line_dst_blocks(
    edge_dst: torch.Tensor, line_src: torch.Tensor, line_dst: torch.Tensor, fanout: int
) -> torch.Tensor | None:
    """``edge_dst`` when the line graph is the one :mod:`pipeline.data.graphs` builds from a crystal graph with
    ``fanout`` bonds per atom listed atom by atom: bond a = (i -> j) links to the bonds of j, i.e. line edge
    ``a * fanout + s`` goes to bond ``edge_dst[a] * fanout + s``. Else None (row-wise gathers)."""
    n_bonds = edge_dst.numel()
    if not fanout or n_bonds == 0 or line_src.numel() != n_bonds * fanout or n_bonds % fanout:
        return None
    expected = edge_dst.unsqueeze(1) * fanout + torch.arange(fanout, device=edge_dst.device)
    return edge_dst if bool((line_dst.view(n_bonds, fanout) == expected).all()) else None


def torch_edges(batch: GraphBatch, line_graph: bool) -> tuple[Edges, Edges | None]:
    """The crystal graph's and (``line_graph``) the line graph's edge lists for the PyTorch path, with the regular
    structure :func:`regular_fanout` and :func:`line_dst_blocks` find in them."""
    n_atoms, n_bonds = batch.atom_features.shape[0], batch.edge_src.numel()
    crystal = Edges(batch.edge_src, batch.edge_dst, regular_fanout(batch.edge_src, n_atoms), None)
    if not line_graph:
        return crystal, None
    fanout = regular_fanout(batch.line_src, n_bonds)
    blocks = None
    if fanout and fanout == crystal.fanout:
        blocks = line_dst_blocks(batch.edge_dst, batch.line_src, batch.line_dst, fanout)
    return crystal, Edges(batch.line_src, batch.line_dst, fanout, blocks)


def kernel_edges(
    batch: GraphBatch, line_graph: bool, cache: dict[str, fused.EdgeIndex] | None = None
) -> tuple[fused.EdgeIndex, fused.EdgeIndex | None]:
    """The same edge lists in the fused kernels' form (a sort of each; ``cache`` shares them between models run on
    the same batch)."""

    def index(key: str, src: torch.Tensor, dst: torch.Tensor, n: int) -> fused.EdgeIndex:
        if cache is not None and key in cache:
            return cache[key]
        built = fused.EdgeIndex.build(src, dst, n)
        if cache is not None:
            cache[key] = built
        return built

    crystal = index("crystal", batch.edge_src, batch.edge_dst, batch.atom_features.shape[0])
    if not line_graph:
        return crystal, None
    return crystal, index("line", batch.line_src, batch.line_dst, batch.edge_src.numel())


class ALIGNNLayer(nn.Module):
    """Crystal-graph convolution (atoms, bonds) then line-graph convolution (bonds, angles)."""

    def __init__(self, dim: int, norm: str):
        super().__init__()
        self.crystal = EdgeGatedConv(dim, norm)
        self.line = EdgeGatedConv(dim, norm)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        z: torch.Tensor,
        crystal_edges: Edges | fused.EdgeIndex,
        line_edges: Edges | fused.EdgeIndex,
        update_angles: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, m = self.crystal(x, y, crystal_edges)
        y, z = self.line(m, z, line_edges, update_edges=update_angles)
        return x, y, z


class ALIGNN(nn.Module):
    """Crystal (GraphBatch) -> (B, out_dim) prediction. See the module docstring.

    ``accelerator`` ("fused" or "torch"): ``config.accelerator`` as resolved here, once
    (:func:`pipeline.nn.fused.resolve_accelerator`; ``fused`` raises :class:`pipeline.nn.fused.KernelsUnavailable`
    naming why when the kernels cannot be built). The state dict is the same for both.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.accelerator, why = fused.resolve_accelerator(c.accelerator, c.norm)
        kernels = self.accelerator == "fused"
        self.atom_embedding = MLPLayer(c.atom_input_features, c.hidden_features, c.norm, kernels)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(0.0, c.bond_cutoff, c.edge_input_features),
            MLPLayer(c.edge_input_features, c.embedding_features, c.norm, kernels),
            MLPLayer(c.embedding_features, c.hidden_features, c.norm, kernels),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(-1.0, 1.0, c.triplet_input_features),
            MLPLayer(c.triplet_input_features, c.embedding_features, c.norm, kernels),
            MLPLayer(c.embedding_features, c.hidden_features, c.norm, kernels),
        )
        self.alignn_layers = nn.ModuleList(
            ALIGNNLayer(c.hidden_features, c.norm) for _ in range(c.alignn_layers)
        )
        self.gcn_layers = nn.ModuleList(EdgeGatedConv(c.hidden_features, c.norm) for _ in range(c.gcn_layers))
        self.head = nn.Linear(c.hidden_features, c.out_dim)
        self.stability = nn.Linear(c.hidden_features, 1) if c.stability_head == "shared" else None
        self.stability_trunk = (
            ALIGNN(replace(c, out_dim=1, final_relu=False, stability_head="none"))
            if c.stability_head == "separate"
            else None
        )
        on_cpu = " on float32 CPU tensors outside autocast, else the PyTorch path" if kernels else ""
        _log.info("ALIGNN convolutions: %s%s (%s)", self.accelerator, on_cpu, why)

    def forward(
        self, batch: GraphBatch, index_cache: dict[str, fused.EdgeIndex] | None = None
    ) -> torch.Tensor:
        """``index_cache``: a dict shared by several models run on the same batch (the members of an ensemble),
        so that the fused kernels' edge indices (a sort of each edge list) are built once for all of them."""
        if self.stability_trunk is not None and index_cache is None:
            index_cache = {}  # the trunk reads the same edge indices
        x = self.atom_embedding(batch.atom_features)
        y = self.edge_embedding(torch.linalg.vector_norm(batch.bond_vec, dim=1))
        z = self.angle_embedding(batch.angle_cos)
        # both edge lists in the form the convolutions of this batch read, built once per batch, not per layer
        n_alignn, n_gcn = len(self.alignn_layers), len(self.gcn_layers)
        if self.accelerator == "fused" and fused.runs_on(y):
            crystal, line = kernel_edges(batch, n_alignn > 0, index_cache)
        else:
            crystal, line = torch_edges(batch, n_alignn > 0)
        # The angle features after the last ALIGNN layer and the bond features after the last GCN layer are never
        # read: skip their (line-graph sized) update.
        for i, layer in enumerate(self.alignn_layers):
            x, y, z = layer(x, y, z, crystal, line, update_angles=i < n_alignn - 1)
        for i, conv in enumerate(self.gcn_layers):
            x, y = conv(x, y, crystal, update_edges=i < n_gcn - 1)
        pooled = mean_pool(x, batch.node_graph, batch.n_graphs)
        out = self.head(pooled).float()  # float32 under autocast too
        out = F.relu(out) if self.config.final_relu else out
        if self.stability is not None:
            return torch.cat([out, self.stability(pooled).float()], dim=1)
        if self.stability_trunk is not None:
            return torch.cat([out, self.stability_trunk(batch, index_cache)], dim=1)
        return out


class EnsembleALIGNN(nn.Module):
    """Average of the predictions of several ALIGNN models of the same architecture (a seed ensemble).

    Members differ only in their training seed (weight init and batch order). Averaging after each member's final
    ReLU keeps the prediction non-negative. ``config`` is the members' architecture.
    """

    def __init__(self, members: list[ALIGNN]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member model")
        configs = {m.config for m in members}
        if len(configs) > 1:
            raise ValueError(f"ensemble members have different architectures: {sorted(map(str, configs))}")
        self.config = members[0].config
        self.members = nn.ModuleList(members)

    def member_outputs(self, batch: GraphBatch) -> torch.Tensor:
        """(n_members, n_graphs, out_dim): every member's prediction (their spread is the ensemble's uncertainty)."""
        cache: dict[str, fused.EdgeIndex] = {}  # the members share the batch's edge indices
        return torch.stack([m(batch, cache) for m in self.members])

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        return self.member_outputs(batch).mean(dim=0)


class MemberOutputs(nn.Module):
    """An ensemble whose forward returns every member's prediction, (n_members, n_graphs, out_dim), instead of
    their mean: what screening runs through :func:`pipeline.nn.inference.iter_predictions` for per-bin spreads."""

    def __init__(self, members: list[ALIGNN]):
        super().__init__()
        self.ensemble = EnsembleALIGNN(list(members))

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        return self.ensemble.member_outputs(batch)


def n_outputs(config: ModelConfig) -> int:
    """Columns of a model's output: the ``out_dim`` head plus one for the stability head."""
    return config.out_dim + int(config.stability_head != "none")


def split_outputs(pred: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(..., n_outputs) model outputs -> (the ``out_dim`` columns, the stability head's column or None); works on
    tensors and NumPy arrays, for one model (B, n) or every member of an ensemble (M, B, n)."""
    if config.stability_head == "none":
        return pred, None
    return pred[..., : config.out_dim], pred[..., config.out_dim]


def mean_pool(x: torch.Tensor, node_graph: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Average the rows of ``x`` per graph (graphs without atoms get zeros)."""
    total = x.new_zeros((n_graphs, x.shape[1])).index_add_(0, node_graph, x)
    count = x.new_zeros(n_graphs).index_add_(0, node_graph, torch.ones_like(node_graph, dtype=x.dtype))
    return total / count.clamp_min(1.0).unsqueeze(1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 (first 16 hex) of a state dict's tensors in key order: the model id written next to predictions."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        buf = io.BytesIO()
        t = state_dict[key].detach().cpu().contiguous()
        buf.write(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        h.update(buf.getvalue())
    return h.hexdigest()[:16]
