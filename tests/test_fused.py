"""Fused CPU kernels (pipeline.nn.fused, ``model.accelerator: fused``): same numbers as the plain PyTorch model
(``model.accelerator: torch``), for outputs, every gradient and the BatchNorm running statistics; independent of the
thread count; C signatures declared so that a misordered call fails loudly; ``auto`` without a compiler builds the
PyTorch model, ``fused`` refuses, naming why."""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import platform
import re
import stat
import subprocess
import sys

import pytest
import torch

from pipeline.data.shards import collate
from pipeline.grid import N_BINS
from pipeline.nn import fused
from pipeline.nn.model import ALIGNN, ModelConfig
from tests.helpers import CRYSTALS, SMALL, crystal_graph, permute_graph, trained_like, with_accelerator

pytestmark = pytest.mark.skipif(fused.load_library() is None, reason="no C compiler for the fused kernels")

#: the numerical tests run against the kernels built for the x86-64-v3 baseline (AVX2, what any x86 cluster node
#: builds) and for this CPU: GCC's tuning for a CPU decides e.g. whether division goes through a reciprocal
#: estimate, so the two builds round differently and both must stay within the tolerances
ISAS = ["x86-64-v3", "native"] if platform.machine() in ("x86_64", "AMD64") else ["native"]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # model initialisation draws from the global generator


@pytest.fixture(params=ISAS)
def kernels(request, monkeypatch):
    """The kernels built for one -march, installed as this process's kernels for the test."""
    lib = fused.build_library(request.param)
    monkeypatch.setattr(fused, "_lib", lib)
    return lib


def _step(model: ALIGNN, batch, accelerator: str):
    """Output, parameter gradients and buffers after one training-mode forward/backward of a copy of ``model``
    built with ``accelerator``."""
    model = with_accelerator(model, accelerator)
    assert model.accelerator == accelerator
    out = model(batch)
    (out * torch.linspace(0, 1, N_BINS)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads, {n: b.clone() for n, b in model.named_buffers()}


def _crystals_batch():
    return collate([crystal_graph(n) for n in CRYSTALS])


@pytest.mark.parametrize("numbering", ["as_built", "permuted"])
@pytest.mark.parametrize("edge_gemm", ["torch", "blocked"])
def test_training_step_equals_pytorch_path(kernels, monkeypatch, numbering, edge_gemm):
    """'permuted' renumbers atoms, bonds and angles, so the edge lists are unsorted (the kernels' CSR orders).
    'blocked': the edge linear map through the kernels' row-blocked BLAS calls, which otherwise start at paper
    batch sizes only."""
    if edge_gemm == "blocked" and fused.blas() is None:
        pytest.skip("torch is not linked against MKL here")
    monkeypatch.setattr(fused, "BLOCKED_GEMM_MIN_ROWS", 0 if edge_gemm == "blocked" else 10**12)
    batch = _crystals_batch()
    if numbering == "permuted":
        batch = permute_graph(batch, seed=3)
    model = trained_like(ALIGNN(SMALL)).train()
    ref_out, ref_grads, ref_buffers = _step(model, batch, "torch")
    out, grads, buffers = _step(model, batch, "fused")
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    assert grads.keys() == ref_grads.keys()
    for name, ref in ref_grads.items():
        # biases right before a BatchNorm have a zero gradient in exact arithmetic: compare on the scale of the
        # layer's weight gradient instead of their own float noise
        scale = ref_grads[name.replace(".bias", ".weight")].abs().max() if name.endswith("0.bias") else 1.0
        torch.testing.assert_close(
            grads[name],
            ref,
            atol=1e-4 * float(scale) + 1e-7,
            rtol=1e-3,
            msg=lambda m, name=name: f"{name}: {m}",
        )
    for name, ref in ref_buffers.items():
        torch.testing.assert_close(buffers[name], ref, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("edge_gemm", ["torch", "blocked"])
@pytest.mark.parametrize("grad", [False, True])
def test_eval_prediction_equals_pytorch_path(kernels, monkeypatch, edge_gemm, grad):
    """Without autograd the convolutions take fused.edge_conv_inference; with it, FusedEdgeConv with running
    statistics."""
    if edge_gemm == "blocked" and fused.blas() is None:
        pytest.skip("torch is not linked against MKL here")
    monkeypatch.setattr(fused, "BLOCKED_GEMM_MIN_ROWS", 0 if edge_gemm == "blocked" else 10**12)
    batch = _crystals_batch()
    model = trained_like(ALIGNN(SMALL), seed=1)
    with torch.set_grad_enabled(grad):
        ref = with_accelerator(model, "torch")(batch)
        out = with_accelerator(model, "fused")(batch)
    assert ref.abs().max() > 0.01  # a real prediction, not all zeros after the ReLU
    assert out.requires_grad == grad
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_kernels_do_not_depend_on_the_thread_count(kernels):
    """Every kernel, called directly with 1 and with 2 threads on the crystals' line graph, gives bitwise equal
    results (sums onto a node and per-column sums run in a fixed order; the blocked edge GEMMs use fixed row
    blocks and a fixed split of dL/dW). Node-side inputs and gradients are column blocks of a (n, 4 d) projection,
    as in the model. torch's own matrix products, whose rounding may depend on the thread count, are not part of
    this claim."""
    lib = kernels
    batch = _crystals_batch()
    index = fused.EdgeIndex.build(batch.line_src, batch.line_dst, batch.edge_src.numel())
    t, d, n = batch.line_src.numel(), 48, index.n_nodes
    gen = torch.Generator().manual_seed(0)
    m, g, y = (torch.randn(t, d, generator=gen) for _ in range(3))
    proj, gsum, gh, x = (
        torch.randn(n, 4 * d, generator=gen),
        *(torch.randn(n, d, generator=gen) for _ in range(3)),
    )
    w, bias = torch.randn(d, d, generator=gen) / d**0.5, torch.randn(d, generator=gen)
    src_gate, v, dst_gate, self_update = proj.split(d, dim=1)
    vec = [
        torch.rand(d, generator=gen) + 0.5 for _ in range(7)
    ]  # scale, shift, mean, invstd, coef, two means

    def run(threads: int) -> list[torch.Tensor]:
        h, denom, u, u_only = (torch.empty(n, d) for _ in range(4))
        stats, sums = torch.zeros(2, d, dtype=torch.float64), torch.zeros(2, d, dtype=torch.float64)
        colsum = torch.zeros(2, d, dtype=torch.float64)
        scratch = torch.empty(t // fused.EDGE_BLOCK + n // fused.NODE_BLOCK + 2, 2, d, dtype=torch.float64)
        grad_m, grad_proj = torch.empty(t, d), torch.empty(n, 4 * d)
        grad_src, grad_v, grad_dst, _ = grad_proj.split(d, dim=1)
        lib.gate_forward(
            n, d, 4 * d, m, v, self_update, index.src, index.dst_order, index.dst_offsets, 1e-6,
            h, denom, u, stats, scratch, None, None, None, None, threads,
        )  # fmt: skip
        lib.gate_forward(
            n, d, 4 * d, m, v, self_update, index.src, index.dst_order, index.dst_offsets, 1e-6,
            None, None, u_only, None, None, None, None, None, None, threads,
        )  # fmt: skip
        x_new = torch.empty(n, d)  # inference: the node update x + SiLU(BN(u)) in the same pass
        lib.gate_forward(
            n, d, 4 * d, m, v, self_update, index.src, index.dst_order, index.dst_offsets, 1e-6,
            None, None, None, None, None, x, vec[2], vec[3], x_new, threads,
        )  # fmt: skip
        lib.norm_silu_backward_sums(t, d, m, g, *vec[:4], sums, scratch, threads)
        lib.column_stats(t, d, m, colsum, scratch, threads)
        lib.edge_backward(
            n, d, 4 * d, m, g, v, index.src_order, index.src_offsets, index.dst, gsum, gh,
            *vec, grad_m, grad_v, grad_src, threads,
        )  # fmt: skip
        lib.segment_sum(n, d, 4 * d, grad_m, index.dst_order, index.dst_offsets, grad_dst, threads)
        out = [h, denom, u, u_only, stats, sums, colsum, grad_m, grad_proj[:, : 3 * d], x_new]
        if fused.blas() is not None:
            m_lin, grad_y, grad_w = torch.empty(t, d), torch.empty(t, d), torch.empty(d, d)
            parts = fused.weight_grad_parts(threads)
            assert parts == fused.weight_grad_parts(1)  # the same row ranges for 1 and 2 threads
            partial = torch.empty(parts, d, d)
            lib.edge_linear_forward(
                *fused.blas(), t, d, 4 * d, index.src, index.dst, src_gate, dst_gate, bias, y, w,
                m_lin, None, None, None, threads,
            )  # fmt: skip
            y_new = torch.empty(t, d)  # and with the edge update of eval mode
            lib.edge_linear_forward(
                *fused.blas(), t, d, 4 * d, index.src, index.dst, src_gate, dst_gate, bias, y, w,
                m_lin, vec[0], vec[1], y_new, threads,
            )  # fmt: skip
            lib.edge_linear_backward(
                *fused.blas(),
                t,
                d,
                grad_m,
                g,
                y,
                w,
                grad_y,
                grad_w,
                partial,
                parts,
                threads,
            )
            torch.testing.assert_close(y_new, y + torch.nn.functional.silu(m_lin * vec[0] + vec[1]))
            out += [y_new, m_lin, grad_y, grad_w]
        return out

    one, two = run(1), run(2)
    for a, b in zip(one, two, strict=True):
        assert torch.isfinite(a).all() and torch.equal(a, b)
    torch.testing.assert_close(one[6][0], m.double().sum(0))  # the column sums are the column sums
    torch.testing.assert_close(one[3], one[2])  # u is the same whether h and the denominators are kept or not
    torch.testing.assert_close(one[9], x + torch.nn.functional.silu(one[2] * vec[2] + vec[3]))
    if fused.blas() is not None:  # and the blocked GEMMs compute what torch's do
        src, dst = index.src, index.dst
        gates = proj[src, :d] + proj[dst, 2 * d : 3 * d] + bias
        torch.testing.assert_close(one[-3], torch.addmm(gates, y, w.t()), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(one[-2], torch.addmm(g, one[7], w), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(one[-1], one[7].t() @ y, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_batchnorm_statistics_of_the_gate_pass(kernels, offset):
    """gate_forward's column sums of m and m^2 (float within node blocks, double across): the variance they give
    matches float64 also for columns whose mean is far larger than their spread (the sums are shifted by row 0)."""
    lib = kernels
    batch = _crystals_batch()
    index = fused.EdgeIndex.build(batch.line_src, batch.line_dst, batch.edge_src.numel())
    t, d, n = batch.line_src.numel(), 32, index.n_nodes
    gen = torch.Generator().manual_seed(1)
    m = torch.randn(t, d, generator=gen) * 0.01 + offset
    proj = torch.randn(n, 4 * d, generator=gen)
    stats = torch.zeros(2, d, dtype=torch.float64)
    scratch = torch.empty(n // fused.NODE_BLOCK + 1, 2, d, dtype=torch.float64)
    h, denom, u = (torch.empty(n, d) for _ in range(3))
    lib.gate_forward(
        n, d, 4 * d, m, proj[:, d : 2 * d], proj[:, 3 * d :], index.src, index.dst_order,
        index.dst_offsets, 1e-6, h, denom, u, stats, scratch, None, None, None, None, 1,
    )  # fmt: skip
    exact = m.double()
    mean, var = stats[0] / t, stats[1] / t - (stats[0] / t) ** 2
    torch.testing.assert_close(mean, exact.mean(0), rtol=0.0, atol=1e-6)  # 1e-4 of the spread (0.01)
    torch.testing.assert_close(var, exact.var(0, unbiased=False), rtol=1e-4, atol=0.0)


def test_norm_silu_matches_float64_over_the_whole_float_range(kernels):
    """exp is a polynomial approximation in the kernels and sigmoid's division may be a reciprocal estimate:
    SiLU(BatchNorm(x)) and its gradient against float64 for |x| up to 90 (sigmoid saturates there; the
    approximation clamps its argument). Near saturation 1 - sigmoid(u) must not be formed by cancellation: one ulp
    of sigmoid there changed the gradient by u ulps (1.9e-5 for the x86-64-v3 build; torch's own float32 SiLU
    gradient is 2e-6 off)."""
    x = torch.linspace(-90.0, 90.0, 4001).reshape(-1, 1).repeat(1, 16)
    x[:, 1::2] *= 0.01  # columns of small values too
    norm = torch.nn.BatchNorm1d(16).eval()  # identity up to eps: running mean 0, var 1
    xa, xd = x.clone().requires_grad_(), x.double().requires_grad_()
    out = fused.norm_silu(xa, norm)
    ref = torch.nn.functional.silu((xd - norm.running_mean.double()) / (1.0 + norm.eps) ** 0.5)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=2e-6)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out.backward(g)
    ref.backward(g.double())
    torch.testing.assert_close(xa.grad.double(), xd.grad, atol=1e-6, rtol=2e-6)


def test_loading_the_kernels_keeps_denormals_for_the_whole_process():
    """The kernels use fast reciprocal maths through pragmas, not -ffast-math, whose crtfastmath.o would switch
    the process (torch included) to flush-to-zero when the library is loaded."""
    code = (
        "import torch; from pipeline.nn import fused; assert fused.load_library() is not None; "
        "x = torch.tensor([1e-40]); print((x * 1.0).item())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 0.0


def test_without_a_compiler_auto_builds_the_pytorch_model_and_fused_refuses(monkeypatch, tmp_path):
    batch = _crystals_batch()
    model = trained_like(ALIGNN(SMALL), seed=2)
    assert model.accelerator == "fused"
    with torch.no_grad():
        ref = model(batch)
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_load_error", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PHONON_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="auto, using the plain PyTorch model.*no-such-cc.*not found"):
        plain = with_accelerator(model, "auto")
    assert plain.accelerator == "torch"
    with pytest.raises(fused.KernelsUnavailable, match="model.accelerator: fused.*no-such-cc.*not found"):
        with_accelerator(model, "fused")
    with torch.no_grad():
        out = plain(batch)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_kernels_are_built_once_per_cpu_and_source(monkeypatch, tmp_path):
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_load_error", None)
    monkeypatch.setenv("PHONON_KERNEL_CACHE", str(tmp_path))
    assert fused.load_library() is not None
    built = sorted((tmp_path / "kernels").glob("edge_update-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(fused, "_lib", None)
    assert fused.load_library() is not None
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert (
        not list((tmp_path / "kernels").glob("*.so.tmp*"))
        and len(list((tmp_path / "kernels").iterdir())) == 1
    )


def test_an_unusable_cache_directory_falls_back_to_the_temp_dir(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_load_error", None)
    monkeypatch.setenv("PHONON_KERNEL_CACHE", str(blocker / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(fused.tempfile, "tempdir", None)  # re-read TMPDIR
    (tmp_path / "tmp").mkdir()
    assert fused.load_library() is not None
    assert list((tmp_path / "tmp").glob("phonon-pipeline-*/kernels/edge_update-*.so"))


def _fresh_kernels(monkeypatch, cache) -> None:
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_load_error", None)
    monkeypatch.setenv("PHONON_KERNEL_CACHE", str(cache))


def test_a_cached_library_others_can_write_is_rebuilt_not_loaded(monkeypatch, tmp_path):
    """A shared object is code: one that another user could have replaced is never loaded."""
    _fresh_kernels(monkeypatch, tmp_path)
    assert fused.load_library() is not None
    (built,) = (tmp_path / "kernels").glob("edge_update-*.so")
    built.chmod(0o666)
    planted = built.stat().st_ino
    _fresh_kernels(monkeypatch, tmp_path)
    with pytest.warns(RuntimeWarning, match="writable by other users"):
        assert fused.load_library() is not None
    assert built.stat().st_ino != planted  # a new build replaced it
    assert not built.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert stat.S_IMODE((tmp_path / "kernels").stat().st_mode) == 0o700


def test_a_temp_fallback_folder_others_can_write_is_refused(monkeypatch, tmp_path):
    """The temp-dir fallback (home cache unusable) lives in /tmp, where anyone may create the folder first: a
    world-writable one is refused, and ``auto`` builds the plain PyTorch model."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    _fresh_kernels(monkeypatch, blocker / "cache")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(fused.tempfile, "tempdir", None)  # re-read TMPDIR
    squatted = tmp_path / "tmp" / f"phonon-pipeline-{os.getuid()}"
    squatted.mkdir(parents=True)
    squatted.chmod(0o777)
    assert fused.load_library() is None
    assert "writable by other users" in fused.load_error()
    with pytest.warns(RuntimeWarning, match="writable by other users"):
        assert fused.resolve_accelerator("auto", "batch")[0] == "torch"
    assert not list(squatted.rglob("*.so"))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root"
)
def test_a_cache_folder_owned_by_another_user_is_refused(monkeypatch, tmp_path):
    _fresh_kernels(monkeypatch, tmp_path)
    (tmp_path / "kernels").mkdir(mode=0o700)
    os.chown(tmp_path / "kernels", 65534, 65534)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(fused.tempfile, "tempdir", None)
    (tmp_path / "tmp").mkdir()
    assert fused.load_library() is not None  # from the private temp fallback, not from the foreign folder
    assert not list((tmp_path / "kernels").iterdir())
    assert str(tmp_path / "tmp") in fused._lib.path
    assert stat.S_IMODE((tmp_path / "tmp" / f"phonon-pipeline-{os.getuid()}").stat().st_mode) == 0o700


def test_the_build_target_is_part_of_the_cache_key(monkeypatch, tmp_path):
    _fresh_kernels(monkeypatch, tmp_path)
    fused.build_library("x86-64-v3") if "x86-64-v3" in ISAS else None
    fused.build_library("native")
    names = sorted(p.name for p in (tmp_path / "kernels").glob("edge_update-*.so"))
    assert len(names) == len(ISAS), names
    if "x86-64-v3" in ISAS:
        assert any(n.startswith("edge_update-x86-64-v3-") for n in names)


def test_ensemble_members_share_one_edge_index_per_batch(monkeypatch):
    """The fused kernels' CSR views (a sort of each edge list) are built once per batch for all members, and the
    ensemble still predicts its members' mean."""
    from pipeline.nn.model import EnsembleALIGNN

    batch = _crystals_batch()
    members = [trained_like(ALIGNN(SMALL), seed=s) for s in range(3)]
    with torch.no_grad():
        each = torch.stack([m(batch) for m in members]).mean(0)
    calls = []
    build = fused.EdgeIndex.build
    monkeypatch.setattr(fused.EdgeIndex, "build", lambda *a: calls.append(1) or build(*a))
    with torch.no_grad():
        out = EnsembleALIGNN(members).eval()(batch)
    assert len(calls) == 2  # the crystal graph and the line graph, not 2 per member
    torch.testing.assert_close(out, each)


def test_the_accelerator_is_resolved_once_and_logged(caplog):
    """model.accelerator -> ALIGNN.accelerator at build time, one INFO line per model; the kernels are then used on
    float32 CPU features without any further switch."""
    with caplog.at_level(logging.INFO, logger="pipeline.nn.model"):
        models = {
            a: ALIGNN(ModelConfig.from_config({**SMALL.to_config(), "accelerator": a}))
            for a in fused.ACCELERATORS
        }
    assert {a: m.accelerator for a, m in models.items()} == {
        "auto": "fused",
        "fused": "fused",
        "torch": "torch",
    }
    lines = [r for r in caplog.records if r.name == "pipeline.nn.model"]
    assert len(lines) == 3 and all(r.levelno == logging.INFO for r in lines)
    assert "fused" in lines[1].getMessage() and fused.load_library().path in lines[1].getMessage()
    assert "torch (model.accelerator: torch)" in lines[2].getMessage()


def test_fused_refuses_a_model_the_kernels_cannot_implement():
    """The kernels fold BatchNorm: with LayerNorm ``fused`` is an error naming why, ``auto`` the PyTorch model."""
    layer = {**SMALL.to_config(), "norm": "layer"}
    with pytest.raises(fused.KernelsUnavailable, match="BatchNorm only.*'layer'"):
        ALIGNN(ModelConfig.from_config({**layer, "accelerator": "fused"}))
    assert ALIGNN(ModelConfig.from_config({**layer, "accelerator": "auto"})).accelerator == "torch"


def test_a_fused_model_runs_other_tensors_on_its_pytorch_path(monkeypatch):
    """The kernels take float32 CPU tensors; given others (CUDA on a GPU node; float64 here, which no kernel
    takes either) a fused model runs its PyTorch path for that batch, with the same result."""
    batch = _crystals_batch()
    model = trained_like(ALIGNN(SMALL), seed=3)
    assert model.accelerator == "fused"
    with torch.no_grad():
        ref = with_accelerator(model, "torch").double()(_as_double(batch))

    def refuse(*args, **kwargs):
        raise AssertionError("a float32 kernel ran on float64 features")

    for name in ("FusedEdgeConv", "FusedNormSiLU"):
        monkeypatch.setattr(getattr(fused, name), "apply", refuse)
    monkeypatch.setattr(fused, "edge_conv_inference", refuse)
    with torch.no_grad():
        out = model.double()(_as_double(batch))
    torch.testing.assert_close(out, ref)


def _as_double(batch):
    return dataclasses.replace(
        batch,
        atom_features=batch.atom_features.double(),
        bond_vec=batch.bond_vec.double(),
        angle_cos=batch.angle_cos.double(),
    )


#: C scalar and pointer types of kernels/edge_update.c -> what fused._SIGNATURES must declare for them
_C_TYPES = {
    "int64_t": ctypes.c_int64, "int": ctypes.c_int, "float": ctypes.c_float, "double": ctypes.c_double,
    "sgemm_fn": ctypes.c_void_p, "set_threads_fn": ctypes.c_void_p,
    "float *": torch.float32, "double *": torch.float64, "int64_t *": torch.int64,
}  # fmt: skip


def test_every_kernel_signature_declares_the_c_parameter_types():
    """_SIGNATURES, parameter by parameter, against the prototypes in edge_update.c: sizes as int64, flags and
    thread counts as int, eps/momentum as float/double, arrays as tensors of their C element type."""
    source = fused.SOURCE.read_text()
    prototypes = dict(re.findall(r"^void (\w+)\(([^)]*)\)\s*\{", source, flags=re.M))
    assert set(prototypes) == set(fused._SIGNATURES)
    for name, params in prototypes.items():
        declared = fused._SIGNATURES[name]
        params = [" ".join(p.split()) for p in params.split(",")]
        assert len(params) == len(declared), name
        for param, argtype in zip(params, declared, strict=True):
            ctype = re.sub(r"\b(const|restrict)\b", "", param).rsplit(" ", 1)[0].strip()
            ctype = " ".join(ctype.split()) + (" *" if "*" in param and "*" not in ctype else "")
            ctype = ctype.replace(" *", "*").replace("*", " *")
            want = _C_TYPES[ctype]
            got = argtype.dtype if isinstance(argtype, fused._Array) else argtype
            assert got is want, f"{name}: {param!r} declared as {argtype!r}"


def test_a_misordered_or_wrong_arity_call_fails_loudly():
    """Sizes swapped with arrays, an int address for a tensor, a float64 tensor for a float32 one, a missing or
    surplus argument: each raises ctypes.ArgumentError before any C code runs (in a child process, so that a
    crash would show as one instead of taking the test run down)."""
    code = """
import ctypes, torch
from pipeline.nn import fused
lib = fused.load_library()
t, d = 8, 4
x, out, scale, shift = torch.randn(t, d), torch.empty(t, d), torch.ones(d), torch.zeros(d)
lib.norm_silu(t, d, x, scale, shift, None, out, 1)  # the right call
assert torch.allclose(out, torch.nn.functional.silu(x))
bad = {
    "sizes after the arrays": (x, scale, t, d, shift, None, out, 1),
    "an address for a tensor": (t, d, x.data_ptr(), scale, shift, None, out, 1),
    "float64 for float32": (t, d, x.double(), scale, shift, None, out, 1),
    "NULL where none is allowed": (t, d, x, scale, shift, None, None, 1),
    "a missing argument": (t, d, x, scale, shift, out, 1),
    "a surplus argument": (t, d, x, scale, shift, None, out, 1, 1),
}
for why, args in bad.items():
    try:
        lib.norm_silu(*args)
    except ctypes.ArgumentError as err:
        print(why, "->", err)
    else:
        raise SystemExit(f"accepted: {why}")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("->") == 6, run.stdout
    assert "norm_silu takes 8 arguments (7 given)" in run.stdout
    assert "expected a CPU torch.float32 tensor" in run.stdout
