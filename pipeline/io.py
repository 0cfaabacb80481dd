"""Atomic file writes and the rejects table, shared by every stage."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schemas import REJECTS, conform


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


#: a temporary of another host (shared file system), or of the naming before the writer was recorded, is stale
#: once it has not been written to for this long (a live writer's pid cannot be checked there)
STALE_TEMP_SECONDS = 24 * 3600


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _stale(entry: os.DirEntry, writer: str, now: float) -> bool:
    """Whether the temporary ``entry`` (``writer`` = the part between ``.{name}.`` and ``.tmp``) is left over."""
    parts = writer.split(".")
    if len(parts) == 3 and parts[1].isdigit():  # {host}.{pid}.{random}: this naming
        host, pid = parts[0], int(parts[1])
        if host == _host():
            return pid != os.getpid() and not _pid_alive(pid)
    elif len(parts) != 1:  # not a temporary of this output (e.g. of an output named "{name}.x")
        return False
    try:
        return now - entry.stat().st_mtime > STALE_TEMP_SECONDS
    except FileNotFoundError:
        return False


def remove_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Delete the temporaries ``.{name}.*.tmp`` of output ``final`` left by killed writers; return them.

    A temporary names its writer (``.{name}.{host}.{pid}.{random}.tmp``): it is removed when that process is gone
    (same host), or when it is older than :data:`STALE_TEMP_SECONDS` (other host, older naming). Live writers of
    the same output and temporaries of other outputs are never touched, so parallel jobs cannot delete each
    other's files (a reused pid only keeps a dead writer's file longer)."""
    final = Path(final)
    prefix, removed, now = f".{final.name}.", [], time.time()
    try:
        entries = list(os.scandir(final.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp") and len(name) > len(prefix) + 4):
            continue
        if entry.is_file(follow_symlinks=False) and _stale(entry, name[len(prefix) : -4], now):
            with contextlib.suppress(FileNotFoundError):  # another job removed it first
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                print(f"removed stale temporary {entry.path} (its writer is gone)", file=sys.stderr)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A killed or failing writer therefore never leaves a file that looks complete. The temporary is
    ``.{name}.{host}.{pid}.{random}.tmp``; those a killed writer of the same output left behind are deleted
    first (:func:`remove_stale_temporaries`).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.{_host()}.{os.getpid()}.", suffix=".tmp", dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs should be readable like any other file
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(
    table: pa.Table | pd.DataFrame, path: str | os.PathLike, schema: pa.Schema | None = None
) -> None:
    """Write ``table`` atomically, conformed to ``schema`` when given."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    if schema is not None:
        table = conform(table, schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def rejects_frame(rows: Iterable[tuple[str, str, str]]) -> pd.DataFrame:
    """(jid, stage, reason) tuples -> the rejects DataFrame, sorted for deterministic output."""
    df = pd.DataFrame(list(rows), columns=REJECTS.names, dtype="string")
    return df.sort_values(["stage", "jid", "reason"], kind="stable").reset_index(drop=True)


def write_rejects(rows: Iterable[tuple[str, str, str]], path: str | os.PathLike) -> pd.DataFrame:
    df = rejects_frame(rows)
    write_parquet(pa.Table.from_pandas(df, preserve_index=False), path, REJECTS)
    return df
