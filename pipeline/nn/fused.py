"""Fused CPU kernels for the edge side of :class:`pipeline.nn.model.EdgeGatedConv` (training and inference): the
``fused`` implementation of ``model.accelerator``.

The plain PyTorch model (:mod:`pipeline.nn.model`) is the model; this module is an explicit swap, chosen once
when a model is built: :func:`resolve_accelerator` turns ``model.accelerator`` (auto | fused | torch) into
"fused" or "torch" (``fused`` raises :class:`KernelsUnavailable`, naming why, where the kernels cannot be built or
cannot implement the model), and a fused model sends each convolution to :func:`edge_gated_conv` and each
BatchNorm+SiLU to :func:`norm_silu`. The kernels take float32 CPU tensors outside ``torch.autocast``
(:func:`runs_on`); a fused model given anything else (CUDA tensors, bf16 autocast) runs its PyTorch path for that
batch. Results agree with the PyTorch path to float32 rounding (``tests/test_fused.py``); the kernels themselves
give the same bits for any number of threads. Measured speeds (fused vs PyTorch, per preset, training and
inference): ``benchmarks/results/conv_paths.json``.

Why hand-written: on a CPU the edge tensors of the line graph (T = atoms * k^2 rows, ~64 MB each for a paper
batch) make training memory-bound, and eager PyTorch runs every elementwise step (sigmoid, gated products, the
scatters, BatchNorm statistics and normalisation, SiLU, the residual, and each of their backward steps) as its
own pass over memory: about 50 reads and writes of (T, d) tensors per line-graph convolution per step.
``torch.compile`` of these pieces was slower here (dynamic shapes, scatters), and no maintained library offers
this fusion for CPU. The kernels in ``kernels/edge_update.c`` do the same maths in 6 passes (forward 3,
backward 3, besides the matrix products) and recompute sigmoid(m) and the normalised activations instead of
storing them. The node-side projection's four column blocks are read in place and dL/dproj is written whole.

On line graphs (from ``BLOCKED_GEMM_MIN_ROWS`` edges) the edge linear map W runs as single-threaded BLAS calls on
blocks of 512 rows, one block per thread at a time, next to the row-wise work on the same rows (the gathered gates
before it; the residual copy beside dL/dy = residual + dL/dm W; dL/dW summed over 16 fixed row ranges), rather
than as torch's multi-threaded GEMMs (both measured: ``fused[torch-gemm]`` in
``benchmarks/results/conv_paths.json``). The BLAS is the MKL that torch's x86 wheels link (``sgemm_`` and
``mkl_set_num_threads_local`` looked up in ``libtorch_cpu``); without it torch's GEMMs are used. Without autograd
(inference) a convolution is one call, :func:`edge_conv_inference`, that also folds the node update's
BatchNorm+SiLU into the gated-mean pass.

The C file is compiled on first use with the system C compiler (``$CC``, default ``cc``; flags ``-O3
-march=native -ffp-contract=fast -fopenmp``, ``-march`` from ``$PHONON_KERNEL_MARCH`` when set, e.g. x86-64-v3;
with GCC, pragmas in the file let sigmoid divide by reciprocal estimate + Newton step, not -ffast-math, which
would set flush-to-zero for the whole process; 1 - sigmoid is never formed by cancellation, so the rounding of
that estimate, which differs between CPU tunings, stays at float32 rounding in every result) into a per-user
cache (``$PHONON_KERNEL_CACHE``, default ``~/.cache/phonon-pipeline``), keyed by the source, compiler, flags, the
target as the compiler resolves it (logged at load) and the CPU's instruction-set flags, so nodes of a
heterogeneous cluster never share a binary built for another CPU. Cache folders are created 0700, and a folder or
library that is not this user's or that others can write is never loaded from. Loading uses ctypes (no torch
headers, so the build is quick), with every C function's parameters declared (:data:`_SIGNATURES`: sizes as
int64, arrays as CPU tensors of their C element type, checked per call), so that a call with misordered or
missing arguments raises ``ctypes.ArgumentError`` instead of reading the wrong memory.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

SOURCE = Path(__file__).with_name("kernels") / "edge_update.c"
#: -march of the build: "native" (this CPU) unless $PHONON_KERNEL_MARCH names another GCC/Clang target, e.g.
#: x86-64-v3 (AVX2) to run the kernels a cluster's oldest nodes would build; the tests run both
MARCH_ENV = "PHONON_KERNEL_MARCH"
BASE_FLAGS = ["-O3", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared", "-std=c11"]
GATE_EPS = 1e-6  # as pipeline.nn.model.GATE_EPS

_lib: Kernels | None = None
_load_error: str | None = None
_log = logging.getLogger(__name__)


class _Array:
    """ctypes argument type of a C array parameter (``const float *m``, ``int64_t *src``, ...): a CPU tensor of
    ``dtype`` whose last dimension is contiguous (a column block of a wider matrix is fine: its row stride is a
    separate argument), passed as its data pointer; ``None`` (NULL) only where the C code accepts NULL. Anything
    else (an address as an int, a size, a tensor of another dtype or on another device) raises
    ``ctypes.ArgumentError`` before any C code runs, so a misordered call fails loudly instead of reading the wrong
    memory."""

    def __init__(self, dtype: torch.dtype, ctype: type, nullable: bool = False):
        self.dtype, self.ctype, self.nullable = dtype, ctype, nullable
        self.__name__ = f"{'nullable ' if nullable else ''}{ctype.__name__} *"

    def from_param(self, t: object) -> ctypes.c_void_p | None:
        if t is None and self.nullable:
            return None
        if not isinstance(t, torch.Tensor) or t.dtype is not self.dtype or not t.is_cpu:
            raise TypeError(
                f"expected a CPU {self.dtype} tensor{' or None' if self.nullable else ''}, got {_what(t)}"
            )
        if t.dim() and t.stride(-1) != 1 and t.shape[-1] > 1:
            raise TypeError(f"expected rows of contiguous {self.dtype} values, got strides {t.stride()}")
        return ctypes.c_void_p(t.data_ptr())

    def __repr__(self) -> str:
        return self.__name__


def _what(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.device.type} {value.dtype} tensor"
    return f"{type(value).__name__} {value!r}"[:80]


_f32, _f64, _idx = (
    _Array(torch.float32, ctypes.c_float),
    _Array(torch.float64, ctypes.c_double),
    _Array(torch.int64, ctypes.c_int64),
)
_f32_, _f64_, _idx_ = (_Array(a.dtype, a.ctype, nullable=True) for a in (_f32, _f64, _idx))  # NULL allowed
_i64, _int, _float, _double = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_double
_fn = ctypes.c_void_p  # a C function's address (BLAS's sgemm_, MKL's mkl_set_num_threads_local)

#: The C signatures of kernels/edge_update.c, parameter by parameter (restype void for all). Keep in step with it.
_SIGNATURES: dict[str, list] = {
    # T, d, ld, src, dst, src_gate, dst_gate, bias, m, threads
    "edge_preactivation": [_i64, _i64, _i64, _idx, _idx, _f32, _f32, _f32, _f32, _int],
    # n_nodes, d, ld, m, v, self, src, dst_order, dst_offsets, eps, h, denom, u, col_stats, partial, x, node_scale,
    # node_shift, x_new, threads
    "gate_forward": [_i64, _i64, _i64, _f32, _f32, _f32, _idx, _idx_, _idx, _float, _f32_, _f32_, _f32_, _f64_,
                     _f64_, _f32_, _f32_, _f32_, _f32_, _int],
    # T, d, m, g, scale, shift, mean, invstd, sums, partial, threads
    "norm_silu_backward_sums": [_i64, _i64, _f32, _f32, _f32, _f32, _f32, _f32, _f64, _f64, _int],
    # n_nodes, d, ld, m, g, v, src_order, src_offsets, dst, gsum, gh, scale, shift, mean, invstd, coef, gu_mean,
    # gux_mean, grad_m, grad_v, grad_src, threads
    "edge_backward": [_i64, _i64, _i64, _f32, _f32_, _f32, _idx_, _idx, _idx, _f32, _f32, _f32_, _f32_, _f32_,
                      _f32_, _f32_, _f32_, _f32_, _f32, _f32, _f32, _int],
    # n_nodes, d, ld, rows, order, offsets, out, threads
    "segment_sum": [_i64, _i64, _i64, _f32, _idx_, _idx, _f32, _int],
    # T, d, x, sums, partial, threads
    "column_stats": [_i64, _i64, _f32, _f64, _f64, _int],
    # T, d, x, scale, shift, y (residual), out, threads
    "norm_silu": [_i64, _i64, _f32, _f32, _f32, _f32_, _f32, _int],
    # T, d, x, g, scale, shift, mean, invstd, coef, gu_mean, gux_mean, grad_x, threads
    "norm_silu_backward": [_i64, _i64, _f32, _f32, _f32, _f32, _f32, _f32, _f32, _f32, _f32, _f32, _int],
    # d, T, stats, gamma, beta, running_mean, running_var, momentum, eps, terms
    "norm_terms": [_i64, _i64, _f64_, _f32, _f32, _f32, _f32, _double, _double, _f32],
    # d, T, sums, gamma, terms, training, out
    "norm_backward_terms": [_i64, _i64, _f64, _f32, _f32, _int, _f32],
    # sgemm, set_threads, T, d, ld, src, dst, src_gate, dst_gate, bias, y, w, m, scale, shift, y_new, threads
    "edge_linear_forward": [_fn, _fn, _i64, _i64, _i64, _idx, _idx, _f32, _f32, _f32, _f32, _f32, _f32, _f32_,
                            _f32_, _f32_, _int],
    # sgemm, set_threads, T, d, grad_m, residual, y, w, grad_y, grad_w, partial, parts, threads
    "edge_linear_backward": [_fn, _fn, _i64, _i64, _f32, _f32_, _f32, _f32, _f32, _f32, _f32, _int, _int],
}  # fmt: skip


class Kernel:
    """One C function of the library with its declared signature: ctypes converts and checks every argument
    (``_SIGNATURES``), and this wrapper checks the count too (ctypes itself passes surplus arguments to a C
    function unchecked). Wrong count or type: ``ctypes.ArgumentError``."""

    __slots__ = ("name", "_fn", "_arity")

    def __init__(self, lib: ctypes.CDLL, name: str, argtypes: list):
        self.name, self._fn, self._arity = name, getattr(lib, name), len(argtypes)
        self._fn.argtypes, self._fn.restype = argtypes, None

    def __call__(self, *args: object) -> None:
        if len(args) != self._arity:
            raise ctypes.ArgumentError(f"{self.name} takes {self._arity} arguments ({len(args)} given)")
        self._fn(*args)


class Kernels:
    """The compiled kernels: one :class:`Kernel` attribute per C function of ``_SIGNATURES``; ``path`` the shared
    object, ``target`` the -march it was built for (as the compiler resolves it)."""

    def __init__(self, lib: ctypes.CDLL, target: str):
        self.path, self.target, self._lib = lib._name, target, lib
        for name, argtypes in _SIGNATURES.items():
            setattr(self, name, Kernel(lib, name, argtypes))

    def __repr__(self) -> str:
        return f"fused CPU kernels -march={self.target}, {self.path}"


NODE_BLOCK, EDGE_BLOCK = 64, 256  # as in edge_update.c (sizes of the scratch for per-block column sums)
GEMM_ROWS = 512  # as in edge_update.c
# dL/dW of the blocked edge GEMMs is summed over this many fixed row ranges, the same for 1 to 16 threads (so the
# same bits); more threads get the next multiple of 16.
WEIGHT_GRAD_PARTS = 16
# Edge lists shorter than this keep torch's GEMMs for the edge linear map (the line graph of a paper batch has ~6e4
# rows; the blocked kernels pay off from a few row blocks per dL/dW part)
BLOCKED_GEMM_MIN_ROWS = 12288


def weight_grad_parts(threads: int) -> int:
    return WEIGHT_GRAD_PARTS * max(1, -(-threads // WEIGHT_GRAD_PARTS))


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def compile_flags(march: str | None) -> list[str]:
    """Compiler flags for a build with ``-march=march`` (None: the compiler's default target)."""
    return ([f"-march={march}"] if march else []) + BASE_FLAGS


@functools.cache
def resolved_march(cc: str, march: str) -> str:
    """What ``-march=march`` means for ``cc`` here (GCC: "native" -> e.g. "znver4" or "sapphirerapids"), for the
    cache key and the log; ``march`` itself when the compiler does not say."""
    try:
        out = subprocess.run(
            [cc, f"-march={march}", "-Q", "--help=target"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return march
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "-march=":
            return parts[1]
    return march


class CompilerNotFound(OSError):
    """No C compiler: no build for any target."""


class UnsafeCacheError(OSError):
    """A kernel cache directory that other users could write (or that is not ours): never load from it."""


def _check_private(path: Path, what: str) -> None:
    """Refuse ``path`` unless it is ours, not a symlink, and neither group- nor world-writable."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCacheError(f"{what} {path} is a symbolic link")
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if st.st_uid != uid:
        raise UnsafeCacheError(f"{what} {path} belongs to uid {st.st_uid}, not to this user ({uid})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheError(f"{what} {path} is writable by other users (mode {stat.filemode(st.st_mode)})")


def _private_dir(path: Path) -> Path:
    """Create ``path`` (and its parent) mode 0700 where missing; check that both are private (_check_private)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    for directory in (path.parent, path):
        _check_private(directory, "kernel cache directory")
    return path


def cache_dirs() -> list[Path]:
    """Where built kernels are kept: $PHONON_KERNEL_CACHE or ~/.cache/phonon-pipeline, then a per-user temp dir
    (for read-only home directories on some clusters). Each is created 0700 and must stay private to this user
    (:func:`_private_dir`): a shared object is code, loading one that someone else could have written would run
    their code."""
    root = os.environ.get("PHONON_KERNEL_CACHE") or Path.home() / ".cache" / "phonon-pipeline"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [Path(root) / "kernels", Path(tempfile.gettempdir()) / f"phonon-pipeline-{uid}" / "kernels"]


def _build(cc: str, flags: list[str], target: Path) -> None:
    """Compile SOURCE to ``target`` atomically (parallel jobs may build the same library at once)."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [cc, *flags, "-o", tmp, str(SOURCE), "-lm"],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        os.chmod(tmp, 0o755)  # whatever the umask: never group- or world-writable
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(cc: str, flags: list[str], key: str) -> tuple[ctypes.CDLL | None, list[str]]:
    """Load (building first where missing or not private) edge_update-{key}.so from the first usable cache
    directory; (None, reasons) when none works."""
    errors: list[str] = []
    for directory in cache_dirs():
        target = directory / f"edge_update-{key}.so"
        try:
            _private_dir(directory)
            if target.exists() or target.is_symlink():
                try:
                    _check_private(target, "kernel library")
                except UnsafeCacheError as err:
                    warnings.warn(f"rebuilding the fused kernels: {err}", RuntimeWarning, stacklevel=3)
                    target.unlink()
            if not target.exists():
                _build(cc, flags, target)
            _check_private(target, "kernel library")
            lib = ctypes.CDLL(str(target))
        except OSError as err:  # unwritable or unsafe cache directory, or a library that cannot be loaded
            errors.append(f"cannot build or load {target}: {err}")
            continue
        except subprocess.SubprocessError as err:
            stderr = getattr(err, "stderr", "") or ""
            errors.append(f"{cc} {' '.join(flags)} failed: {stderr.strip()[-500:] or err}")
            break  # the same compiler fails the same way in any directory
        _log.debug("fused CPU kernels: %s (%s %s)", target, cc, " ".join(flags))  # load_library() logs it
        return lib, errors
    return None, errors


def build_library(march: str | None = "native") -> Kernels:
    """The kernels compiled for ``-march=march`` (None: the compiler's default), built on first use; the target
    as the compiler resolves it, the compiler, its flags, the source and (for "native") this CPU's instruction
    set flags are the cache key, so nodes of a heterogeneous cluster never share a binary built for another CPU.
    Raises OSError when they cannot be built or loaded (:class:`CompilerNotFound` without a compiler)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise CompilerNotFound(f"C compiler {cc!r} not found (set $CC)")
    flags = compile_flags(march)
    isa = resolved_march(cc, march) if march else "default"
    key = hashlib.sha256(
        "\0".join(
            [SOURCE.read_text(), cc, " ".join(flags), isa, _compiler_version(cc)]
            + ([_cpu_flags()] if march == "native" else [])
        ).encode()
    ).hexdigest()[:16]
    lib, errors = _open(cc, flags, f"{isa}-{key}")
    if lib is None:
        raise OSError("; ".join(errors))
    return Kernels(lib, f"{march} ({isa})" if march else "default (the compiler's default target)")


def load_library() -> Kernels | None:
    """The kernels of this process (``-march`` from $PHONON_KERNEL_MARCH, default native; the compiler's default
    target if that fails), built on first use; None when that is impossible (:func:`load_error` says why)."""
    global _lib, _load_error
    if _lib is not None or _load_error is not None:
        return _lib
    march = os.environ.get(MARCH_ENV, "").strip() or "native"
    errors = []
    for target in (march, None):
        try:
            _lib = build_library(target)
        except CompilerNotFound as err:
            errors.append(str(err))
            break
        except OSError as err:
            errors.append(str(err))
            continue
        _log.info("%r", _lib)
        return _lib
    _load_error = "; ".join(errors)
    return None


def load_error() -> str | None:
    """Why :func:`load_library` found no kernels (None: not tried yet, or they loaded)."""
    return _load_error


class KernelsUnavailable(RuntimeError):
    """``model.accelerator: fused`` where the fused kernels cannot run (no compiler, a failed build, LayerNorm)."""


#: the values of ``model.accelerator`` (pipeline/config.schema.yaml)
ACCELERATORS = ("auto", "fused", "torch")


def resolve_accelerator(choice: str, norm: str) -> tuple[str, str]:
    """``model.accelerator`` for a model with ``model.norm`` = ``norm`` -> (``"fused"`` or ``"torch"``, why).

    ``torch``: the plain PyTorch model. ``fused``: these kernels, built now if need be; raises
    :class:`KernelsUnavailable` naming the reason when they cannot be (no compiler, a failed build, an unsafe
    cache) or cannot implement the model (they fold BatchNorm; ``norm: layer`` has no kernels). ``auto``: fused
    where that works, else torch with a ``RuntimeWarning`` saying why (LayerNorm: torch, silently).
    """
    if choice not in ACCELERATORS:
        raise ValueError(f"model.accelerator must be one of {ACCELERATORS}, got {choice!r}")
    if choice == "torch":
        return "torch", "model.accelerator: torch"
    if norm != "batch":
        why = f"the fused kernels implement BatchNorm only and model.norm is {norm!r}"
        if choice == "fused":
            raise KernelsUnavailable(f"model.accelerator: fused, but {why}; use auto or torch")
        return "torch", f"model.accelerator: auto, and {why}"
    lib = load_library()
    if lib is None:
        why = f"the fused CPU kernels cannot be built here: {_load_error}"
        if choice == "fused":
            raise KernelsUnavailable(f"model.accelerator: fused, but {why}")
        warnings.warn(
            f"model.accelerator: auto, using the plain PyTorch model (slower, same results): {why}",
            RuntimeWarning,
            stacklevel=3,
        )
        return "torch", f"model.accelerator: auto, and {why}"
    return "fused", f"model.accelerator: {choice}; {lib!r}"


class Blas(NamedTuple):
    """Addresses of BLAS's Fortran ``sgemm_`` and MKL's ``mkl_set_num_threads_local`` inside torch's own library."""

    sgemm: int
    set_threads: int


_blas: Blas | None | bool = False  # False: not looked up yet


def blas() -> Blas | None:
    """The MKL that torch links (x86 wheels), for the blocked edge GEMMs; None (torch's GEMMs are used instead) on
    builds without MKL or when the symbols are not exported."""
    global _blas
    if _blas is False:
        _blas = None
        if torch.backends.mkl.is_available():
            try:
                lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / _torch_cpu_library()))
                sgemm, set_threads = (
                    ctypes.cast(fn, ctypes.c_void_p).value
                    for fn in (lib.sgemm_, lib.mkl_set_num_threads_local)
                )
                _blas = Blas(sgemm, set_threads) if sgemm and set_threads else None
            except (OSError, AttributeError):
                _blas = None
    return _blas if _blas else None


def _torch_cpu_library() -> str:
    return {"darwin": "libtorch_cpu.dylib", "win32": "torch_cpu.dll"}.get(sys.platform, "libtorch_cpu.so")


def use_blocked_gemm(rows: int) -> bool:
    return rows >= BLOCKED_GEMM_MIN_ROWS and blas() is not None


def runs_on(t: torch.Tensor) -> bool:
    """Whether the kernels take these features: float32 on the CPU outside ``torch.autocast`` (whose matrix
    products would not be float32), two rows or more (BatchNorm's batch statistics need two). A model built with
    the fused accelerator runs anything else (CUDA tensors, bf16 autocast) on its PyTorch path."""
    return t.device.type == "cpu" and t.dtype == torch.float32 and t.shape[0] >= 2 and not _autocast_cpu()


def _autocast_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


class EdgeIndex(NamedTuple):
    """An edge list in the form the kernels read: each edge's ``src`` and ``dst`` node, and CSR views of the edges
    grouped by destination (for the gated mean) and by source (for dL/dv). ``*_order`` None: already sorted."""

    n_nodes: int
    src: torch.Tensor
    dst: torch.Tensor
    dst_order: torch.Tensor | None
    dst_offsets: torch.Tensor
    src_order: torch.Tensor | None
    src_offsets: torch.Tensor

    @classmethod
    def build(cls, src: torch.Tensor, dst: torch.Tensor, n_nodes: int) -> EdgeIndex:
        src, dst = src.long().contiguous(), dst.long().contiguous()
        return cls(n_nodes, src, dst, *_csr(dst, n_nodes), *_csr(src, n_nodes))


def _csr(node: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(order, offsets): edges order[offsets[j]:offsets[j + 1]] belong to node j, in their original order."""
    offsets = node.new_zeros(n_nodes + 1)
    torch.cumsum(torch.bincount(node, minlength=n_nodes), 0, out=offsets[1:])
    if node.numel() < 2 or bool((node[1:] >= node[:-1]).all()):
        return None, offsets
    return torch.argsort(node, stable=True), offsets


def _norm_terms(lib, norm: nn.BatchNorm1d, gamma, beta, stats: torch.Tensor | None, t: int) -> tuple:
    """BatchNorm folded into u = x * scale + shift, from the batch's column sums ``stats`` (2, d) in training mode
    (also updating the running statistics as ``nn.BatchNorm1d`` does) or the running statistics in eval mode.
    Returns (scale, shift, mean, invstd); one C call instead of ~20 small torch ops (they add up at width 64)."""
    d = gamma.shape[0]
    terms = gamma.new_empty((4, d))
    with torch.no_grad():
        lib.norm_terms(
            d, t, stats, gamma, beta, norm.running_mean, norm.running_var,
            norm.momentum, norm.eps, terms,
        )  # fmt: skip
        if stats is not None:
            norm.num_batches_tracked.add_(1)
    return terms.unbind(0)


def _norm_backward_terms(lib, x, g, terms, gamma, training: bool, threads: int) -> tuple:
    """(coef, gu_mean, gux_mean, grad_gamma, grad_beta) of BatchNorm+SiLU's backward (see edge_update.c)."""
    t, d = x.shape
    scale, shift, mean, invstd = terms
    sums = x.new_zeros((2, d), dtype=torch.float64)
    scratch = x.new_empty((t // EDGE_BLOCK + 1, 2, d), dtype=torch.float64)
    lib.norm_silu_backward_sums(t, d, x, g, scale, shift, mean, invstd, sums, scratch, threads)
    out = x.new_empty((5, d))
    lib.norm_backward_terms(d, t, sums, gamma, terms[0], int(training), out)
    return out.unbind(0)


class FusedNormSiLU(torch.autograd.Function):
    """SiLU(BatchNorm(x)) (+ residual), with ``norm`` the BatchNorm1d module as in :class:`FusedEdgeConv`:
    two passes over x forward, two backward (eager PyTorch: five and eight)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, residual, norm):  # type: ignore[override]
        lib = load_library()
        t, d = x.shape
        threads = torch.get_num_threads()
        stats = None
        if norm.training:
            stats = x.new_zeros((2, d), dtype=torch.float64)
            scratch = x.new_empty((t // EDGE_BLOCK + 1, 2, d), dtype=torch.float64)
            lib.column_stats(t, d, x, stats, scratch, threads)
        terms = _norm_terms(lib, norm, gamma, beta, stats, t)
        out = torch.empty_like(x)
        lib.norm_silu(t, d, x, terms[0], terms[1], residual, out, threads)
        ctx.terms, ctx.training, ctx.has_residual = terms, norm.training, residual is not None
        ctx.save_for_backward(x, gamma)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        lib = load_library()
        x, gamma = ctx.saved_tensors
        t, d = x.shape
        threads = torch.get_num_threads()
        g = grad_out.contiguous()
        coef, gu_mean, gux_mean, grad_gamma, grad_beta = _norm_backward_terms(
            lib, x, g, ctx.terms, gamma, ctx.training, threads
        )
        grad_x = torch.empty_like(x)
        scale, shift, mean, invstd = ctx.terms
        lib.norm_silu_backward(
            t, d, x, g, scale, shift, mean, invstd, coef, gu_mean, gux_mean,
            grad_x, threads,
        )  # fmt: skip
        return grad_x, grad_gamma, grad_beta, (grad_out if ctx.has_residual else None), None


def norm_silu(x: torch.Tensor, norm: nn.BatchNorm1d, residual: torch.Tensor | None = None) -> torch.Tensor:
    """SiLU(norm(x)) (+ residual) through :class:`FusedNormSiLU`; on fewer than two rows (see :func:`runs_on`)
    through the torch ops, which refuse batch statistics of one row as ``nn.BatchNorm1d`` does."""
    if x.shape[0] < 2:
        out = F.silu(norm(x))
        return out if residual is None else out.add_(residual)
    residual = residual.contiguous() if residual is not None else None
    return FusedNormSiLU.apply(x.contiguous(), norm.weight, norm.bias, residual, norm)


def _edge_preactivation(lib, index: EdgeIndex, proj, y, weight, bias, terms, y_new, threads: int):
    """m = src_gate[src] + dst_gate[dst] + W y + b for every edge, the gates read in place from ``proj``. On long
    edge lists with the blocked BLAS path and known BatchNorm ``terms`` (scale, shift, ...), y_new = y +
    SiLU(m * scale + shift) is written too, inside the GEMM blocks. Returns (m, whether y_new was written)."""
    t, d, ld = y.shape[0], weight.shape[0], proj.stride(0)
    src_gate, dst_gate = proj[:, :d], proj[:, 2 * d : 3 * d]
    m = y.new_empty((t, d))
    if use_blocked_gemm(t):
        update = terms is not None and y_new is not None
        edge_update = (terms[0], terms[1], y_new) if update else (None,) * 3
        lib.edge_linear_forward(
            *blas(), t, d, ld, index.src, index.dst, src_gate, dst_gate, bias, y, weight,
            m, *edge_update, threads,
        )  # fmt: skip
        return m, update
    lib.edge_preactivation(t, d, ld, index.src, index.dst, src_gate, dst_gate, bias, m, threads)
    m.addmm_(y, weight.t())
    return m, False


class FusedEdgeConv(torch.autograd.Function):
    """The edge side of an edge-gated convolution with BatchNorm (see ``EdgeGatedConv``), as one autograd node.
    With ``proj`` = [src_gate | v | dst_gate | self] the node-side projection (n, 4 d) of the node features:

        m_e   = src_gate[src(e)] + dst_gate[dst(e)] + W y_e + b
        s_e   = sigmoid(m_e);  h_j = sum_(e -> j) s_e v_src(e) / (sum_(e -> j) s_e + eps)
        u     = self + h                        (the node update before its BatchNorm+SiLU)
        y_new = y + SiLU(BatchNorm(m))          (only when ``norm`` is given; else u alone is returned)

    ``norm`` is the BatchNorm1d module (``gamma``/``beta`` its weight and bias, passed so that autograd sees them):
    in training mode its running statistics are updated as ``nn.BatchNorm1d`` does. ``index``
    (:class:`EdgeIndex`) holds the edges of the rows of ``y``. The kernels read the four column blocks of ``proj``
    in place and write dL/dproj whole (no split copies, no concatenation). Besides the two matrix products with W,
    the forward makes three passes over the (T, d) edge rows and the backward three.
    """

    @staticmethod
    def forward(ctx, y, proj, weight, bias, gamma, beta, index, norm, for_backward):  # type: ignore[override]
        lib = load_library()
        t, d = y.shape[0], weight.shape[0]
        n_nodes, ld = index.n_nodes, proj.stride(0)
        _, v, _, self_update = proj.split(d, dim=1)
        threads = torch.get_num_threads()
        y_new = None if norm is None else torch.empty_like(y)
        # running statistics (eval mode): the edge update can go with the GEMM blocks
        terms = (
            _norm_terms(lib, norm, gamma, beta, None, t) if norm is not None and not norm.training else None
        )
        m, updated = _edge_preactivation(lib, index, proj, y, weight, bias, terms, y_new, threads)
        # h and the denominators are kept for the backward only (``for_backward``: grad mode was on at the call)
        h = y.new_empty((n_nodes, d)) if for_backward else None
        denom = y.new_empty((n_nodes, d)) if for_backward else None
        u = y.new_empty((n_nodes, d))
        stats = scratch = None
        if norm is not None and norm.training:
            stats = m.new_zeros((2, d), dtype=torch.float64)
            scratch = m.new_empty((n_nodes // NODE_BLOCK + 1, 2, d), dtype=torch.float64)
        lib.gate_forward(
            n_nodes, d, ld, m, v, self_update, index.src, index.dst_order, index.dst_offsets,
            GATE_EPS, h, denom, u, stats, scratch, None, None, None, None, threads,
        )  # fmt: skip
        ctx.index, ctx.update_edges, ctx.m, ctx.denom = index, norm is not None, m, denom
        ctx.save_for_backward(y, proj, weight, h, gamma)
        if norm is None:
            return u
        if not updated:
            # its own pass in row order (folding it into the pass above, in destination order, was slower: scattered
            # rows of y and y_new); with batch statistics it has to wait for that pass anyway
            terms = terms or _norm_terms(lib, norm, gamma, beta, stats, t)
            lib.norm_silu(t, d, m, terms[0], terms[1], y, y_new, threads)
        ctx.norm_terms, ctx.training = terms, norm.training
        return u, y_new

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_u, grad_y_new=None):  # type: ignore[override]
        lib = load_library()
        y, proj, weight, h, gamma = ctx.saved_tensors
        m, denom, index = ctx.m, ctx.denom, ctx.index
        t, d = m.shape
        threads = torch.get_num_threads()
        gsum = (grad_u / denom).contiguous()  # dL/dh = dL/du
        gh = gsum * h
        grad_m = torch.empty_like(m)
        grad_proj = torch.empty_like(proj)  # [src_gate | v | dst_gate | self], as proj
        ld = grad_proj.stride(0)
        grad_src, grad_v, grad_dst, grad_self = grad_proj.split(d, dim=1)
        edges = (index.src_order, index.src_offsets, index.dst, gsum, gh)
        v = proj[:, d : 2 * d]
        grad_gamma = grad_beta = None
        if ctx.update_edges and grad_y_new is not None:
            grad_y_new = grad_y_new.contiguous()
            coef, gu_mean, gux_mean, grad_gamma, grad_beta = _norm_backward_terms(
                lib, m, grad_y_new, ctx.norm_terms, gamma, ctx.training, threads
            )
            bn = (*ctx.norm_terms, coef, gu_mean, gux_mean)
            lib.edge_backward(
                index.n_nodes, d, ld, m, grad_y_new, v, *edges, *bn,
                grad_m, grad_v, grad_src, threads,
            )  # fmt: skip
        else:
            grad_y_new = None
            lib.edge_backward(
                index.n_nodes, d, ld, m, None, v, *edges, *([None] * 7),
                grad_m, grad_v, grad_src, threads,
            )  # fmt: skip
        lib.segment_sum(
            index.n_nodes, d, ld, grad_m, index.dst_order, index.dst_offsets, grad_dst, threads
        )  # fmt: skip
        grad_self.copy_(grad_u)
        if use_blocked_gemm(t):
            # residual + dL/dm W and dL/dW = dL/dm^T y, in row blocks next to each other (see edge_update.c)
            grad_y, grad_weight = torch.empty_like(y), torch.empty_like(weight)
            parts = weight_grad_parts(threads)
            partial = weight.new_empty((parts, d, d))
            lib.edge_linear_backward(
                *blas(), t, d, grad_m, grad_y_new, y, weight, grad_y, grad_weight,
                partial, parts, threads,
            )  # fmt: skip
        else:
            # W as a transposed view of W^T: MKL's faster layout here
            w = weight.t().contiguous().t()
            grad_y = grad_m @ w if grad_y_new is None else torch.addmm(grad_y_new, grad_m, w)
            grad_weight = grad_m.t() @ y
        grad_bias = grad_src.sum(0)
        return grad_y, grad_proj, grad_weight, grad_bias, grad_gamma, grad_beta, None, None, None


def edge_conv_inference(
    conv: nn.Module, x: torch.Tensor, y: torch.Tensor, index: EdgeIndex, update_edges: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``EdgeGatedConv`` forward without autograd and with BatchNorm running statistics (inference): what
    :class:`FusedEdgeConv` and the node update's BatchNorm+SiLU do, with the node update inside the gated-mean
    pass and nothing kept for a backward. Returns (x_new, y_new); y_new is y when ``update_edges`` is False."""
    lib = load_library()
    t, n, d = y.shape[0], x.shape[0], conv.dim
    y = y.contiguous()
    proj = conv.node_linear(x)
    ld = proj.stride(0)
    _, v, _, self_update = proj.split(d, dim=1)
    threads = torch.get_num_threads()
    edge_terms = _norm_terms(lib, conv.norm_edges, conv.norm_edges.weight, conv.norm_edges.bias, None, t)
    node_terms = _norm_terms(lib, conv.norm_nodes, conv.norm_nodes.weight, conv.norm_nodes.bias, None, n)
    y_new = torch.empty_like(y) if update_edges else None
    m, updated = _edge_preactivation(
        lib, index, proj, y, conv.edge_linear.weight, conv.edge_linear.bias, edge_terms, y_new, threads
    )
    if update_edges and not updated:
        lib.norm_silu(t, d, m, edge_terms[0], edge_terms[1], y, y_new, threads)
    x = x.contiguous()
    x_new = torch.empty_like(x)
    lib.gate_forward(
        index.n_nodes, d, ld, m, v, self_update, index.src, index.dst_order, index.dst_offsets,
        GATE_EPS, None, None, None, None, None, x, node_terms[0], node_terms[1], x_new, threads,
    )  # fmt: skip
    return x_new, y if y_new is None else y_new


def edge_gated_conv(
    conv: nn.Module, x: torch.Tensor, y: torch.Tensor, index: EdgeIndex, update_edges: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``EdgeGatedConv.forward`` (pipeline.nn.model) through the kernels, for features that :func:`runs_on`
    accepts: without autograd and with BatchNorm running statistics one call (:func:`edge_conv_inference`), else
    :class:`FusedEdgeConv` for the edge side and :class:`FusedNormSiLU` for the node update. ``index`` holds the
    edges of the rows of ``y``. Returns (x_new, y_new); y_new is y when ``update_edges`` is False."""
    if not (torch.is_grad_enabled() or conv.norm_nodes.training or conv.norm_edges.training):
        return edge_conv_inference(conv, x, y, index, update_edges)
    # the whole edge side in a few passes over the edges, reading the column blocks of the node projection in place
    args = (y.contiguous(), conv.node_linear(x), conv.edge_linear.weight, conv.edge_linear.bias)
    keep = torch.is_grad_enabled()
    if update_edges:
        norm = conv.norm_edges
        u, y_new = FusedEdgeConv.apply(*args, norm.weight, norm.bias, index, norm, keep)
    else:
        u, y_new = FusedEdgeConv.apply(*args, None, None, index, None, keep), y
    return norm_silu(u, conv.norm_nodes, residual=x), y_new
