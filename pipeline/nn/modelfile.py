"""Model files are data, not code: the one reader of ``model.pt`` / ``checkpoint.pt`` files.

Every such file is read with ``torch.load(weights_only=True)``: tensors, dicts, lists, tuples, str, int, float,
bool and None only, so a file whose pickle would run code (a ``__reduce__`` calling ``os.system``, say) is refused
before any of it runs. The pipeline writes nothing else into these files (RNG states as tensors and plain values,
settings as plain dicts; ``pipeline.nn.train``).

:func:`read_checkpoint` turns what ``torch.load`` raises into two clear errors:

- :class:`UnsafeModelFileError`: the file holds objects other than those (not a file this pipeline wrote, or one
  written by a version from before this rule); the stages refuse it and exit non-zero;
- :class:`CorruptModelFileError`: truncated, empty or not a torch file at all; ``train`` sets such a
  ``checkpoint.pt`` aside and starts over, the other stages refuse it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be used; the message names the file and the reason."""


class UnsafeModelFileError(ModelFileError):
    """The file's pickle holds objects that ``weights_only`` loading refuses to build."""


class CorruptModelFileError(ModelFileError):
    """The file is truncated, empty or not a torch file (or not the dict this pipeline writes)."""


class MissingModelFileError(ModelFileError, FileNotFoundError):
    """There is no file at the path."""


def _reason(e: BaseException) -> str:
    """The line of an exception's message that says what is wrong (torch's weights_only message is a page)."""
    lines = [ln.strip().removeprefix("WeightsUnpickler error:").strip() for ln in str(e).splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in lines:
        if "GLOBAL" in ln or ln.startswith(("Unsupported", "Trying to load")):
            return ln.split(". ")[0].rstrip(".")
    return f"{type(e).__name__}: {lines[0].split('. ')[0]}" if lines else type(e).__name__


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The dict in a ``model.pt`` / ``checkpoint.pt``, loaded as data only (``weights_only=True``).

    Raises :class:`UnsafeModelFileError`, :class:`CorruptModelFileError` or :class:`MissingModelFileError` (all
    :class:`ModelFileError`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingModelFileError(f"model file {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes a clear, typed error naming the file
        message = str(e)
        # the pickle asks for a global (a class or function to build or call): refused, never run
        if "weights only load failed" in message.lower() and "global" in message.lower():
            raise UnsafeModelFileError(
                f"{path} is not a model file this pipeline wrote (refusing to unpickle arbitrary objects: "
                f"{_reason(e)})"
            ) from None
        size = path.stat().st_size
        raise CorruptModelFileError(
            f"{path} is not a readable model file ({size} bytes; truncated or corrupt: {_reason(e)})"
        ) from None
    if not isinstance(obj, dict):
        raise CorruptModelFileError(f"{path} holds a {type(obj).__name__}, not the dict of a model file")
    return obj
