"""Structure files -> periodic structures for ``screen``: every input becomes a structure or a reject, never a crash.

Formats (by file name; pymatgen reads them, ASE where pymatgen cannot):

=========================================  ===========================================================
file                                       read with
=========================================  ===========================================================
``*.cif``, ``*.mcif``                      pymatgen ``CifParser``, one structure per data block
``POSCAR*``, ``CONTCAR*``, ``*.vasp``,     pymatgen ``Poscar``
``*.poscar``
``*.xyz``, ``*.extxyz``                    ASE ``ase.io.read(..., index=":")`` (extended XYZ with a
                                           ``Lattice=`` and ``pbc="T T T"``), one structure per frame
``*.json``, ``*.json.gz``                  a pymatgen ``Structure.as_dict()`` (or a list of them), a JARVIS
                                           record ``{"jid", "atoms": {...}}`` (or a list of them, e.g. the
                                           figshare ``dft_3d`` file) or a bare JARVIS ``atoms`` dict
``*.parquet``                              a ``MATERIALS`` table of the dos stage (``results/dos/pool.parquet``)
=========================================  ===========================================================

Folders are searched recursively, files in sorted order; a file of any other type inside a folder is a reject
(``not a structure file``), so nothing in the input is silently skipped.

Material ids: the file stem (``NaCl.cif`` -> ``NaCl``); ``{stem}#{i}`` for the i-th (from 0) structure when one
file holds several (CIF blocks, XYZ frames, JSON lists); a JARVIS record's own ``jid`` when it has one, and the
``jid`` column of a parquet table. A second structure with an id already used is a reject naming the first file.

Refused here, with the reason in the rejects table: unreadable files (the parser's own message), partial
occupancies or disorder, non-periodic input (molecules, XYZ without a 3-D periodic cell, slabs). The checks that
need the geometry (overlapping atoms, elements without atom features, too many atoms, degenerate cells) run in
:mod:`pipeline.screening.screen` with the shared validator :mod:`pipeline.data.structures` and the graph builder.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STAGE = "screen"

CIF_SUFFIXES = (".cif", ".mcif")
POSCAR_SUFFIXES = (".vasp", ".poscar")
POSCAR_PREFIXES = ("POSCAR", "CONTCAR")
XYZ_SUFFIXES = (".xyz", ".extxyz")
JSON_SUFFIXES = (".json", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
KNOWN = "CIF, POSCAR/CONTCAR/*.vasp, extended XYZ, pymatgen Structure JSON, JARVIS JSON, MATERIALS parquet"


@dataclass(frozen=True)
class RawStructure:
    """One structure as read: lattice rows (Angstrom), fractional coordinates and one element symbol per site."""

    material_id: str
    source_file: str
    index_in_file: int
    lattice: np.ndarray  # (3, 3) float64
    frac_coords: np.ndarray  # (n, 3) float64
    elements: list[str]


@dataclass(frozen=True)
class ReadError:
    """A file (or one structure in it) that could not be read; ``reason`` goes into the rejects table."""

    material_id: str
    source_file: str
    reason: str


class _Refused(ValueError):
    """Inside a reader: this structure is refused for the message's reason."""


# ------------------------------------------------------------------------------------------ discovery ---------
def file_kind(path: str | os.PathLike) -> str | None:
    """'cif', 'poscar', 'xyz', 'json', 'parquet' or None, from the file name."""
    name = Path(path).name
    lower = name.lower()
    if lower.endswith(CIF_SUFFIXES):
        return "cif"
    if lower.endswith(POSCAR_SUFFIXES) or name.startswith(POSCAR_PREFIXES):
        return "poscar"
    if lower.endswith(XYZ_SUFFIXES):
        return "xyz"
    if lower.endswith(JSON_SUFFIXES):
        return "json"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def iter_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Every file named or under a named folder (recursively, sorted); a missing path is yielded as is (and then
    rejected by :func:`read_file`)."""
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield p


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".json.gz", ".extxyz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    if name.startswith(POSCAR_PREFIXES) and "." not in name:
        return name
    return path.stem or name


# ------------------------------------------------------------------------------------------ reading -----------
def read_file(path: str | os.PathLike) -> Iterator[RawStructure | ReadError]:
    """The structures of one file, or the reasons they cannot be used (a whole-file failure is one ReadError
    whose id is the file stem)."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        yield ReadError(stem(path), name, "file does not exist")
        return
    if not path.is_file():
        yield ReadError(stem(path), name, "not a regular file")
        return
    kind = file_kind(path)
    if kind is None:
        yield ReadError(
            stem(path), name, f"not a structure file (unknown type {path.name!r}; known: {KNOWN})"
        )
        return
    reader = {"cif": _cif, "poscar": _poscar, "xyz": _xyz, "json": _json, "parquet": _parquet}[kind]
    items = reader(path)
    try:  # look two ahead: ids get an index only when the file holds several structures
        head = list(itertools.islice(items, 2))
    except Exception as e:  # noqa: BLE001 - any parser failure is the file's reject reason
        yield ReadError(stem(path), name, f"unreadable {kind} file: {_message(e)}")
        return
    if not head:
        yield ReadError(stem(path), name, f"unreadable {kind} file: no structure in it")
        return
    several = len(head) > 1
    i = -1
    try:
        for i, (own_id, item) in enumerate(itertools.chain(head, items)):
            mid = own_id or (f"{stem(path)}#{i}" if several else stem(path))
            if isinstance(item, Exception):
                yield ReadError(mid, name, _message(item))
                continue
            try:
                yield _raw(mid, name, i, item)
            except _Refused as e:
                yield ReadError(mid, name, str(e))
    except Exception as e:  # noqa: BLE001 - a file that breaks half-way: the rest of it is one reject
        yield ReadError(
            f"{stem(path)}#{i + 1}..", name, f"unreadable {kind} file after {i + 1} structures: {_message(e)}"
        )


def read_paths(paths: Iterable[str | os.PathLike]) -> Iterator[RawStructure | ReadError]:
    """:func:`read_file` over :func:`iter_files`, with duplicate material ids refused (naming the first file)."""
    seen: dict[str, str] = {}
    for path in iter_files(paths):
        for item in read_file(path):
            if isinstance(item, RawStructure):
                if item.material_id in seen:
                    first = seen[item.material_id]
                    yield ReadError(
                        item.material_id,
                        item.source_file,
                        f"duplicate material id (already read from {first})",
                    )
                    continue
                seen[item.material_id] = item.source_file
            yield item


def _message(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


#: fractional coordinates this close to an integer are snapped to it (see :func:`_snapped`)
SNAP_FRAC = 1e-12


def _snapped(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates with float noise at integers removed (-6e-17 -> 0): a Cartesian -> fractional
    round trip (XYZ, POSCAR in Cartesian, JARVIS ``cartesian: true``) leaves such noise, and an atom at -6e-17
    wraps to the far face of the cell, which changes the periodic-image labels and so which members of a
    degenerate neighbour shell the kNN graph keeps (``pipeline.data.graphs``). Snapping makes every format of the same
    crystal give the same graph. MATERIALS parquet tables are used as stored (as the featurize stage does)."""
    near = np.rint(frac)
    return np.where(np.abs(frac - near) < SNAP_FRAC, near, frac) + 0.0  # + 0.0: no negative zeros


def _raw(mid: str, source: str, index: int, item: Any) -> RawStructure:
    """A pymatgen Structure / ASE Atoms / (lattice, frac, elements) triple -> RawStructure, refusing disorder
    and non-periodic input."""
    from pymatgen.core import Molecule, Structure

    if isinstance(item, Molecule):
        raise _Refused("non-periodic input (a molecule, no lattice)")
    if isinstance(item, Structure):
        if not item.is_ordered:
            disordered = next(s for s in item if not s.is_ordered)
            raise _Refused(
                f"partial occupancies or disorder (site {disordered.species.formula!r} at "
                f"{np.round(disordered.frac_coords, 4).tolist()}); only ordered structures can be screened"
            )
        elements = [getattr(s.specie, "element", s.specie).symbol for s in item]
        return RawStructure(
            mid, source, index, item.lattice.matrix.copy(), _snapped(item.frac_coords), elements
        )
    if _is_ase_atoms(item):
        pbc = np.asarray(item.pbc, dtype=bool)
        if not pbc.all():
            what = "no periodic directions" if not pbc.any() else f"periodic only along {pbc.tolist()}"
            raise _Refused(f"non-periodic input ({what}; a crystal needs pbc in all three directions)")
        cell = np.asarray(item.cell.array, dtype=np.float64)
        if abs(np.linalg.det(cell)) < 1e-6:
            raise _Refused("non-periodic input (the cell has zero volume)")
        frac = np.linalg.solve(cell.T, np.asarray(item.positions, dtype=np.float64).T).T
        return RawStructure(mid, source, index, cell, _snapped(frac), list(item.get_chemical_symbols()))
    lattice, frac, elements = item
    frac = np.asarray(frac, np.float64)
    if not isinstance(item, _AsStored):
        frac = _snapped(frac)
    return RawStructure(mid, source, index, np.asarray(lattice, np.float64), frac, list(elements))


class _AsStored(tuple):
    """(lattice, frac, elements) of a MATERIALS table row: used exactly as stored (no snapping)."""


def _is_ase_atoms(item: Any) -> bool:
    return type(item).__name__ == "Atoms" and type(item).__module__.startswith("ase")


# one reader per format: each yields (own id or None, Structure / Atoms / triple / Exception) per structure
def _cif(path: Path) -> Iterator[tuple[str | None, Any]]:
    from pymatgen.io.cif import CifFile, CifParser

    text = _text(path)
    blocks = CifFile.from_str(text).data
    if not blocks:  # not a CIF at all: let the parser say so in its own words
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            CifParser(io.StringIO(text)).parse_structures(primitive=False, on_error="raise")
        raise ValueError("no data block (data_...) in the file")
    for block in blocks.values():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parser = CifParser(io.StringIO(str(block)))
                structures = parser.parse_structures(primitive=False, on_error="raise")
            if len(structures) != 1:
                raise ValueError(f"data block {block.header!r} holds {len(structures)} structures")
            yield None, structures[0]
        except Exception as e:  # noqa: BLE001 - one bad block does not spoil the others
            yield None, ValueError(f"unreadable CIF block {block.header!r}: {_message(e)}")


def _poscar(path: Path) -> Iterator[tuple[str | None, Any]]:
    from pymatgen.io.vasp import Poscar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield None, Poscar.from_str(_text(path)).structure


def _xyz(path: Path) -> Iterator[tuple[str | None, Any]]:
    import ase.io

    frames = ase.io.read(str(path), index=":", format="extxyz")
    for atoms in frames if isinstance(frames, list) else [frames]:
        yield None, atoms


def _json(path: Path) -> Iterator[tuple[str | None, Any]]:
    data = json.loads(_text(path))
    for item in data if isinstance(data, list) else [data]:
        try:
            yield _json_item(item)
        except Exception as e:  # noqa: BLE001 - one bad record does not spoil the file
            yield (
                (item.get("jid") if isinstance(item, dict) and isinstance(item.get("jid"), str) else None),
                e,
            )


def _json_item(item: Any) -> tuple[str | None, Any]:
    from pymatgen.core import Molecule, Structure

    if not isinstance(item, dict):
        raise ValueError(f"expected a JSON object per structure, got {type(item).__name__}")
    cls = item.get("@class")
    if cls == "Molecule" or (cls is None and "sites" in item and "lattice" not in item):
        return None, Molecule.from_dict(item)
    if cls == "Structure" or ("lattice" in item and "sites" in item):
        return None, Structure.from_dict(item)
    if "atoms" in item or {"lattice_mat", "coords", "elements"} <= item.keys():
        from pipeline.data.fetch import parse_structure_record

        jid = item.get("jid") if isinstance(item.get("jid"), str) and item.get("jid") else None
        record = item if "atoms" in item else {"atoms": item}
        try:
            row = parse_structure_record({"jid": jid or "", **record}, "screen")
        except ValueError as e:
            raise ValueError(f"JARVIS record {jid or ''}: {e}".replace("record : ", "record: ")) from None
        return jid, (row["lattice_mat"], row["frac_coords"], row["elements"])
    raise ValueError(
        "JSON object is neither a pymatgen Structure (@class/lattice/sites) nor a JARVIS record (atoms: "
        f"lattice_mat, coords, elements); keys {sorted(item)[:8]}"
    )


def _parquet(path: Path) -> Iterator[tuple[str | None, Any]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    needed = ["jid", "lattice_mat", "frac_coords", "elements"]
    missing = [c for c in needed if c not in pf.schema_arrow.names]
    if missing:
        raise ValueError(f"parquet file lacks the MATERIALS columns {missing}")
    for batch in pf.iter_batches(batch_size=512, columns=needed):
        for row in batch.to_pylist():
            yield str(row["jid"]), _AsStored((row["lattice_mat"], row["frac_coords"], row["elements"]))


def _text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")
