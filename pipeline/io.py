"""Atomic file writes and the rejects table, shared by every stage."""

from __future__ import annotations

import contextlib
import os
import tempfile
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A killed or failing writer therefore never leaves a file that looks complete.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
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
