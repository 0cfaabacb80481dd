"""The fetch stage's library: JARVIS-DFT structures and phonon DOS -> results/fetch/{structures,dos_raw,rejects}.parquet.
The command line is ``pipeline.stages.fetch``.

Sources
- structures: ``figshare`` (the ``dft_3d`` record of jarvis-tools' figshare table, downloaded, cached and
  checksummed) or ``local`` (a JARVIS-format JSON / JSON zip, or a directory of them).
- DOS: ``leaderboard`` (the paper's 14,243 spectra and official split shipped in the ``jarvis-leaderboard`` package)
  or ``figshare`` (``edos_pdos`` records, ``pdos_elast`` sampled every 5 cm^-1 from 0 to 995 cm^-1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import requests
from tqdm import tqdm

from pipeline.config import ConfigNode
from pipeline.data.moduli import modulus
from pipeline.data.structures import MIN_VOLUME_A3, cell_volume, structure_arrays
from pipeline.grid import FREQ_CM
from pipeline.io import atomic_path, write_parquet, write_rejects
from pipeline.schemas import DOS_RAW, STRUCTURES

log = logging.getLogger("pipeline.data.fetch")

FIGSHARE_FILES_URL = "https://ndownloader.figshare.com/files"
LEADERBOARD_DOS = "benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip"
#: frequencies of edos_pdos ``pdos_elast`` (JARVIS phonon DOS interpolated on 0..995 cm^-1, step 5)
PDOS_ELAST_FREQ_CM = np.arange(0.0, 1000.0, 5.0)
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download or read that cannot succeed as configured (offline, corrupt file, bad format)."""


@dataclass(frozen=True)
class FigshareSettings(ConfigNode):
    """The ``figshare`` config section: where and how figshare files are downloaded (meaning, defaults and bounds:
    pipeline/config.schema.yaml)."""

    KEY: ClassVar[str] = "figshare"
    mirror: str | None
    retries: int
    timeout_s: float


# --------------------------------------------------------------------------------- figshare download -----------
@dataclass(frozen=True)
class FigshareRecord:
    name: str
    url: str
    member: str  # JSON file inside the zip

    @property
    def file_id(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def figshare_record(name: str) -> FigshareRecord:
    """Look the dataset up in jarvis-tools' own figshare table, so URLs follow jarvis-tools releases."""
    from jarvis.db.figshare import get_db_info

    info = get_db_info()
    if name not in info:
        raise FetchError(f"'{name}' is not a jarvis-tools figshare dataset (known: {sorted(info)[:8]}...)")
    url, member = info[name][0], info[name][1]
    return FigshareRecord(name=name, url=url, member=member)


def resolve_url(record: FigshareRecord, mirror: str | None) -> str:
    """The URL (or local file path) to fetch ``record`` from: figshare, or ``mirror``/<file id>."""
    if not mirror:
        return record.url
    return f"{mirror.rstrip('/')}/{record.file_id}"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _load_checksums(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def _save_checksums(path: Path, sums: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")


def _check_zip(path: Path, member: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            if member not in zf.namelist():
                raise FetchError(f"{path.name}: zip has no member '{member}' (has {zf.namelist()[:3]})")
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise FetchError(
            f"{path.name}: not a valid zip ({exc}); the download is truncated or corrupt"
        ) from exc
    if bad is not None:
        raise FetchError(f"{path.name}: CRC error in member '{bad}'; the download is corrupt")


def _download_once(url: str, tmp: Path, timeout_s: float) -> None:
    if "://" not in url:  # a mirror directory on disk
        shutil.copyfile(url, tmp)
        return
    with requests.get(url, stream=True, timeout=timeout_s) as resp:
        resp.raise_for_status()
        expected = int(resp.headers.get("Content-Length", 0)) or None
        got = 0
        with (
            open(tmp, "wb") as fh,
            tqdm(total=expected, unit="B", unit_scale=True, desc=Path(url).name, disable=None) as bar,
        ):
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if expected is not None and got != expected:
        raise FetchError(f"{url}: got {got} bytes, server announced {expected} (connection dropped)")


def download_record(
    record: FigshareRecord,
    cache_dir: str | os.PathLike,
    figshare: FigshareSettings,
    backoff_s: float = 1.0,
) -> Path:
    """Download ``record``'s zip into ``cache_dir`` (atomic, retried, checksummed) and return its path.

    ``figshare``: the mirror, the retries after a failed attempt (waiting ``backoff_s * 2**attempt`` seconds) and
    the timeout per HTTP request.

    The sha256 of the first good download is recorded in ``cache_dir/checksums.json``; a cached file or a later
    download that does not match it is an error, never silently used.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"{record.name}.zip"
    sums_path = cache / "checksums.json"
    sums = _load_checksums(sums_path)
    if dest.exists():
        digest = sha256_file(dest)
        if record.name in sums and sums[record.name] != digest:
            raise FetchError(
                f"{dest}: sha256 {digest[:12]}… does not match the recorded {sums[record.name][:12]}…; "
                "delete the file to download it again"
            )
        _check_zip(dest, record.member)
        sums.setdefault(record.name, digest)
        _save_checksums(sums_path, sums)
        return dest

    url = resolve_url(record, figshare.mirror)
    retries, timeout_s = figshare.retries, figshare.timeout_s
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with atomic_path(dest) as tmp:
                _download_once(url, tmp, timeout_s)
                _check_zip(tmp, record.member)
                digest = sha256_file(tmp)
                if record.name in sums and sums[record.name] != digest:
                    raise FetchError(
                        f"{url}: sha256 {digest[:12]}… differs from recorded {sums[record.name][:12]}…"
                    )
            sums[record.name] = digest
            _save_checksums(sums_path, sums)
            return dest
        except (requests.RequestException, FetchError, OSError) as exc:
            last_error = exc
            log.warning("download of %s failed (attempt %d/%d): %s", url, attempt + 1, retries + 1, exc)
            if attempt < retries:
                time.sleep(backoff_s * 2**attempt)
    if isinstance(last_error, requests.ConnectionError):
        raise FetchError(
            f"cannot reach {url} ({last_error.__class__.__name__}); this machine looks offline. "
            "Set figshare.mirror to a reachable copy, or use source: local"
        ) from last_error
    raise FetchError(f"download of {url} failed after {retries + 1} attempts: {last_error}") from last_error


# --------------------------------------------------------------------------------- reading records -------------
class UnreadableFile(FetchError):
    """A records file that cannot be parsed at all (garbage, binary, empty, truncated, not a list)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_json_records(path: str | os.PathLike, member: str | None = None) -> list[dict[str, Any]]:
    """Records from a JARVIS JSON file or a zip holding one (``member`` or its single .json member).

    Raises :class:`UnreadableFile` (a FetchError) with the parser's message when the file cannot be read.
    """
    path = Path(path)
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [member] if member else [n for n in zf.namelist() if n.endswith(".json")]
                if len(names) != 1:
                    raise UnreadableFile(path, f"expected one JSON member, found {names}")
                raw = zf.read(names[0])
        else:
            raw = path.read_bytes()
        if not raw.strip():
            raise UnreadableFile(path, "file is empty")
        data = json.loads(raw)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableFile(path, f"not a readable zip ({exc}); truncated or corrupt") from exc
    except UnicodeDecodeError as exc:
        raise UnreadableFile(path, f"not JSON text (binary or not UTF-8: {exc})") from exc
    except json.JSONDecodeError as exc:
        raise UnreadableFile(path, f"not valid JSON ({exc}); truncated or not a JARVIS file") from exc
    except RecursionError as exc:
        raise UnreadableFile(path, "not a JARVIS file (JSON nested too deeply)") from exc
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(data, list):
        raise UnreadableFile(path, f"expected a JSON list of JARVIS records, got {type(data).__name__}")
    return data


def local_record_files(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.json"), *p.glob("*.json.zip")])
        if not files:
            raise FetchError(f"{p}: directory holds no *.json or *.json.zip files")
        return files
    if not p.exists():
        raise FetchError(f"local_path {p} does not exist")
    return [p]


def read_local_records(
    local_path: str | os.PathLike,
) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str, str]]]:
    """(records, a label per record, rejects) from a local JARVIS file or directory of them.

    In a directory, a file that cannot be read is a rejects row (file name, 'fetch', the parser's message) and
    the other files go through; a single file given alone, or a directory none of whose files can be read, is a
    :class:`FetchError` (nothing to do).
    """
    files = local_record_files(local_path)
    records: list[dict[str, Any]] = []
    labels: list[str] = []
    rejects: list[tuple[str, str, str]] = []
    for f in files:
        try:
            file_records = read_json_records(f)
        except UnreadableFile as exc:
            if not Path(local_path).is_dir():
                raise
            log.warning("skipping unreadable %s: %s", f, exc.reason)
            rejects.append((f.name, "fetch", f"unreadable file: {exc.reason}"))
            continue
        records.extend(file_records)
        labels.extend(f"{f.name} record #{i}" for i in range(len(file_records)))
    if rejects and len(rejects) == len(files):
        raise FetchError(
            f"{local_path}: no readable records file: " + "; ".join(f"{j}: {r}" for j, _, r in rejects)
        )
    return records, labels, rejects


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "na", "nan", "none"})


def _elastic_tensor(value: Any) -> list[list[float]] | None:
    """A finite 6x6 tensor, or None (missing or malformed: an optional field never costs the structure)."""
    if _is_missing(value):
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr.tolist() if arr.shape == (6, 6) and np.isfinite(arr).all() else None


def parse_structure_record(rec: dict[str, Any], default_source: str) -> dict[str, Any]:
    """One JARVIS record -> a STRUCTURES row. Raises ValueError with the reason when it cannot be read.

    Shapes and finiteness are checked by :func:`pipeline.data.structures.structure_arrays` (the first half of the
    validator the dos and featurize stages run in full).
    """
    atoms = rec.get("atoms")
    if not isinstance(atoms, dict):
        raise ValueError("record has no 'atoms' object")
    missing = [key for key in ("lattice_mat", "coords", "elements") if key not in atoms]
    if missing:
        raise ValueError(f"atoms has no {', '.join(missing)}")
    lattice, coords, elements = structure_arrays(atoms["lattice_mat"], atoms["coords"], atoms["elements"])
    if atoms.get("cartesian", False):
        if not cell_volume(lattice) > MIN_VOLUME_A3:
            raise ValueError("Cartesian coordinates in a degenerate cell (|det lattice_mat| ~ 0)")
        coords = np.linalg.solve(lattice.T, coords.T).T
    mp_id = rec.get("reference")
    return {
        "jid": str(rec["jid"]),
        "lattice_mat": lattice.tolist(),
        "frac_coords": coords.tolist(),
        "elements": elements,
        "source": str(rec.get("source", default_source)),
        "relaxation": str(rec.get("relaxation", "jarvis")),
        "mp_id": str(mp_id) if isinstance(mp_id, str) and mp_id.startswith("mp-") else None,
        "elastic_tensor": _elastic_tensor(rec.get("elastic_tensor")),
        # figshare dft_3d field names; 'na' and failed fits (<= 0) are None (pipeline.data.moduli.modulus)
        "bulk_modulus_gpa": modulus(rec.get("bulk_modulus_kv")),
        "shear_modulus_gpa": modulus(rec.get("shear_modulus_gv")),
    }


def structures_from_records(
    records: Iterable[dict[str, Any]], default_source: str, labels: list[str] | None = None
) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """STRUCTURES rows of the records that parse, and rejects for the others. ``labels`` names each record in the
    rejects when it has no id (default ``record#i``). A rejected copy of an id that occurs more than once says so:
    the dos stage keeps the first usable of the copies that parse."""
    records = list(records)
    ids = [rec.get("jid") if isinstance(rec, dict) else None for rec in records]
    copies = Counter(str(j) for j in ids if not _is_missing(j))
    seen: Counter[str] = Counter()
    rows, rejects = [], []
    progress = tqdm(
        list(zip(records, ids, strict=True)), desc="structures", unit="rec", mininterval=2, disable=None
    )
    for i, (rec, jid) in enumerate(progress):
        if not isinstance(rec, dict) or _is_missing(jid):
            label = labels[i] if labels is not None else f"record#{i}"
            what = (
                "record has no 'jid'"
                if isinstance(rec, dict)
                else f"record is a {type(rec).__name__}, not an object"
            )
            rejects.append((label, "fetch", what))
            continue
        seen[str(jid)] += 1
        try:
            rows.append(parse_structure_record(rec, default_source))
        except ValueError as exc:
            reason = f"unparsable structure: {exc}"
            if copies[str(jid)] > 1:
                reason += f" (copy {seen[str(jid)]} of {copies[str(jid)]} with this jid)"
            rejects.append((str(jid), "fetch", reason))
    return pa.Table.from_pylist(rows, schema=STRUCTURES), rejects


def leaderboard_dos_records() -> Iterator[dict[str, Any]]:
    """The paper's DOS set: 14,243 spectra on the 66-point grid with the official train/val/test split."""
    path = resources.files("jarvis_leaderboard").joinpath(LEADERBOARD_DOS)
    with resources.as_file(path) as p, zipfile.ZipFile(p) as zf:
        data = json.loads(zf.read(zf.namelist()[0]))
    freqs = FREQ_CM.tolist()
    for split in ("train", "val", "test"):
        for jid, text in data[split].items():
            yield {
                "jid": jid,
                "frequencies": freqs,
                "values": [float(v) for v in text.split(";")],
                "unit": "cm-1",
                "official_split": split,
                "dos_source": "leaderboard",
            }


def figshare_dos_records(
    records: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """edos_pdos records -> DOS_RAW rows from ``pdos_elast``; records without a phonon DOS are not phonon data
    (the edos_pdos set also holds electronic DOS for ~55k materials) and are skipped, not rejected."""
    rows, rejects = [], []
    freqs = PDOS_ELAST_FREQ_CM.tolist()
    for rec in records:
        jid = rec.get("jid")
        pdos = rec.get("pdos_elast")
        if _is_missing(jid) or _is_missing(pdos):
            continue
        try:
            values = [float(v) for v in pdos]
        except (TypeError, ValueError):
            rejects.append((str(jid), "fetch", "pdos_elast is not a list of numbers"))
            continue
        if len(values) != len(freqs):
            rejects.append((str(jid), "fetch", f"pdos_elast has {len(values)} values, expected {len(freqs)}"))
            continue
        rows.append(
            {
                "jid": str(jid),
                "frequencies": freqs,
                "values": values,
                "unit": "cm-1",
                "official_split": None,
                "dos_source": "figshare",
            }
        )
    return rows, rejects


# --------------------------------------------------------------------------------- stage -----------------------
def run(
    source: str,
    dos_source: str,
    local_path: str | None,
    figshare: FigshareSettings,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
) -> dict[str, int]:
    """The stage: structures from ``source`` (``local_path`` for ``local``), spectra from ``dos_source`` (figshare
    downloads cached in ``cache_dir`` as ``figshare`` says) -> ``out_dir``/{structures,dos_raw,rejects}.parquet;
    returns the counts. Raises :class:`FetchError` when a source cannot be read."""
    out = Path(out_dir)
    rejects: list[tuple[str, str, str]] = []
    if source == "local":
        if not local_path:
            raise FetchError("source=local needs local_path")
        records, labels, rejects = read_local_records(local_path)
        default_source = f"local:{Path(local_path).name}"
    elif source == "figshare":
        rec = figshare_record("dft_3d")
        records = read_json_records(download_record(rec, cache_dir, figshare), rec.member)
        labels = None
        default_source = f"figshare:{rec.member}"
    else:
        raise FetchError(f"unknown source '{source}' (figshare | local)")
    structures, bad = structures_from_records(records, default_source, labels)
    rejects += bad

    if dos_source == "leaderboard":
        dos_rows = list(leaderboard_dos_records())
    elif dos_source == "figshare":
        rec = figshare_record("edos_pdos")
        dos_rows, bad = figshare_dos_records(
            read_json_records(download_record(rec, cache_dir, figshare), rec.member)
        )
        rejects += bad
    else:
        raise FetchError(f"unknown dos_source '{dos_source}' (leaderboard | figshare)")

    write_parquet(structures, out / "structures.parquet", STRUCTURES)
    write_parquet(pa.Table.from_pylist(dos_rows, schema=DOS_RAW), out / "dos_raw.parquet", DOS_RAW)
    write_rejects(rejects, out / "rejects.parquet")
    counts = {"structures": structures.num_rows, "spectra": len(dos_rows), "rejects": len(rejects)}
    return counts
