"""The one structure validator every stage uses (fetch parses with its first half; dos and featurize run it all).

A structure is (lattice_mat, frac_coords, elements): lattice vectors as rows (Angstrom), fractional coordinates
(one row per site) and element symbols. It is usable when

- the arrays have the right shapes (3x3 lattice, n x 3 coordinates for n >= 1 symbols) and are finite,
- every symbol is a chemical element (pymatgen's ``Element``; whether a model has features for it is the
  featurizer's business, :func:`pipeline.data.graphs.atomic_numbers`),
- the cell volume ``|det lattice_mat|`` exceeds :data:`MIN_VOLUME_A3`. **Handedness does not matter**: a
  left-handed cell (two lattice rows swapped, ``det < 0``) describes the same crystal and is accepted,
- no two atoms, periodic images of the same atom included, are closer than ``min_distance`` (the
  ``featurize.min_distance`` setting, which every stage that validates structures passes; the shortest real bond,
  H2, is 0.74 Angstrom): closer atoms mean a duplicated site, not a crystal.

:class:`StructureError` carries the reason, used verbatim in the rejects tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.core.periodic_table import Element
from pymatgen.optimization.neighbors import find_points_in_spheres

#: cells with |det lattice_mat| at or below this (Angstrom^3) are degenerate (coplanar lattice vectors)
MIN_VOLUME_A3 = 1e-6


class StructureError(ValueError):
    """A structure that no stage can use; the message is the rejects-table reason."""


@dataclass(frozen=True)
class CheckedStructure:
    lattice: np.ndarray  # (3, 3) float64, rows are lattice vectors, Angstrom
    frac_coords: np.ndarray  # (n, 3) float64
    elements: list[str]  # n symbols
    volume: float  # |det lattice|, Angstrom^3


def structure_arrays(
    lattice_mat: Any, coords: Any, elements: Any
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Shapes and finiteness only: (lattice (3, 3), coords (n, 3), n >= 1 symbols) as float64 arrays / str list.

    ``coords`` may be fractional or Cartesian (the fetch stage converts after this check).
    """
    try:
        lattice = np.asarray(_rows(lattice_mat), dtype=np.float64)
        xyz = np.asarray(_rows(coords), dtype=np.float64)
        symbols = [str(e) for e in elements] if elements is not None else []
    except (TypeError, ValueError) as exc:
        raise StructureError(f"malformed lattice_mat/coords/elements ({exc})") from exc
    if lattice.shape != (3, 3):
        raise StructureError(f"lattice_mat has shape {lattice.shape}, expected (3, 3)")
    n = len(symbols)
    if n == 0:
        raise StructureError("structure has no atoms")
    if xyz.shape != (n, 3):
        raise StructureError(f"frac_coords has shape {xyz.shape}, expected ({n}, 3) for {n} elements")
    if not (np.isfinite(lattice).all() and np.isfinite(xyz).all()):
        raise StructureError("non-finite lattice or coordinates")
    return lattice, xyz, symbols


@lru_cache(maxsize=4096)
def _is_element(symbol: str) -> bool:
    return Element.is_valid_symbol(symbol)


def _rows(value: Any) -> Any:
    """A list-of-lists column as pandas reads it from Parquet (an object array of arrays) -> a list of arrays."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value)
    return value


def cell_volume(lattice: np.ndarray) -> float:
    """|det lattice| in Angstrom^3 (plain floats: np.linalg.det costs ~10 us per call at this size)."""
    (a, b, c), (d, e, f), (g, h, i) = lattice.tolist()
    return abs(a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g))


def validate_structure(
    lattice_mat: Any,
    frac_coords: Any,
    elements: Any,
    min_distance: float | None,
) -> CheckedStructure:
    """Every check in this module's docstring; raises :class:`StructureError` with the reason. Atoms closer than
    ``min_distance`` (Angstrom; ``featurize.min_distance``) overlap.

    ``min_distance=None`` skips the overlap check, for callers that search neighbours anyway and pass their pairs
    to :func:`overlap_problem` (the graph builder); the rule and the message are the same.
    """
    lattice, frac, symbols = structure_arrays(lattice_mat, frac_coords, elements)
    unknown = sorted({s for s in symbols if not _is_element(s)})
    if unknown:
        raise StructureError(
            f"unknown element {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
        )
    volume = cell_volume(lattice)
    if not volume > MIN_VOLUME_A3:
        raise StructureError(
            f"cell volume |det lattice_mat| = {volume:.6g} A^3 <= {MIN_VOLUME_A3:g}: degenerate cell"
        )
    checked = CheckedStructure(lattice, frac, symbols, volume)
    if min_distance is not None:
        problem = find_overlap(checked, min_distance)
        if problem is not None:
            raise StructureError(problem)
    return checked


def find_overlap(s: CheckedStructure, min_distance: float) -> str | None:
    """The overlap reason for ``s`` (closest pair of atoms, own periodic images included), or None."""
    frac = s.frac_coords - np.floor(s.frac_coords)
    cart = frac @ s.lattice
    src, dst, images, dist = find_points_in_spheres(
        cart, cart, r=float(min_distance), pbc=np.ones(3, dtype=np.int64), lattice=s.lattice, tol=1e-8
    )
    not_self = (src != dst) | np.rint(images).astype(np.int64).any(axis=1)
    return overlap_problem(src[not_self], dst[not_self], dist[not_self], s.elements, min_distance)


def overlap_problem(
    src: np.ndarray, dst: np.ndarray, dist: np.ndarray, elements: Any, min_distance: float
) -> str | None:
    """From a neighbour list (pairs i -> j at distance d, the atom's own zero image excluded): the reason naming
    the closest pair when it is closer than ``min_distance``, else None."""
    if dist.size == 0 or not dist.min() < min_distance:
        return None
    a = int(np.argmin(dist))
    i, j = sorted((int(src[a]), int(dst[a])))
    return (
        f"overlapping atoms: atom {i} ({elements[i]}) and atom {j} ({elements[j]}) are "
        f"{dist[a]:.3f} A apart (< {min_distance} A)"
    )
