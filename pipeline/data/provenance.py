"""Provenance of model inputs: how the graphs a model reads were built, recorded once and checked everywhere.

:class:`InputProvenance` is the record. Its keys are everything that decides what a model sees of a material:

- ``k``, ``cutoff``: the featurize settings of the kNN crystal graph (``pipeline.data.graphs``), and so of its line graph;
- ``atom_features``, ``atom_features_sha256``: the atom-feature table the shard stores and batches use (CGCNN,
  jarvis-tools ``atom_init.json``; the hash is of the float32 table, so another table version is a mismatch);
- ``dos_bins``, ``dos_min_cm``, ``dos_max_cm``, ``dos_step_cm``: the DOS grid of the targets (``pipeline.grid``).

``featurize`` min_distance is not part of it: it only decides which materials are rejected as overlapping, never
what the graph of an accepted material looks like (it stays in the shard attributes as the featurize setting).

Where it lives and is checked:

- HDF5 shards: one file attribute per key (``ShardWriter`` always writes the table and grid keys, the featurize
  stage adds ``k`` and ``cutoff``);
- ``model.pt``: ``ckpt["provenance"]`` (:func:`model_provenance`): the input keys copied from the training shards,
  plus the radial-basis settings through which the model reads bond lengths and angles. ``train`` refuses shards
  with mixed provenance; ``ensemble`` refuses members that disagree; ``predict`` refuses a shard built differently
  from the model's training shards, naming the key and both values.

A key missing from a file (a shard written without featurize settings, a model file from before provenance was
recorded) is *unknown*: it cannot be checked, and predict says so in a warning instead of refusing the file.
Between files that must agree (training shards, ensemble members), "unknown" is a value like any other, so a mix
of old and new files is refused too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

from pipeline.grid import GRID_MAX_CM, GRID_MIN_CM, GRID_STEP_CM, N_BINS

#: name of the atom-feature set written into every shard (``pipeline.data.graphs.cgcnn_table``)
ATOM_FEATURES = "cgcnn"
#: the fixed ends of the model's radial bases (pipeline.nn.model.ALIGNN: bonds 0..bond_cutoff, cosines -1..1)
EDGE_RBF_MIN_A = 0.0
TRIPLET_RBF_RANGE = (-1.0, 1.0)


class ProvenanceError(ValueError):
    """Files that were built with different input settings than the ones they are used with."""


@lru_cache(maxsize=1)
def atom_features_sha256() -> str:
    """sha256 (first 16 hex) of the CGCNN table shards store: identifies the atom-feature version."""
    from pipeline.data.graphs import cgcnn_table

    return hashlib.sha256(cgcnn_table().tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class InputProvenance:
    """How a model's input graphs were built (see the module docstring); ``None`` = not recorded."""

    k: int | None = None
    cutoff: float | None = None
    atom_features: str | None = None
    atom_features_sha256: str | None = None
    dos_bins: int | None = None
    dos_min_cm: float | None = None
    dos_max_cm: float | None = None
    dos_step_cm: float | None = None

    @classmethod
    def current(cls, k: int | None = None, cutoff: float | None = None) -> InputProvenance:
        """What this code builds: its atom-feature table and DOS grid, with the given graph settings."""
        return cls(
            k=None if k is None else int(k),
            cutoff=None if cutoff is None else float(cutoff),
            atom_features=ATOM_FEATURES,
            atom_features_sha256=atom_features_sha256(),
            dos_bins=N_BINS,
            dos_min_cm=float(GRID_MIN_CM),
            dos_max_cm=float(GRID_MAX_CM),
            dos_step_cm=float(GRID_STEP_CM),
        )

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> InputProvenance:
        """From shard attributes or a model file's ``provenance`` dict; other keys are ignored, missing ones
        are unknown. Values are normalised (ints, floats, str) so that 8 and 8.0 compare equal."""
        m = m or {}
        kinds = {"k": int, "dos_bins": int, "atom_features": str, "atom_features_sha256": str}
        values = {}
        for f in fields(cls):
            v = m.get(f.name)
            if v is not None:
                v = kinds.get(f.name, float)(v.item() if hasattr(v, "item") else v)
            values[f.name] = v
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every key, ``None`` where unknown (plain types: safe for ``torch.load(weights_only=True)``)."""
        return asdict(self)

    def attrs(self) -> dict[str, Any]:
        """The known keys, as HDF5 file attributes (which cannot hold ``None``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def unknown(self) -> list[str]:
        return [k for k, v in asdict(self).items() if v is None]

    def differences(self, other: InputProvenance) -> list[tuple[str, Any, Any]]:
        """(key, self's value, other's value) for every key known in both that differs."""
        a, b = asdict(self), asdict(other)
        return [(k, a[k], b[k]) for k in a if a[k] is not None and b[k] is not None and a[k] != b[k]]


def static_attrs() -> dict[str, Any]:
    """The keys fixed by this code (atom-feature table, DOS grid): what every shard writer records."""
    return InputProvenance.current().attrs()


def model_provenance(inputs: InputProvenance, model_config: Mapping[str, Any]) -> dict[str, Any]:
    """``model.pt``'s ``provenance``: the training shards' input keys and the model's radial-basis settings."""
    return {
        **inputs.to_dict(),
        "edge_rbf_bins": int(model_config["edge_input_features"]),
        "edge_rbf_min_A": EDGE_RBF_MIN_A,
        "edge_rbf_max_A": float(model_config["bond_cutoff"]),
        "triplet_rbf_bins": int(model_config["triplet_input_features"]),
        "triplet_rbf_min": TRIPLET_RBF_RANGE[0],
        "triplet_rbf_max": TRIPLET_RBF_RANGE[1],
    }


def _show(v: Any) -> str:
    if v is None:
        return "unrecorded"
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if isinstance(v, str) else str(v)


def agreed(named: Sequence[tuple[str, InputProvenance]], what: str) -> InputProvenance:
    """The one provenance shared by every (name, provenance); :class:`ProvenanceError` naming the first key whose
    value differs (unknown counts as a value: a mix of recorded and unrecorded is refused too)."""
    if not named:
        return InputProvenance()
    first_name, first = named[0]
    for name, prov in named[1:]:
        a, b = first.to_dict(), prov.to_dict()
        for key in a:
            if a[key] != b[key]:
                raise ProvenanceError(
                    f"{what} have mixed provenance: {first_name} was built with {key}={_show(a[key])} but "
                    f"{name} with {key}={_show(b[key])}"
                )
    return first


def check_shard(
    shard: str, shard_prov: InputProvenance, model: str, model_prov: InputProvenance
) -> list[str]:
    """Raise :class:`ProvenanceError` when ``shard`` was built differently from ``model``'s inputs; return the
    warnings for what cannot be checked (keys unrecorded on either side)."""
    diffs = shard_prov.differences(model_prov)
    if diffs:
        raise ProvenanceError(
            "; ".join(
                f"shard {shard} was built with {k}={_show(s)} but model {model} expects {k}={_show(m)}"
                for k, s, m in diffs
            )
            + " (featurize the shard with the model's settings, or use a model trained on such graphs)"
        )
    warnings = []
    if model_prov.unknown():
        warnings.append(
            f"warning: model {model} does not record {', '.join(model_prov.unknown())} of its inputs (written "
            f"before model files recorded provenance?): cannot check that {shard} was built the same way"
        )
    missing = [k for k in shard_prov.unknown() if k not in model_prov.unknown()]
    if missing:
        warnings.append(f"warning: shard {shard} does not record {', '.join(missing)}: cannot check them")
    return warnings
