"""Crystal graph and its line graph (ALIGNN inputs) of periodic structures.

Conventions (the graph contract; :mod:`pipeline.data.shards` stores exactly these arrays):

- Nodes are the atoms of the cell, in input order, identified by ``atomic_number``; the 92-d CGCNN features are
  looked up from :func:`cgcnn_table` when batching (jarvis-tools ``jarvis/core/atom_init.json``).
- Edges are directed k-nearest-neighbour bonds ``i -> j`` over periodic images: **exactly k per atom**, sorted by
  source atom, so the bonds leaving atom ``i`` are ``edge_src == i`` at positions ``i*k .. i*k+k-1``.
  ``bond_vec = r_j + image @ lattice - r_i`` (Angstrom, with ``r`` the positions wrapped into the cell).
  A periodic image of the atom itself is a legitimate neighbour (small cells); the atom itself is not.
- Deterministic tie-breaking: neighbours are ranked by (distance rounded to 1e-6 Angstrom, image (x, y, z)
  lexicographically, neighbour index). kNN with k cutting through a degenerate shell (e.g. BCC: 8 + 6 with k=12)
  keeps only part of that shell; *which* part follows the key above, the neighbour distances never depend on it.
- Search radius: the k nearest are exact, whatever sphere is searched. An atom with *no* neighbour within
  ``cutoff`` makes the structure unfeaturisable (:class:`FeaturizationError`). An atom with 1..k-1 neighbours
  within ``cutoff`` gets its k nearest from a sphere enlarged by 1.5x steps (as jarvis-tools/ALIGNN
  ``nearest_neighbor_edges`` does), so a graph never has fewer than k edges per atom; ``search_radius`` is
  ``cutoff``, or the enlarged radius when that happened. (For speed the search starts from a smaller sphere
  sized for ~2k neighbours at the cell's mean density and grows it until every atom's k-th neighbour lies
  strictly inside; this never changes the result.)
- Unlike the DGL ``alignn.graphs.nearest_neighbor_edges`` (which keeps the whole degenerate shell at the k-th
  distance and symmetrises), every atom has exactly k out-bonds here, like ``alignn.torch_graph_builder``.
- Line graph: one edge ``a -> b`` for every pair of bonds ``a = (i -> j)``, ``b = (j -> m)`` with
  ``edge_dst[a] == edge_src[b]``. **Backtracking pairs (``b`` = the bond ``j -> i`` back to the same image) are
  kept**, as in ALIGNN (DGL ``line_graph(shared=True)`` defaults to backtracking=True; their cosine is 1).
  With exactly k bonds per atom every bond has k successors, so ``T = n_atoms * k * k``.
  ``angle_cos = cos(-bond_vec[a], bond_vec[b])``: the angle at the shared atom ``j`` between ``j -> i`` and
  ``j -> m`` (ALIGNN's convention).

Everything is vectorised numpy on top of pymatgen's Cython cell-list neighbour search
(``find_points_in_spheres``, the engine behind ``Structure.get_neighbor_list``), called directly on arrays to
skip building a ``Structure`` per material. :func:`build_graph` builds one structure; :func:`build_graphs` builds
many with bit-identical results, running only the neighbour search per structure and everything else once per
chunk (what the featurize stage uses).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar

import numpy as np
from pymatgen.core.periodic_table import Element
from pymatgen.optimization.neighbors import find_points_in_spheres

from pipeline.config import ConfigNode
from pipeline.data.structures import (
    StructureError,
    cell_volume,
    overlap_problem,
    validate_structure,
)

#: the enlarged search sphere grows by this factor per step, at most MAX_RADIUS_STEPS times
RADIUS_GROWTH = 1.5
MAX_RADIUS_STEPS = 8
#: build_graphs processes at most about this many atoms at once
CHUNK_ATOMS = 1024
#: distances are rounded to this many decimals (Angstrom) before ranking, so float noise never breaks a tie
TIE_DECIMALS = 6


@dataclass(frozen=True)
class FeaturizeSettings(ConfigNode):
    """The ``featurize`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml): ``k``, ``cutoff``
    and ``min_distance`` are :func:`build_graph`'s, ``n_shards`` the featurize stage's (pipeline.data.featurize, which
    re-exports this class). Defined here, with the graph builder, so that a stage that reads
    ``featurize.min_distance`` without featurizing (dos) imports no HDF5 code."""

    KEY: ClassVar[str] = "featurize"
    k: int
    cutoff: float
    n_shards: int
    min_distance: float


class FeaturizationError(ValueError):
    """A structure that cannot be turned into a graph; the message is the rejects-table reason."""


@dataclass(frozen=True, eq=False)
class Graph:
    """Crystal graph + line graph of one structure (indices local to the structure)."""

    atomic_number: np.ndarray  # (n,) uint8
    edge_src: np.ndarray  # (E,) int32, E = n*k, sorted by source
    edge_dst: np.ndarray  # (E,) int32
    edge_image: np.ndarray  # (E, 3) int16, lattice translation of the neighbour
    bond_vec: np.ndarray  # (E, 3) float32, Angstrom
    line_src: np.ndarray  # (T,) int32, bond a = (i -> j)
    line_dst: np.ndarray  # (T,) int32, bond b = (j -> m)
    angle_cos: np.ndarray  # (T,) float32
    search_radius: float = 0.0  # Angstrom; > cutoff only when the sphere had to be enlarged

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_number.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def n_triplets(self) -> int:
        return int(self.line_src.shape[0])

    def equals(self, other: Graph) -> bool:
        """Exact equality of every array (dtype included) and of the search radius."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True


# ------------------------------------------------------------------------------------------ atom features ----
@lru_cache(maxsize=1)
def cgcnn_table() -> np.ndarray:
    """(101, 92) float32: row Z = the CGCNN feature vector of element Z (row 0 unused, zeros).

    Read from jarvis-tools' ``atom_init.json`` (Z = 1..100), the table ALIGNN's ``cgcnn`` features use.
    """
    raw = json.loads(resources.files("jarvis.core").joinpath("atom_init.json").read_text())
    table = np.zeros((max(map(int, raw)) + 1, len(raw["1"])), dtype=np.float32)
    for z, vec in raw.items():
        table[int(z)] = vec
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1)
def _symbol_to_z() -> dict[str, int]:
    n_known = cgcnn_table().shape[0] - 1
    return {el.symbol: el.Z for el in Element if el.Z <= n_known}


def atomic_numbers(elements: list[str] | np.ndarray) -> np.ndarray:
    """Element symbols -> (n,) uint8 atomic numbers; unknown symbols or Z > 100 raise FeaturizationError."""
    table = _symbol_to_z()
    try:
        return np.fromiter((table[str(s)] for s in elements), dtype=np.uint8, count=len(elements))
    except KeyError as e:
        raise FeaturizationError(f"unknown element {e.args[0]!r} (no CGCNN features for it)") from None


# ------------------------------------------------------------------------------------------ validation --------
def _validated(lattice_mat, frac_coords, elements) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pipeline.data.structures.validate_structure` (the overlap check runs inside the neighbour search, with
    the same rule and message) and the atomic numbers."""
    try:
        s = validate_structure(lattice_mat, frac_coords, elements, min_distance=None)
    except StructureError as e:
        raise FeaturizationError(str(e)) from None
    return s.lattice, s.frac_coords, atomic_numbers(s.elements)


# ------------------------------------------------------------------------------------------ neighbours --------
def _neighbours(
    cart: np.ndarray, lattice: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All (i, j, image, distance) with 0 < |r_j + image - r_i| <= radius, excluding only i's own zero image."""
    src, dst, images, dist = find_points_in_spheres(
        cart, cart, r=float(radius), pbc=np.ones(3, dtype=np.int64), lattice=lattice, tol=1e-8
    )
    images = np.rint(images).astype(np.int64)
    not_self = (src != dst) | images.any(axis=1)
    return src[not_self], dst[not_self], images[not_self], dist[not_self]


def _initial_radius(lattice: np.ndarray, n: int, k: int, cutoff: float) -> float:
    """A sphere expected to hold ~2k neighbours at the cell's mean density (at most ``cutoff``).

    Searching it instead of the full cutoff sphere keeps the pair list short; the result is
    the same exact kNN because :func:`_knn` grows the sphere until every atom's k-th neighbour is strictly inside.
    """
    volume_per_atom = cell_volume(lattice) / n
    return min(float(cutoff), max(1.0, (3.0 * 2 * k * volume_per_atom / (4.0 * np.pi)) ** (1.0 / 3.0)))


def _ranked(
    src: np.ndarray, dst: np.ndarray, images: np.ndarray, dist: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Order of the pairs by (source, distance rounded to TIE_DECIMALS, image x, y, z, neighbour index)."""
    dist_key = np.rint(dist * 10**TIE_DECIMALS).astype(np.int64)
    primary = src.astype(np.int64) * (int(dist_key.max()) + 1) + dist_key
    image_code = ((images[:, 0] + 512) * 1024 + (images[:, 1] + 512)) * 1024 + (images[:, 2] + 512)
    order = np.lexsort((image_code * n + dst, primary))  # the last key sorts first
    return order, dist_key[order]


def _knn(
    cart: np.ndarray, lattice: np.ndarray, k: int, cutoff: float, min_distance: float, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Exactly k nearest periodic neighbours per atom, deterministic ties; returns (src, dst, image, radius)."""
    n = cart.shape[0]
    cutoff = float(cutoff)
    radius = _initial_radius(lattice, n, k, cutoff)
    margin = 10 * 10**-TIE_DECIMALS  # a k-th neighbour this far inside the sphere has no tie outside it
    for _ in range(MAX_RADIUS_STEPS + 8):
        src, dst, images, dist = _neighbours(cart, lattice, radius)
        overlap = overlap_problem(src, dst, dist, _Symbols(z), min_distance)
        if overlap is not None:
            raise FeaturizationError(overlap)
        counts = np.bincount(src, minlength=n)
        if radius == cutoff and (counts == 0).any():
            lonely = int(np.flatnonzero(counts == 0)[0])
            raise FeaturizationError(f"{_atom_name(z, lonely)} has no neighbour within the cutoff {cutoff} A")
        if counts.min() >= k:
            order, dist_key = _ranked(src, dst, images, dist, n)
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            kth = dist_key[starts + k - 1] * 10**-TIE_DECIMALS
            if kth.max() <= radius - margin:
                src, dst, images = src[order], dst[order], images[order]
                keep = (np.arange(src.size) - starts[src]) < k
                return src[keep], dst[keep], images[keep], max(radius, cutoff)
        radius = min(radius * RADIUS_GROWTH, cutoff) if radius < cutoff else radius * RADIUS_GROWTH
    raise FeaturizationError(f"fewer than k={k} neighbours even within {radius / RADIUS_GROWTH:.1f} A")


def _atom_name(z: np.ndarray, i: int) -> str:
    return f"atom {int(i)} ({Element.from_Z(int(z[i])).symbol})"


class _Symbols:
    """Element symbols of atomic numbers ``z``, looked up only when indexed (i.e. for an error message)."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def __getitem__(self, i: int) -> str:
        return Element.from_Z(int(self.z[i])).symbol


# ------------------------------------------------------------------------------------------ line graph --------
def line_graph(edge_src: np.ndarray, edge_dst: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """All bond pairs (a, b) with edge_dst[a] == edge_src[b], backtracking included; any degree distribution.

    Returned ordered by a, then by b's position among the bonds leaving edge_dst[a] (stable, i.e. by b).
    """
    order = np.argsort(edge_src, kind="stable")
    out_start = np.searchsorted(edge_src[order], np.arange(n_atoms + 1))
    n_out = np.diff(out_start)
    per_a = n_out[edge_dst]
    line_src = np.repeat(np.arange(edge_src.size), per_a)
    first = np.repeat(out_start[edge_dst] - (np.cumsum(per_a) - per_a), per_a)
    line_dst = order[first + np.arange(line_src.size)]
    return line_src, line_dst


def bond_cosines(bond_vec: np.ndarray, line_src: np.ndarray, line_dst: np.ndarray) -> np.ndarray:
    """cos of the angle at the shared atom between -bond_vec[a] and bond_vec[b], clipped to [-1, 1]."""
    unit = bond_vec / np.linalg.norm(bond_vec, axis=1, keepdims=True)
    return np.clip(-np.einsum("ij,ij->i", unit[line_src], unit[line_dst]), -1.0, 1.0)


def _regular_line_graph(
    bond_vec: np.ndarray, edge_dst: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`line_graph` + :func:`bond_cosines` for exactly k bonds per atom sorted by source (same output).

    The bonds leaving atom j are rows j*k..j*k+k-1, so bond a's successors are edge_dst[a]*k + (0..k-1) and the
    cosines are (E, k) elementwise products instead of gathers of T pairs of vectors. Written with explicit
    elementwise sums so that a structure gives bit-identical results alone or inside a chunk (build_graphs).
    """
    n_edges = edge_dst.shape[0]
    line_src = np.repeat(np.arange(n_edges), k)
    line_dst = (edge_dst[:, None] * k + np.arange(k)).ravel()
    x, y, zc = bond_vec[:, 0], bond_vec[:, 1], bond_vec[:, 2]
    unit = bond_vec / np.sqrt(x * x + y * y + zc * zc)[:, None]
    out = unit.reshape(-1, k, 3)[edge_dst]  # (E, k, 3): the bonds leaving each bond's end atom
    cos = -(
        out[:, :, 0] * unit[:, 0, None] + out[:, :, 1] * unit[:, 1, None] + out[:, :, 2] * unit[:, 2, None]
    )
    cos = cos.ravel()
    return line_src, line_dst, np.clip(cos, -1.0, 1.0, out=cos)


def _image_offsets(images: np.ndarray, lattices: np.ndarray) -> np.ndarray:
    """images (E, 3) int times lattice rows, with lattices (3, 3) or per edge (E, 3, 3); fixed summation order."""
    lat = lattices if lattices.ndim == 3 else lattices[None]
    return images[:, 0:1] * lat[:, 0] + images[:, 1:2] * lat[:, 1] + images[:, 2:3] * lat[:, 2]


def _wrapped_cart(lattice: np.ndarray, frac: np.ndarray) -> np.ndarray:
    wrapped = frac - np.floor(frac)
    wrapped[wrapped >= 1.0] -= 1.0  # -1e-17 wraps to exactly 1.0 in floating point
    return wrapped @ lattice


# ------------------------------------------------------------------------------------------ public API --------
def build_graph(
    lattice_mat,
    frac_coords,
    elements,
    k: int,
    cutoff: float,
    min_distance: float,
) -> Graph:
    """Crystal graph (exactly k directed nearest-neighbour bonds per atom) and its line graph.

    ``lattice_mat``: 3x3, lattice vectors as rows (Angstrom); ``frac_coords``: (n, 3) fractional;
    ``elements``: n symbols; ``k``, ``cutoff`` (Angstrom) and ``min_distance`` (Angstrom) are the ``featurize``
    settings (:class:`FeaturizeSettings`). Raises :class:`FeaturizationError` (message = rejects reason) for structures
    :func:`pipeline.data.structures.validate_structure` refuses (malformed, unknown element, degenerate cell, atoms
    closer than ``min_distance``; left-handed cells are fine), elements without CGCNN features, or an atom
    without a neighbour within ``cutoff``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lattice, frac, z = _validated(lattice_mat, frac_coords, elements)
    cart = _wrapped_cart(lattice, frac)
    src, dst, images, radius = _knn(cart, lattice, k, cutoff, min_distance, z)
    bond_vec = cart[dst] + _image_offsets(images, lattice) - cart[src]
    line_src, line_dst, angle_cos = _regular_line_graph(bond_vec, dst, k)
    return Graph(
        atomic_number=z,
        edge_src=src.astype(np.int32),
        edge_dst=dst.astype(np.int32),
        edge_image=images.astype(np.int16),
        bond_vec=bond_vec.astype(np.float32),
        line_src=line_src.astype(np.int32),
        line_dst=line_dst.astype(np.int32),
        angle_cos=angle_cos.astype(np.float32),
        search_radius=float(radius),
    )


def build_graphs(
    structures: Sequence[tuple[Any, Any, Any]],
    k: int,
    cutoff: float,
    min_distance: float,
) -> list[Graph | FeaturizationError]:
    """:func:`build_graph` for many (lattice_mat, frac_coords, elements) at once: bit-identical graphs, vectorised over
    the chunk (benchmarks/featurize.py times it).

    Returns, per structure, its Graph or the FeaturizationError that :func:`build_graph` would raise. Only the
    neighbour search runs per structure; ranking, kNN selection, bond vectors, the line graph and the cosines run
    once over the whole chunk, which removes most of numpy's per-call overhead on small cells. A structure whose
    first search sphere is too small (rare) is built by :func:`build_graph` itself.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cutoff = float(cutoff)
    margin = 10 * 10**-TIE_DECIMALS
    results: list[Graph | FeaturizationError | None] = [None] * len(structures)
    chunk: list[
        tuple[int, np.ndarray, np.ndarray, np.ndarray, float]
    ] = []  # (index, lattice, cart, z, radius)
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    n_chunk_atoms = 0
    for index, (lattice_mat, frac_coords, elements) in enumerate(structures):
        try:
            lattice, frac, z = _validated(lattice_mat, frac_coords, elements)
        except FeaturizationError as e:
            results[index] = e
            continue
        cart = _wrapped_cart(lattice, frac)
        radius = _initial_radius(lattice, z.size, k, cutoff)
        src, dst, images, dist = _neighbours(cart, lattice, radius)
        counts = np.bincount(src, minlength=z.size)
        if counts.min() < k or dist.min() < min_distance:  # grow the sphere / name the overlap: the slow path
            results[index] = _build_or_error(lattice_mat, frac_coords, elements, k, cutoff, min_distance)
            continue
        chunk.append((index, lattice, cart, z, radius))
        pairs.append((src + n_chunk_atoms, dst + n_chunk_atoms, images, dist))
        n_chunk_atoms += z.size
        if n_chunk_atoms >= CHUNK_ATOMS:  # keep the (E, k, 3) work arrays cache-sized
            _chunk_graphs(chunk, pairs, n_chunk_atoms, k, cutoff, margin, results)
            chunk, pairs, n_chunk_atoms = [], [], 0
    if chunk:
        _chunk_graphs(chunk, pairs, n_chunk_atoms, k, cutoff, margin, results)
    for index, res in enumerate(results):
        if res is None:  # k-th neighbour too close to the first sphere's surface: the slow path decides
            lattice_mat, frac_coords, elements = structures[index]
            results[index] = _build_or_error(lattice_mat, frac_coords, elements, k, cutoff, min_distance)
    return results  # type: ignore[return-value]


def _build_or_error(
    lattice_mat, frac_coords, elements, k, cutoff, min_distance
) -> Graph | FeaturizationError:
    try:
        return build_graph(lattice_mat, frac_coords, elements, k, cutoff, min_distance)
    except FeaturizationError as e:
        return e


def _chunk_graphs(chunk, pairs, n_atoms: int, k: int, cutoff: float, margin: float, results: list) -> None:
    """kNN selection, bonds, line graph and cosines of all chunk structures at once; fills ``results``."""
    src, dst, images, dist = (np.concatenate(p) for p in zip(*pairs, strict=True))
    n_atoms_of = np.array([c[3].size for c in chunk])
    atom_start = np.concatenate(([0], np.cumsum(n_atoms_of)[:-1]))
    structure_of_atom = np.repeat(np.arange(len(chunk)), n_atoms_of)
    order, dist_key = _ranked(src, dst, images, dist, n_atoms)
    counts = np.bincount(src, minlength=n_atoms)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    kth = dist_key[starts + k - 1] * 10**-TIE_DECIMALS
    radius = np.array([c[4] for c in chunk])
    ok_atom = kth <= radius[structure_of_atom] - margin
    ok = np.logical_and.reduceat(ok_atom, atom_start)  # every atom of the structure passes
    src, dst, images = src[order], dst[order], images[order]
    keep = ((np.arange(src.size) - starts[src]) < k) & ok[structure_of_atom[src]]
    src, dst, images = src[keep], dst[keep], images[keep]
    # renumber the atoms of the structures that passed contiguously: then exactly k bonds per atom, in order
    compact = np.cumsum(ok[structure_of_atom]) - 1
    src, dst = compact[src], compact[dst]
    chunk = [c for c, good in zip(chunk, ok, strict=True) if good]
    if not chunk:
        return
    n_atoms_of = n_atoms_of[ok]
    cart = np.concatenate([c[2] for c in chunk])
    lattices = np.stack([c[1] for c in chunk])
    structure_of_edge = np.repeat(np.arange(len(chunk)), n_atoms_of * k)
    bond_vec = cart[dst] + _image_offsets(images, lattices[structure_of_edge]) - cart[src]
    line_src, line_dst, angle_cos = _regular_line_graph(bond_vec, dst, k)
    # back to per-structure local indices
    first_atom = np.concatenate(([0], np.cumsum(n_atoms_of)[:-1]))
    atom_off = np.repeat(first_atom, n_atoms_of * k)
    line_off = np.repeat(first_atom * k, n_atoms_of * k * k)
    edge_src = (src - atom_off).astype(np.int32)
    edge_dst = (dst - atom_off).astype(np.int32)
    line_src = (line_src - line_off).astype(np.int32)
    line_dst = (line_dst - line_off).astype(np.int32)
    edge_image, bond_vec, angle_cos = (
        images.astype(np.int16),
        bond_vec.astype(np.float32),
        angle_cos.astype(np.float32),
    )
    edge_cuts, line_cuts = np.cumsum(n_atoms_of * k)[:-1], np.cumsum(n_atoms_of * k * k)[:-1]
    per_edge = [np.split(a, edge_cuts) for a in (edge_src, edge_dst, edge_image, bond_vec)]
    per_line = [np.split(a, line_cuts) for a in (line_src, line_dst, angle_cos)]
    for s, (index, _, _, z, _) in enumerate(chunk):
        results[index] = Graph(
            atomic_number=z,
            edge_src=per_edge[0][s],
            edge_dst=per_edge[1][s],
            edge_image=per_edge[2][s],
            bond_vec=per_edge[3][s],
            line_src=per_line[0][s],
            line_dst=per_line[1][s],
            angle_cos=per_line[2][s],
            search_radius=cutoff,
        )
