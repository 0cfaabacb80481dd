"""ALIGNN model: output contract, non-negativity, invariance to how a crystal graph is numbered, batching; the
PyTorch path's regular-edge-list paths against its general path; ``model.accelerator: torch``."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from pipeline.data.shards import collate
from pipeline.grid import N_BINS
from pipeline.nn.model import ALIGNN, ModelConfig, mean_pool, n_outputs, split_outputs, state_hash
from tests.helpers import CRYSTALS, SMALL, crystal_graph, graph_of, permute_graph, trained_like

#: SMALL as the plain PyTorch model (``model.accelerator: torch``; SMALL's ``auto`` takes the fused kernels where
#: they build)
TORCH = dataclasses.replace(SMALL, accelerator="torch")


def test_output_shape_and_default_head():
    model = trained_like(ALIGNN(SMALL))
    batch = collate([crystal_graph(n) for n in ("Si", "NaCl", "SrTiO3")], ids=["Si", "NaCl", "SrTiO3"])
    out = model(batch)
    assert out.shape == (3, N_BINS)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_scalar_head_for_property_baselines():
    model = trained_like(
        ALIGNN(ModelConfig.from_config({**SMALL.to_dict(), "out_dim": 1, "final_relu": False}))
    )
    out = model(collate([crystal_graph("Si"), crystal_graph("NaCl")]))
    assert out.shape == (2, 1)


def test_stability_head_adds_one_column_and_leaves_the_spectrum_alone():
    plain = trained_like(ALIGNN(TORCH))
    headed = ALIGNN(dataclasses.replace(TORCH, stability_head="shared")).eval()
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == {"stability.weight", "stability.bias"} and not unexpected
    with torch.no_grad():
        headed.stability.bias.fill_(-5.0)  # a value the ReLU of the spectrum head would have clipped
    batch = collate([crystal_graph(n) for n in ("Si", "NaCl", "SrTiO3")])
    out = headed(batch)
    assert out.shape == (3, N_BINS + 1) == (3, n_outputs(headed.config))
    dos, head = split_outputs(out, headed.config)
    torch.testing.assert_close(dos, plain(batch))  # same weights, same spectrum
    assert head.shape == (3,) and (head < 0).all()  # the head's value is not clipped by final_relu
    # the head reads the pooled features: a structure change moves it
    assert not torch.allclose(head[0], head[1])
    assert split_outputs(plain(batch), plain.config)[1] is None


def test_a_separate_stability_trunk_is_its_own_model():
    config = dataclasses.replace(TORCH, stability_head="separate")
    model = trained_like(ALIGNN(config)).train()
    batch = collate([crystal_graph(n) for n in ("Si", "NaCl", "SrTiO3")])
    out = model(batch)
    dos, head = split_outputs(out, config)
    assert out.shape == (3, N_BINS + 1)
    # the trunk is a plain one-value ALIGNN of the same architecture, without the final ReLU
    trunk = model.stability_trunk
    assert trunk.config == dataclasses.replace(TORCH, out_dim=1, final_relu=False)
    model.eval()
    out = model(batch)
    torch.testing.assert_close(out[:, -1], trunk(batch)[:, 0])
    plain = ALIGNN(TORCH).eval()
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("stability_trunk.")}
    )
    torch.testing.assert_close(out[:, :N_BINS], plain(batch))
    # a loss on the head alone trains the trunk alone
    model.train()
    model(batch)[:, -1].sum().backward()
    never_read = ("alignn_layers.1.line.norm_edges.", "gcn_layers.1.norm_edges.")  # as for the plain model
    for name, p in model.named_parameters():
        if name.removeprefix("stability_trunk.").startswith(never_read):
            continue
        assert (p.grad is not None and p.grad.abs().sum() > 0) == name.startswith("stability_trunk."), name


def test_model_files_without_the_head_key_read_as_no_head():
    recorded = SMALL.to_dict()
    assert "stability_head" not in recorded  # off: model files keep what they recorded before the key existed
    assert ModelConfig.from_dict(recorded).stability_head == "none"
    for kind in ("shared", "separate"):
        on = dataclasses.replace(SMALL, stability_head=kind).to_dict()
        assert ModelConfig.from_dict(on).stability_head == kind


def test_final_relu_makes_the_dos_non_negative():
    relu = trained_like(ALIGNN(SMALL))
    plain = trained_like(ALIGNN(ModelConfig.from_config({**SMALL.to_dict(), "final_relu": False})))
    plain.load_state_dict(relu.state_dict())
    for model in (relu, plain):
        with torch.no_grad():
            model.head.bias.copy_(torch.linspace(-3, 1, N_BINS))  # push many bins negative
    batch = collate([crystal_graph(n) for n in CRYSTALS])
    raw = plain(batch)
    assert (raw < 0).any(), (
        "without the ReLU some bins must be negative here, else the check below is vacuous"
    )
    clipped = relu(batch)
    assert (clipped >= 0).all()
    torch.testing.assert_close(clipped, torch.relu(raw))


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3"])
def test_prediction_invariant_to_numbering_of_atoms_bonds_and_angles(name):
    model = trained_like(ALIGNN(SMALL))
    batch = collate([crystal_graph(name)])
    ref = model(batch)
    for seed in range(3):
        torch.testing.assert_close(model(permute_graph(batch, seed)), ref, atol=1e-5, rtol=1e-5)


def test_prediction_changes_with_the_structure():
    """Guard against a model that ignores its input (which would pass the invariance tests trivially)."""
    model = trained_like(ALIGNN(SMALL))
    lattice, frac, elements = CRYSTALS["NaCl"]
    squeezed = graph_of(0.9 * np.asarray(lattice), np.asarray(frac, float), elements)
    potassium = graph_of(np.asarray(lattice), np.asarray(frac, float), ["K", "Cl"])
    ref = model(collate([crystal_graph("NaCl")]))
    # An untrained network is only weakly sensitive to geometry (gated means over similar neighbours), but
    # identical inputs give bit-identical outputs, so any difference above float noise shows the input is used.
    assert (ref - model(collate([squeezed]))).abs().max() > 1e-6
    assert (ref - model(collate([potassium]))).abs().max() > 1e-3


def test_batch_equals_per_graph_predictions():
    model = trained_like(ALIGNN(SMALL))
    graphs = [crystal_graph(n) for n in CRYSTALS]
    batched = model(collate(graphs))
    single = torch.cat([model(collate([g])) for g in graphs])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_batch_equals_per_graph_with_layer_norm():
    model = ALIGNN(ModelConfig.from_config({**SMALL.to_dict(), "norm": "layer"})).eval()
    graphs = [crystal_graph(n) for n in CRYSTALS]
    torch.testing.assert_close(
        model(collate(graphs)), torch.cat([model(collate([g])) for g in graphs]), atol=1e-5, rtol=1e-5
    )


def test_mean_pool_averages_per_graph():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    pooled = mean_pool(x, torch.tensor([0, 0, 1]), 3)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0], [10.0, 0.0], [0.0, 0.0]]))


def test_every_parameter_gets_a_gradient():
    model = ALIGNN(SMALL).train()
    batch = collate([crystal_graph(n) for n in ("Si", "NaCl", "SrTiO3")])
    model(batch).sum().backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()}
    # As in ALIGNN, the edge output of the last line-graph and the last crystal-graph convolution is never read.
    assert missing == {
        "alignn_layers.1.line.norm_edges.weight",
        "alignn_layers.1.line.norm_edges.bias",
        "gcn_layers.1.norm_edges.weight",
        "gcn_layers.1.norm_edges.bias",
    }


def test_unknown_model_setting_is_named():
    with pytest.raises(ValueError, match="hiden_features"):
        ModelConfig.from_dict({"hiden_features": 3})


def test_state_hash_tracks_weights():
    a, b = ALIGNN(SMALL), ALIGNN(SMALL)
    b.load_state_dict(a.state_dict())
    assert state_hash(a.state_dict()) == state_hash(b.state_dict())
    with torch.no_grad():
        b.head.bias[0] += 1e-3
    assert state_hash(a.state_dict()) != state_hash(b.state_dict())


@pytest.mark.parametrize("disable", ["regular_fanout", "line_dst_blocks"])
def test_fast_paths_equal_the_general_path(monkeypatch, disable):
    """Broadcast source gathers (regular_fanout) and block destination gathers/scatters of the line graph
    (line_dst_blocks): output and every gradient as on the path without them. These are the PyTorch path's fast
    paths, so the model is built with ``accelerator: torch`` (the fused kernels: tests/test_fused.py)."""
    import pipeline.nn.model as model_module

    batch = collate([crystal_graph(n) for n in CRYSTALS])
    assert model_module.regular_fanout(batch.edge_src, batch.atom_features.shape[0]) == 12
    assert model_module.regular_fanout(batch.line_src, batch.edge_src.numel()) == 12
    assert model_module.regular_fanout(batch.edge_dst, batch.atom_features.shape[0]) == 0
    blocks = model_module.line_dst_blocks(batch.edge_dst, batch.line_src, batch.line_dst, 12)
    assert blocks is not None and torch.equal(blocks, batch.edge_dst)
    shuffled = batch.line_dst[
        torch.randperm(batch.line_dst.numel(), generator=torch.Generator().manual_seed(0))
    ]
    assert model_module.line_dst_blocks(batch.edge_dst, batch.line_src, shuffled, 12) is None
    model = trained_like(ALIGNN(TORCH)).train()
    assert model.accelerator == "torch"

    def run():
        model.zero_grad()
        out = model(batch)
        (out * torch.linspace(0, 1, N_BINS)).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast_out, fast_grads = run()
    if disable == "regular_fanout":
        monkeypatch.setattr(model_module, "regular_fanout", lambda src, n: 0)
    else:
        monkeypatch.setattr(model_module, "line_dst_blocks", lambda *args: None)
    slow_out, slow_grads = run()
    torch.testing.assert_close(fast_out, slow_out, atol=1e-5, rtol=1e-4)
    assert fast_grads.keys() == slow_grads.keys()
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name], atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("blocks", [False, True], ids=["row-destinations", "block-destinations"])
def test_gated_mean_backward_matches_finite_differences(blocks):
    """The hand-written backward of GatedMean against numerical derivatives (float64), on a line-graph-shaped
    edge list: 3 atoms x k=2 bonds, bond a = (i -> j) linking to the 2 bonds of j."""
    from pipeline.nn.model import GatedMean

    k, d = 2, 3
    edge_dst = torch.tensor([1, 2, 0, 2, 1, 0])  # bond a ends at atom edge_dst[a]
    line_dst = (edge_dst.unsqueeze(1) * k + torch.arange(k)).reshape(-1)
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(edge_dst.numel() * k, d, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(edge_dst.numel(), d, dtype=torch.float64, generator=gen, requires_grad=True)
    args = (k, line_dst, edge_dst if blocks else None)
    assert torch.autograd.gradcheck(lambda m, v: GatedMean.apply(m, v, *args), (m, v))
    # and the forward is the plain formula
    s = torch.sigmoid(m)
    msg = s * v.repeat_interleave(k, dim=0)
    expected = torch.zeros(6, d, dtype=torch.float64).index_add_(0, line_dst, msg) / (
        torch.zeros(6, d, dtype=torch.float64).index_add_(0, line_dst, s) + 1e-6
    )
    torch.testing.assert_close(GatedMean.apply(m, v, *args), expected)


def test_the_torch_accelerator_is_the_plain_model_and_never_builds_kernels(monkeypatch, caplog):
    """``model.accelerator: torch`` resolves without looking for a compiler and says so once, at INFO."""
    from pipeline.nn import fused

    monkeypatch.setattr(fused, "load_library", lambda: pytest.fail("the torch model looked for the kernels"))
    with caplog.at_level(logging.INFO, logger="pipeline.nn.model"):
        model = ALIGNN(TORCH)
    assert model.accelerator == "torch"
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.nn.model"] == [
        "ALIGNN convolutions: torch (model.accelerator: torch)"
    ]
    out = trained_like(model)(collate([crystal_graph("NaCl")]))
    assert out.shape == (1, N_BINS) and torch.isfinite(out).all()


def test_layer_norm_with_auto_is_the_plain_model():
    model = ALIGNN(ModelConfig.from_config({**SMALL.to_config(), "norm": "layer", "accelerator": "auto"}))
    assert model.accelerator == "torch"
