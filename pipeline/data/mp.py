"""Materials Project phonon documents: read from local files, or fetched with the official ``mp-api`` client.

A document has the shape of MP's phonon documents, reduced to what the cross-validation needs::

    {"material_id": "mp-149", "formula_pretty": "Si",
     "structure": {pymatgen Structure.as_dict()},
     "phonon_dos": {pymatgen PhononDos or CompletePhononDos .as_dict(): "frequencies" in THz, "densities"},
     "source": "..."}

(``ph_dos`` is accepted for ``phonon_dos``, as in MP's legacy phonon documents; a CompletePhononDos may carry the
structure instead of the document.) :func:`iter_documents` reads a ``.json`` or ``.json.gz`` file or a folder of
them; each file holds one document, a list of them, or a REST response ``{"data": [...]}``.
:func:`parse_document` turns one into an :class:`MPPhonon` or raises :class:`MPDocumentError` with the reason the
crossval stage writes into its rejects table.

Remote source (:func:`fetch_documents`): ``mp_api.client.MPRester`` (installed by the ``mp`` extra; imported only
here, so local files need no mp-api), with the API key taken **only** from the environment variable ``MP_API_KEY``
and passed explicitly, so the client never falls back to a key file. What mp-api 0.46 reaches where:

- REST, at ``endpoint`` (default ``https://api.materialsproject.org/``, API key sent as ``x-api-key``):
  ``GET heartbeat`` (the client's start-up check), ``GET materials/summary/?material_ids=...&_fields=...``
  (``phonon_IDs``: which materials have a DFPT phonon calculation and its identifier) and
  ``GET materials/phonon/?identifiers=...&phonon_method=dfpt&_fields=...`` (the DFPT task: the structure the
  phonons were computed on). These follow the endpoint override; tests/test_crossval.py serves all of them from a
  loopback server.
- Object storage, **not** at the endpoint: the DOS itself, which ``PhononRester.get_dos_from_phonon_id`` reads
  from the Delta table ``s3a://materialsproject-parsed/phonon/electronic-structure/dos/`` (AWS open data,
  unsigned) with ``deltalake``. No endpoint override reaches it, so this one call (:func:`dos_from_object_storage`)
  is the only part no test runs; tests pass their own ``dos_getter``.

Downloads are cached one document per material, ``CACHE/mp_phonon/<material_id>.json.gz``, written atomically
(gzip with a zero timestamp, so a document always gives the same bytes), with its sha256 recorded in
``CACHE/mp_phonon/checksums.json`` on first download and verified on every later use, as the figshare fetch does:
a cached document that no longer matches is an error, never silently used, and a verified one is never fetched
again.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.fetch import sha256_file
from pipeline.io import atomic_path

STAGE = "crossval"
DOS_CLASSES = ("PhononDos", "CompletePhononDos", "PhononDOS")
#: MP material ids (mp-149; mvc- for the hypothetical-materials set)
MATERIAL_ID = re.compile(r"^(mp|mvc)-\d+$")
PHONON_METHOD = "dfpt"
CACHE_SUBDIR = "mp_phonon"
SUMMARY_FIELDS = ["material_id", "formula_pretty", "structure", "phonon_IDs"]
PHONON_FIELDS = ["identifier", "formula_pretty", "structure"]


class MPDocumentError(ValueError):
    """A document (or file) that cannot be used; the message is the rejects-table reason."""


class MPFetchError(RuntimeError):
    """The remote source cannot deliver as configured (no API key, no mp-api, server error, corrupt cache)."""


@dataclass(frozen=True)
class MPPhonon:
    """One MP phonon document, parsed."""

    material_id: str
    formula: str  # reduced formula (pymatgen)
    lattice_mat: np.ndarray  # (3, 3) lattice vectors as rows, Angstrom
    frac_coords: np.ndarray  # (n, 3)
    elements: list[str]  # element symbol per site
    frequencies_thz: np.ndarray  # DOS frequency grid, THz
    densities: np.ndarray  # DOS on that grid, states/THz (per cell; any scale works downstream)
    source: str


# ------------------------------------------------------------------------------------------ reading -----------
def _load_json(path: Path) -> Any:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix
        raw = gzip.decompress(raw)
    return json.loads(raw)


def document_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The ``.json``/``.json.gz`` files of a file, a folder (recursively, sorted) or a list of them."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith((".json", ".json.gz")))
            found = [f for f in found if f.name != "checksums.json"]
            if not found:
                raise MPDocumentError(f"{p}: folder holds no .json or .json.gz documents")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise MPDocumentError(f"{p} does not exist")
    return files


def iter_documents(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
) -> Iterator[tuple[str, Any | MPDocumentError]]:
    """``(where, document)`` for every document of every file, ``where`` = ``file#index``; a file that cannot be
    read or decoded yields one ``(file, MPDocumentError)`` instead, so the caller can reject it and go on."""
    for f in document_files(paths):
        try:
            data = _load_json(f)
        except (OSError, EOFError, ValueError) as exc:  # unreadable, truncated gzip, not JSON
            yield f.name, MPDocumentError(f"cannot read {f.name}: {exc}")
            continue
        if isinstance(data, dict) and isinstance(data.get("data"), list):  # a saved REST response
            data = data["data"]
        items = data if isinstance(data, list) else [data]
        for i, item in enumerate(items):
            yield f"{f.name}#{i}", item


def document_id(doc: Any) -> str | None:
    mid = doc.get("material_id") if isinstance(doc, dict) else None
    return mid.strip() if isinstance(mid, str) and mid.strip() else None


def _symbol(specie: Any) -> str:
    element = getattr(specie, "element", specie)  # Species (with oxidation state) -> its Element
    symbol = getattr(element, "symbol", None)
    if not isinstance(symbol, str) or getattr(specie, "Z", 0) <= 0:
        raise MPDocumentError(f"site species {specie!s} is not a chemical element")
    return symbol


def parse_document(doc: Any) -> MPPhonon:
    """One document -> :class:`MPPhonon`; :class:`MPDocumentError` naming what is wrong otherwise.

    Checked here: the id, that the DOS is a pymatgen phonon DOS with numeric, finite frequencies and densities of
    equal length, and that the structure is an ordered pymatgen Structure of real elements. Physical checks
    (overlapping atoms, negative or all-zero DOS) are the crossval stage's, with the dos stage's code.
    """
    from pymatgen.core import Structure
    from pymatgen.phonon.dos import CompletePhononDos, PhononDos

    if not isinstance(doc, dict):
        raise MPDocumentError(f"document is a {type(doc).__name__}, not a JSON object")
    mid = document_id(doc)
    if mid is None:
        raise MPDocumentError("document has no 'material_id'")
    if not MATERIAL_ID.match(mid):
        raise MPDocumentError(f"material_id {mid!r} is not a Materials Project id (mp-<number>)")
    dos_dict = doc.get("phonon_dos", doc.get("ph_dos"))
    if not isinstance(dos_dict, dict):
        raise MPDocumentError("document has no 'phonon_dos' object")
    cls = dos_dict.get("@class")
    if cls is not None and cls not in DOS_CLASSES:
        raise MPDocumentError(f"phonon_dos is a {cls!r}, expected one of {list(DOS_CLASSES)}")
    try:
        dos = (CompletePhononDos if cls == "CompletePhononDos" else PhononDos).from_dict(dos_dict)
        freqs = np.asarray(dos.frequencies, dtype=np.float64)
        dens = np.asarray(dos.densities, dtype=np.float64)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MPDocumentError(
            f"phonon_dos is not a pymatgen phonon DOS ({type(exc).__name__}: {exc})"
        ) from exc
    if freqs.ndim != 1 or freqs.shape != dens.shape or freqs.size < 2:
        raise MPDocumentError(
            f"phonon_dos frequencies {freqs.shape} and densities {dens.shape} must be equal 1-d arrays (>= 2)"
        )
    if not (np.isfinite(freqs).all() and np.isfinite(dens).all()):
        raise MPDocumentError("phonon_dos has NaN or infinite frequencies or densities")

    struct_dict = doc.get("structure")
    if struct_dict is None and cls == "CompletePhononDos":
        struct_dict = dos_dict.get("structure")
    if not isinstance(struct_dict, dict):
        raise MPDocumentError("document has no 'structure' object")
    try:
        structure = Structure.from_dict(struct_dict)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on malformed dicts; all are a reject
        raise MPDocumentError(f"structure is not a pymatgen Structure ({type(exc).__name__}: {exc})") from exc
    if len(structure) == 0:
        raise MPDocumentError("structure has no sites")
    if not structure.is_ordered:
        raise MPDocumentError("structure is disordered (partial occupancies): no crystal graph")
    elements = [_symbol(site.specie) for site in structure]
    formula = doc.get("formula_pretty")
    return MPPhonon(
        material_id=mid,
        formula=structure.composition.reduced_formula if not isinstance(formula, str) else formula,
        lattice_mat=np.asarray(structure.lattice.matrix, dtype=np.float64),
        frac_coords=np.asarray(structure.frac_coords, dtype=np.float64),
        elements=elements,
        frequencies_thz=freqs,
        densities=dens,
        source=str(doc.get("source", "")),
    )


# ------------------------------------------------------------------------------------------ remote ------------
def dos_from_object_storage(mpr: Any, identifier: str) -> dict[str, Any]:
    """The DFPT DOS of phonon task ``identifier`` from MP's object storage (not the REST endpoint)."""
    return mpr.materials.phonon.get_dos_from_phonon_id(identifier, PHONON_METHOD)


def _write_document(path: Path, doc: dict[str, Any]) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(json.dumps(doc, sort_keys=True).encode())
        digest = sha256_file(tmp)
    return digest


def _load_sums(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except ValueError as exc:
        raise MPFetchError(f"{path} is not valid JSON ({exc}); delete it to verify the cache afresh") from exc


def _save_sums(path: Path, sums: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")


def _dos_dict(dos: Any) -> dict[str, Any]:
    d = dos.as_dict() if hasattr(dos, "as_dict") else dos.model_dump() if hasattr(dos, "model_dump") else dos
    if not isinstance(d, dict) or "frequencies" not in d or "densities" not in d:
        raise MPDocumentError("object storage returned no frequencies/densities")
    return {
        "@module": "pymatgen.phonon.dos",
        "@class": "PhononDos",
        "frequencies": [float(f) for f in d["frequencies"]],
        "densities": [float(v) for v in d["densities"]],
    }


def fetch_documents(
    material_ids: Iterable[str],
    cache_dir: str | os.PathLike,
    endpoint: str | None = None,
    dos_getter: Callable[[Any, str], Any] | None = None,
) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """Documents of ``material_ids`` (DFPT phonons) from the Materials Project, cached under ``cache_dir``.

    Returns the cached document files (verified) and rejects rows for ids that are not MP ids, have no DFPT
    phonon calculation, or whose DOS cannot be retrieved. ``dos_getter(mpr, identifier)`` replaces
    :func:`dos_from_object_storage` (tests). Raises :class:`MPFetchError` for what stops the whole fetch.
    """
    ids = sorted({str(m).strip() for m in material_ids})
    rejects = [
        (m, STAGE, "not a Materials Project id (mp-<number>)") for m in ids if not MATERIAL_ID.match(m)
    ]
    ids = [m for m in ids if MATERIAL_ID.match(m)]
    folder = Path(cache_dir) / CACHE_SUBDIR
    sums_path = folder / "checksums.json"
    sums = _load_sums(sums_path)
    have, need = [], []
    for mid in ids:
        path = folder / f"{mid}.json.gz"
        if path.exists():
            digest = sha256_file(path)
            if mid in sums and sums[mid] != digest:
                raise MPFetchError(
                    f"{path}: sha256 {digest[:12]}… does not match the recorded {sums[mid][:12]}…; "
                    "delete the file to download it again"
                )
            sums.setdefault(mid, digest)
            have.append(path)
        else:
            need.append(mid)
    try:
        if need:
            fetched, bad = _download(need, folder, sums, endpoint, dos_getter or dos_from_object_storage)
            have += fetched
            rejects += bad
    finally:  # what was downloaded before a failure keeps its checksum
        if ids:
            _save_sums(sums_path, sums)
    return sorted(have), rejects


def _download(
    ids: list[str],
    folder: Path,
    sums: dict[str, str],
    endpoint: str | None,
    dos_getter: Callable[[Any, str], Any],
) -> tuple[list[Path], list[tuple[str, str, str]]]:
    api_key = os.environ.get("MP_API_KEY", "").strip()
    if not api_key:
        raise MPFetchError(
            "MP_API_KEY is not set: export your Materials Project API key (materialsproject.org/api) in the "
            "environment; it is never read from a file"
        )
    try:
        import requests
        from mp_api.client import MPRester
        from mp_api.client.core import MPRestError
    except ImportError as exc:
        raise MPFetchError(
            f"the mp-api client is not installed ({exc}): pip install 'phonon-pipeline[mp]'"
        ) from exc
    written, rejects = [], []
    try:
        with MPRester(
            api_key=api_key, endpoint=endpoint, use_document_model=False, mute_progress_bars=True
        ) as mpr:
            summary = mpr.materials.summary.search(material_ids=ids, fields=SUMMARY_FIELDS)
            phonon_id: dict[str, str] = {}
            for doc in summary:
                dfpt = (doc.get("phonon_IDs") or {}).get(PHONON_METHOD) or []
                if dfpt:
                    phonon_id[str(doc["material_id"])] = str(dfpt[0])
            for mid in ids:
                if mid not in phonon_id:
                    rejects.append((mid, STAGE, "Materials Project has no DFPT phonon calculation for it"))
            tasks = {}
            if phonon_id:
                found = mpr.materials.phonon.search(
                    identifiers=sorted(set(phonon_id.values())),
                    phonon_method=PHONON_METHOD,
                    fields=PHONON_FIELDS,
                )
                tasks = {str(t.get("identifier")): t for t in found}
            structures = {str(d["material_id"]): d.get("structure") for d in summary}
            for mid, pid in sorted(phonon_id.items()):
                task = tasks.get(pid, {})
                try:
                    dos = _dos_dict(dos_getter(mpr, pid))
                except (MPRestError, MPDocumentError, requests.RequestException, OSError) as exc:
                    rejects.append(
                        (mid, STAGE, f"DFPT DOS {pid} not retrievable from MP object storage: {exc}")
                    )
                    continue
                doc = {
                    "material_id": mid,
                    "formula_pretty": task.get("formula_pretty"),
                    # the structure the phonons were computed on; the summary's only when the task has none
                    "structure": task.get("structure") or structures.get(mid),
                    "phonon_dos": dos,
                    "source": f"mp-api {mpr.endpoint} phonon {pid} ({PHONON_METHOD})",
                }
                path = folder / f"{mid}.json.gz"
                sums[mid] = _write_document(path, doc)
                written.append(path)
    except MPRestError as exc:
        raise MPFetchError(f"Materials Project REST query failed: {exc}") from exc
    except requests.ConnectionError as exc:
        raise MPFetchError(
            f"cannot reach the Materials Project API ({exc.__class__.__name__}); this machine looks offline. "
            "Use crossval.source: local with a file of MP phonon documents"
        ) from exc
    return written, rejects
