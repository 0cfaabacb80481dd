"""Screening of any crystal structures: predicted phonon DOS and thermal properties, with ensemble uncertainties
and flags, streamed chunk by chunk into ``screen.parquet`` (schema ``pipeline.schemas.SCREEN``), plus the rejects,
the units table and the summary of :mod:`pipeline.screening.summary`. The command line is
``pipeline.stages.screen`` (its help describes the inputs, outputs, columns and flags); the settings are the
``screen`` section (:class:`ScreenSettings`) and the properties/featurize values :func:`run` names.

- :func:`load_model`: a model file through :func:`pipeline.nn.pretrained.load_for_screening`, refused when its
  inputs differ from what this code builds; the graphs follow the model's own k and cutoff.
- :func:`screening_table`: the SCREEN rows of one chunk from every member's prediction (ensemble mean, per-bin
  std, properties of the mean and their spread over the members, ``beyond_grid``, ``unseen_elements``,
  ``ood_score``).
- :func:`expected_predictions`: what the shipped model predicts for ``data/examples`` (the reference that
  ``tests/test_screen.py`` checks; ``python -m pipeline.stages.pretrained expected`` writes it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import ConfigNode
from pipeline.data.readers import RawStructure, ReadError, iter_files, read_paths
from pipeline.grid import FREQ_CM, N_BINS, THZ_TO_CM

log = logging.getLogger("pipeline.screening.screen")


@dataclass(frozen=True)
class ScreenSettings(ConfigNode):
    """The ``screen`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml). ``path`` and
    ``pool`` are the workflow's switches (which structures the rules screen); ``model`` is the model file when the
    command line names none (null: the shipped model)."""

    KEY: ClassVar[str] = "screen"
    path: str | None
    model: str | None
    pool: bool
    max_atoms: int
    beyond_grid_weight: float
    batch_size: int
    top_n: int


STAGE = "screen"
#: bins at or above this frequency are "the top of the grid" for beyond_grid
TOP_BINS_FROM_CM = 940.0
#: chemistry criterion (c) of beyond_grid
SHORT_BOND_A = 1.6
LIGHT_ANIONS = frozenset({5, 6, 7, 8, 9})  # B, C, N, O, F
LIGHT_PARTNER_MAX_Z = 17
#: ... and any bond to O or F shorter than this (terminal M=O of vanadates, molybdates, niobates; Si-O, P-O, S-O)
SHORT_OXO_BOND_A = 1.7
OXO_ANIONS = frozenset({8, 9})  # O, F
#: structures read, featurised and predicted at a time (the command line's --chunk; memory, not results)
DEFAULT_CHUNK = 256


class ScreenError(RuntimeError):
    """The run cannot start or produced nothing (empty input, unusable model); the message says why."""


# ------------------------------------------------------------------------------------------ model -------------
def load_model(path: str | os.PathLike, device: str = "cpu"):
    """:func:`pipeline.nn.pretrained.load_for_screening`, refusing a model whose inputs differ from what this code
    builds (atom-feature table, DOS grid); k and cutoff are taken from the model."""
    from pipeline.data.provenance import InputProvenance, ProvenanceError
    from pipeline.nn.pretrained import load_for_screening

    model = load_for_screening(path, device)
    here = InputProvenance.current(model.k, model.cutoff)
    diffs = model.provenance.differences(here)
    if diffs:
        raise ProvenanceError(
            "; ".join(
                f"model {path} was trained with {k}={a!r} but this code builds {k}={b!r}" for k, a, b in diffs
            )
        )
    out_dim = model.members[0].config.out_dim  # a stability head adds a column after these
    if out_dim != N_BINS:
        raise ProvenanceError(f"model {path} predicts {out_dim} values, not the {N_BINS}-bin DOS")
    return model


def predict_members(members: Sequence[Any], graphs: Sequence[Any], batch_size: int) -> np.ndarray:
    """(n_members, n_graphs, n_outputs) float64 outputs of every member (66 DOS bins, then a stability head's
    value where the model has one: :func:`pipeline.nn.model.split_outputs`), batch by batch, in float32 on the CPU
    (:func:`pipeline.nn.inference.iter_predictions`, the one inference loop; the members share each batch's edge
    indices, :class:`pipeline.nn.model.MemberOutputs`)."""
    import torch

    from pipeline.data.shards import collate
    from pipeline.nn.inference import iter_predictions
    from pipeline.nn.model import MemberOutputs, n_outputs

    model = MemberOutputs(list(members))
    batches = (collate(list(graphs[lo : lo + batch_size])) for lo in range(0, len(graphs), batch_size))
    out = np.empty((len(members), len(graphs), n_outputs(members[0].config)), dtype=np.float64)
    lo = 0
    for batch, pred in iter_predictions(model, batches, torch.device("cpu"), "fp32"):
        out[:, lo : lo + batch.n_graphs] = pred.numpy()
        lo += batch.n_graphs
    return out


# ------------------------------------------------------------------------------------------ composition -------
@lru_cache(maxsize=65536)
def _composition(counts: tuple[tuple[str, int], ...]) -> tuple[str, int, float]:
    """(reduced formula, atoms per formula unit, formula mass g/mol) of element counts (pymatgen, cached)."""
    from pymatgen.core import Composition

    reduced, _ = Composition(dict(counts)).get_reduced_composition_and_factor()
    return reduced.reduced_formula, int(round(reduced.num_atoms)), float(reduced.weight)


def composition(elements: Sequence[str]) -> tuple[str, int, float]:
    uniq, counts = np.unique(np.asarray(elements, dtype=str), return_counts=True)
    return _composition(tuple(zip(uniq.tolist(), counts.tolist(), strict=True)))


# ------------------------------------------------------------------------------------------ flags -------------
def top_bins_weight(dos: np.ndarray) -> np.ndarray:
    """Fraction of the non-negative-frequency DOS (bin sums) in the bins at >= TOP_BINS_FROM_CM."""
    g = np.atleast_2d(np.asarray(dos, dtype=np.float64))
    pos = g[..., FREQ_CM >= 0].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pos > 0, g[..., FREQ_CM >= TOP_BINS_FROM_CM].sum(axis=-1) / pos, np.nan)


def short_light_bond(graph: Any) -> str | None:
    """'B-N 1.57 A' for the shortest bond of criterion (c) of beyond_grid, or None: a bond shorter than
    SHORT_BOND_A between two atoms of Z <= 17, one of them B, C, N, O or F, or a bond to O or F shorter than
    SHORT_OXO_BOND_A."""
    z = graph.atomic_number.astype(np.int64)
    zs, zd = z[graph.edge_src], z[graph.edge_dst]
    d = np.linalg.norm(graph.bond_vec.astype(np.float64), axis=1)
    light = (np.isin(zs, list(LIGHT_ANIONS)) | np.isin(zd, list(LIGHT_ANIONS))) & (
        (zs <= LIGHT_PARTNER_MAX_Z) & (zd <= LIGHT_PARTNER_MAX_Z)
    )
    oxo = np.isin(zs, list(OXO_ANIONS)) | np.isin(zd, list(OXO_ANIONS))
    hit = (light & (d < SHORT_BOND_A)) | (oxo & (d < SHORT_OXO_BOND_A))
    if not hit.any():
        return None
    from pymatgen.core.periodic_table import Element

    i = int(np.flatnonzero(hit)[np.argmin(d[hit])])
    a, b = sorted((int(zs[i]), int(zd[i])))
    return f"{Element.from_Z(a).symbol}-{Element.from_Z(b).symbol} {d[i]:.2f} A"


def beyond_grid_reasons(elements: Sequence[str], weight: float, bond: str | None, threshold: float) -> str:
    reasons = []
    if weight >= threshold:
        reasons.append(f"predicted {100 * weight:.1f} % of the DOS at >= {TOP_BINS_FROM_CM:.0f} cm^-1")
    if "H" in elements:
        reasons.append("contains H (X-H modes lie above 1000 cm^-1; the training labels stop there)")
    if bond is not None:
        reasons.append(f"short stiff bond {bond} (modes above 1000 cm^-1 likely)")
    return "; ".join(reasons)


# ------------------------------------------------------------------------------------------ properties --------
def _std(values: np.ndarray) -> np.ndarray:
    """Standard deviation over axis 0 (members), ddof 1; NaN with fewer than two members."""
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan)
    with np.errstate(invalid="ignore"):
        return np.std(values, axis=0, ddof=1)


def spectrum_properties(
    spectra: np.ndarray,
    n_per_fu: np.ndarray,
    gamma: np.ndarray,
    temperatures: np.ndarray,
    unstable_fraction: float,
) -> dict[str, np.ndarray]:
    """Every SCREEN property of spectra (..., B, 66) -> arrays (..., B) or (..., B, n_T); NaN where a spectrum has
    no weight above 0 cm^-1 (as the properties stage)."""
    from pipeline.physics import thermo
    from pipeline.physics.isotopes import isotope_scattering_rate_ghz

    lead = spectra.shape[:-1]
    g = spectra.reshape(-1, N_BINS)
    reps = g.shape[0] // len(n_per_fu)
    n = np.tile(n_per_fu.astype(np.float64), reps)
    gam = np.tile(gamma, reps)
    temps = np.concatenate([temperatures, [300.0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        props = thermo.thermal_properties(g, n, temps)
        no_positive = ~(g[:, FREQ_CM > 0].sum(axis=1) > 0)
        out = {
            "cv": props.cv[:, :-1],
            "s_vib": props.s_vib[:, :-1],
            "f_vib": props.f_vib[:, :-1],
            "zpe": props.zpe,
            "cv_300k": props.cv[:, -1],
            "s_vib_300k": props.s_vib[:, -1],
            "cv_300k_per_osc": props.cv[:, -1] / (3 * n),
            "s_vib_300k_per_osc": props.s_vib[:, -1] / (3 * n),
            "tau_iso_inv": isotope_scattering_rate_ghz(g, n, gam),
            "debye": thermo.second_moment_debye_temperature(g),
            "abs": thermo.scale_to_3n(g, n),
        }
        for value in out.values():
            value[no_positive] = np.nan
        out["negative_fraction"] = thermo.negative_fraction(g)
        out["stable"] = thermo.is_stable(g, unstable_fraction).astype(np.float64)
        out["top"] = top_bins_weight(g)
    return {k: v.reshape(*lead, *v.shape[1:]) for k, v in out.items()}


def screening_table(
    raws: Sequence[RawStructure],
    graphs: Sequence[Any],
    preds: np.ndarray,
    model: Any,
    temperatures: Sequence[float],
    unstable_fraction: float,
    beyond_grid_weight: float,
    head: np.ndarray | None = None,
    head_unstable_fraction: float | None = None,
) -> pa.Table:
    """SCREEN rows of ``raws`` from the members' predictions ``preds`` (n_members, B, 66) and, for a model with a
    stability head, its values ``head`` (n_members, B): then ``stable`` is the members' mean head value at most
    ``head_unstable_fraction``."""
    from pipeline.physics.isotopes import mass_variances
    from pipeline.schemas import SCREEN

    b = len(raws)
    temps = np.asarray(sorted(set(map(float, temperatures))), dtype=np.float64)
    comps = [composition(r.elements) for r in raws]
    n_per_fu = np.array([c[1] for c in comps], dtype=np.int64)
    mass = np.array([c[2] for c in comps], dtype=np.float64)
    gamma, iso_flag = mass_variances([r.elements for r in raws])
    mean = preds.mean(axis=0)
    both = np.concatenate(
        [mean[None], preds]
    )  # (1 + members, B, 66): the ensemble's spectrum, then each member's
    p = spectrum_properties(both, n_per_fu, gamma, temps, unstable_fraction)
    ens = {k: v[0] for k, v in p.items()}
    std = {k: _std(v[1:]) for k, v in p.items()}
    per_kg = 1e3 / mass
    dos_std = _std(preds)
    with np.errstate(divide="ignore", invalid="ignore"):
        ood = dos_std.mean(axis=1)
    train_elements = model.train_elements
    elements = [sorted(set(r.elements)) for r in raws]
    bonds = [short_light_bond(g) for g in graphs]
    reasons = [
        beyond_grid_reasons(els, float(w), bond, beyond_grid_weight)
        for els, w, bond in zip(elements, ens["top"], bonds, strict=True)
    ]

    def spectra(a: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.astype(np.float32).reshape(-1)), N_BINS)

    def per_t(a: np.ndarray) -> list[list[float]]:
        return [row.tolist() for row in a]

    columns: dict[str, Any] = {
        "material_id": [r.material_id for r in raws],
        "formula": [c[0] for c in comps],
        "source_file": [r.source_file for r in raws],
        "index_in_file": [r.index_in_file for r in raws],
        "n_atoms": [len(r.elements) for r in raws],
        "n_atoms_per_fu": n_per_fu,
        "formula_mass_g_per_mol": mass,
        "volume_per_atom_a3": [abs(float(np.linalg.det(r.lattice))) / len(r.elements) for r in raws],
        "elements": elements,
        "model_id": [model.model_id] * b,
        "n_members": [len(model.members)] * b,
        "dos_pred": spectra(mean),
        "dos_std": spectra(dos_std),
        "dos_abs_states_per_cm1_per_fu": spectra(ens["abs"]),
        "dos_abs_std_states_per_cm1_per_fu": spectra(std["abs"]),
        "negative_fraction": ens["negative_fraction"],
        "negative_fraction_std": std["negative_fraction"],
        **_stability_columns(ens, p, head, head_unstable_fraction),
        "temperatures_k": [temps.tolist()] * b,
    }
    for name, key, unit, scale in (
        ("cv", "cv", "j_per_mol_k", None),
        ("cv", "cv", "j_per_kg_k", per_kg),
        ("s_vib", "s_vib", "j_per_mol_k", None),
        ("s_vib", "s_vib", "j_per_kg_k", per_kg),
        ("f_vib", "f_vib", "kj_per_mol", None),
        ("f_vib", "f_vib", "kj_per_kg", per_kg),
    ):
        factor = 1.0 if scale is None else scale[:, None]
        columns[f"{name}_{unit}"] = per_t(ens[key] * factor)
        columns[f"{name}_std_{unit}"] = per_t(std[key] * factor)
    for name, key, unit, scale in (
        ("zpe", "zpe", "kj_per_mol", None),
        ("zpe", "zpe", "kj_per_kg", per_kg),
        ("cv_300k", "cv_300k", "j_per_mol_k", None),
        ("cv_300k", "cv_300k", "j_per_kg_k", per_kg),
        ("s_vib_300k", "s_vib_300k", "j_per_mol_k", None),
        ("s_vib_300k", "s_vib_300k", "j_per_kg_k", per_kg),
        ("cv_300k_per_oscillator", "cv_300k_per_osc", "j_per_mol_k", None),
        ("s_vib_300k_per_oscillator", "s_vib_300k_per_osc", "j_per_mol_k", None),
        ("tau_iso_inv", "tau_iso_inv", "ghz", None),
        ("debye_temperature", "debye", "k", None),
    ):
        factor = 1.0 if scale is None else scale
        columns[f"{name}_{unit}"] = ens[key] * factor
        columns[f"{name}_std_{unit}"] = std[key] * factor
    columns |= {
        "mass_variance": gamma,
        "isotope_flag": iso_flag,
        "top_bins_weight": ens["top"],
        "top_bins_weight_std": std["top"],
        "beyond_grid": [bool(r) for r in reasons],
        "beyond_grid_reason": reasons,
        "unseen_elements": None
        if train_elements is None
        else [[e for e in els if train_elements.get(e, 0) == 0] for els in elements],
        "ood_score": ood,
    }
    if columns["unseen_elements"] is None:
        columns["unseen_elements"] = pa.nulls(b, pa.list_(pa.string()))
    arrays = [
        pa.array(columns[f.name], type=f.type)
        if not isinstance(columns[f.name], pa.Array)
        else columns[f.name].cast(f.type)
        for f in SCREEN
    ]
    return pa.Table.from_arrays(arrays, schema=SCREEN)


# ------------------------------------------------------------------------------------------ the run -----------
@dataclass
class ScreenResult:
    out_dir: Path
    n_screened: int = 0
    n_rejected: int = 0
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _expected_count(paths: Sequence[str | os.PathLike]) -> int:
    """Structures to expect, for the progress bar: a parquet table's rows, one per other file."""
    total = 0
    for f in iter_files(paths):
        if f.name.lower().endswith(".parquet"):
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except Exception:  # noqa: BLE001 - the reader rejects it with the reason later
                total += 1
        else:
            total += 1
    return total


def _stability_columns(
    ens: dict[str, np.ndarray],
    p: dict[str, np.ndarray],
    head: np.ndarray | None,
    head_unstable_fraction: float | None,
) -> dict[str, Any]:
    """The SCREEN stability columns: from the spectra (ensemble ``ens``, every member ``p[...][1:]``), or from the
    stability head's values (n_members, B) where the model has one."""
    b = len(ens["stable"])
    if head is None:
        return {
            "stable": ens["stable"].astype(bool),
            "stable_member_fraction": p["stable"][1:].mean(axis=0),
            "negative_fraction_head": np.full(b, np.nan),
            "negative_fraction_head_std": np.full(b, np.nan),
            "stability_source": ["spectrum"] * b,
        }
    if head_unstable_fraction is None:
        raise ValueError("a model with a stability head needs head_unstable_fraction (properties section)")
    members = np.clip(head, 0.0, 1.0)
    mean = members.mean(axis=0)
    return {
        "stable": mean <= head_unstable_fraction,
        "stable_member_fraction": (members <= head_unstable_fraction).mean(axis=0),
        "negative_fraction_head": mean,
        "negative_fraction_head_std": _std(members),
        "stability_source": ["head"] * b,
    }


def screen_structures(
    items: Iterable[RawStructure | ReadError],
    model: Any,
    writer: pq.ParquetWriter,
    rejects: list[tuple[str, str, str]],
    settings: ScreenSettings,
    temperatures: Sequence[float],
    unstable_fraction: float,
    min_distance: float,
    k: int,
    cutoff: float,
    chunk: int = DEFAULT_CHUNK,
    progress: Any = None,
    head_unstable_fraction: float | None = None,
) -> int:
    """Screen ``items`` chunk by chunk into ``writer`` (graphs with ``k``, ``cutoff``, ``min_distance``; at most
    ``settings.max_atoms`` atoms, ``settings.batch_size`` graphs per model call); append refusals to ``rejects``;
    return rows written."""
    from pipeline.data.graphs import FeaturizationError, build_graphs
    from pipeline.nn.model import split_outputs

    written = 0
    for part in _chunks(items, chunk):
        raws: list[RawStructure] = []
        for item in part:
            if isinstance(item, ReadError):
                rejects.append((item.material_id, STAGE, f"{item.source_file}: {item.reason}"))
            elif len(item.elements) > settings.max_atoms:
                rejects.append(
                    (
                        item.material_id,
                        STAGE,
                        f"too many atoms ({len(item.elements)} > screen.max_atoms {settings.max_atoms})",
                    )
                )
            else:
                raws.append(item)
        results = build_graphs(
            [(r.lattice, r.frac_coords, r.elements) for r in raws], k, cutoff, min_distance
        )
        good_raws, graphs = [], []
        for raw, res in zip(raws, results, strict=True):
            if isinstance(res, FeaturizationError):
                rejects.append((raw.material_id, STAGE, str(res)))
            else:
                good_raws.append(raw)
                graphs.append(res)
        if graphs:
            outputs = predict_members(model.members, graphs, settings.batch_size)
            preds, head = split_outputs(outputs, model.members[0].config)
            finite = np.isfinite(outputs).all(axis=(0, 2))
            for raw in (r for r, ok in zip(good_raws, finite, strict=True) if not ok):
                rejects.append((raw.material_id, STAGE, "prediction is not finite (NaN/inf)"))
            keep = np.flatnonzero(finite)
            if keep.size:
                table = screening_table(
                    [good_raws[i] for i in keep],
                    [graphs[i] for i in keep],
                    preds[:, keep],
                    model,
                    temperatures,
                    unstable_fraction,
                    settings.beyond_grid_weight,
                    head=None if head is None else head[:, keep],
                    head_unstable_fraction=head_unstable_fraction,
                )
                writer.write_table(table)
                written += table.num_rows
        if progress is not None:
            progress.update(len(part))
    return written


def run(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: ScreenSettings,
    temperatures: Sequence[float],
    unstable_fraction: float,
    min_distance: float,
    model_path: str | os.PathLike | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = True,
    summary: bool = True,
    title: str | None = None,
    allow_empty: bool = False,
    train_dataset: str | os.PathLike | None = None,
    head_unstable_fraction: float | None = None,
) -> ScreenResult:
    """Screen ``paths`` into ``out_dir`` (``pipeline.stages.screen`` describes the outputs) with ``model_path``
    (None: ``settings.model``, else the shipped model), properties at ``temperatures`` (``properties`` section) and
    structures refused below ``min_distance`` (``featurize.min_distance``); ``head_unstable_fraction``
    (``properties.head_unstable_fraction``) is needed for a model with a stability head. Raises :class:`ScreenError` when
    nothing could be screened, or the model file cannot be used (``ModelFileError``, ``ProvenanceError``,
    ``FileNotFoundError``)."""
    from tqdm import tqdm

    from pipeline.io import atomic_path, write_parquet, write_rejects
    from pipeline.nn.pretrained import default_model_path
    from pipeline.schemas import SCREEN

    t0 = time.perf_counter()
    if not paths and not allow_empty:
        raise ScreenError("no input given: name structure files or folders")
    model_path = model_path or settings.model
    model_path = Path(model_path) if model_path else default_model_path()
    if not model_path.exists():
        raise ScreenError(
            f"model file {model_path} does not exist"
            + (
                " (the shipped model is not in this checkout; pass --model results/train/model.pt)"
                if model_path == default_model_path()
                else ""
            )
        )
    model = load_model(model_path)
    if model.members[0].config.stability_head != "none" and head_unstable_fraction is None:
        raise ScreenError(
            f"model {model_path} has a stability head: screening needs properties.head_unstable_fraction"
        )
    k, cutoff = model.k, model.cutoff
    if k is None or cutoff is None:
        from pipeline.data.featurize import FeaturizeSettings

        defaults = FeaturizeSettings.from_config({})
        print(
            f"warning: {model_path} does not record the graph settings of its training data; using "
            f"k={defaults.k}, cutoff={defaults.cutoff:g} A (the featurize defaults)",
            file=sys.stderr,
        )
        k, cutoff = k or defaults.k, cutoff or defaults.cutoff
    if model.train_elements is None and train_dataset is not None:
        from pipeline.nn.pretrained import count_elements

        model.train_elements, _ = count_elements(train_dataset)
    if model.train_elements is None:
        print(
            f"warning: {model_path} does not record its training elements: unseen_elements is null "
            "(python -m pipeline.stages.pretrained elements writes the record)",
            file=sys.stderr,
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejects: list[tuple[str, str, str]] = []
    show = progress and sys.stderr.isatty()
    bar = tqdm(
        total=_expected_count(paths) if show else None,
        desc="screen",
        unit="structure",
        disable=not show,
        mininterval=1.0,
    )
    screen_path = out / "screen.parquet"
    with atomic_path(screen_path) as tmp:
        with pq.ParquetWriter(tmp, SCREEN, compression="zstd") as writer:
            n = screen_structures(
                read_paths(paths),
                model,
                writer,
                rejects,
                settings,
                temperatures,
                unstable_fraction,
                min_distance,
                int(k),
                float(cutoff),
                chunk,
                bar,
                head_unstable_fraction=head_unstable_fraction,
            )
        bar.close()
        if n == 0 and not allow_empty:
            write_rejects(rejects, out / "rejects.parquet")
            detail = "; ".join(f"{j}: {r}" for j, _, r in rejects[:3]) or "no structure files found"
            raise ScreenError(
                f"nothing to screen in {', '.join(map(str, paths))} ({len(rejects)} rejected: {detail}"
                f"{' ...' if len(rejects) > 3 else ''})"
            )
    write_rejects(rejects, out / "rejects.parquet")
    write_parquet(units_table(), out / "units.parquet")
    result = ScreenResult(
        out,
        n,
        len(rejects),
        0.0,
        {"screen": screen_path, "rejects": out / "rejects.parquet", "units": out / "units.parquet"},
    )
    if summary:
        from pipeline.screening.summary import write_summary

        result.files |= write_summary(
            screen_path, out, settings.top_n, title or f"screening of {len(paths)} input(s)"
        )
    result.seconds = time.perf_counter() - t0
    return result


def units_table() -> pa.Table:
    """column, unit, meaning of every SCREEN column (the field metadata, which ``pd.read_parquet`` drops)."""
    from pipeline.schemas import SCREEN

    meta = [(f.metadata or {}) for f in SCREEN]
    return pa.table(
        {
            "column": [f.name for f in SCREEN],
            "unit": [m.get(b"unit", b"").decode() for m in meta],
            "meaning": [m.get(b"doc", b"").decode() for m in meta],
        }
    )


def phonon_dos(row: Any, std: bool = False):
    """The absolute predicted DOS of one screen.parquet row (a pandas row or dict) as a pymatgen ``PhononDos``:
    frequencies in THz, densities in states per THz per formula unit (their integral over the non-negative part is
    3N, the pymatgen/phonopy convention per cell of one formula unit). ``std=True``: the per-bin standard
    deviation instead."""
    from pymatgen.phonon.dos import PhononDos

    key = "dos_abs_std_states_per_cm1_per_fu" if std else "dos_abs_states_per_cm1_per_fu"
    g = np.asarray(row[key], dtype=np.float64)
    return PhononDos(FREQ_CM / THZ_TO_CM, g * THZ_TO_CM)


# ------------------------------------------------------------------------------------------ shipped model -----
#: the committed predictions of the shipped model for the example CIFs (tests/test_screen.py checks them)
EXPECTED_FILE = Path("tests/data/shipped_model_expected.json")
EXAMPLES_DIR = Path("data/examples")


def expected_predictions(
    model_path: str | os.PathLike, examples_dir: str | os.PathLike = EXAMPLES_DIR
) -> dict[str, Any]:
    """What ``screen`` predicts with ``model_path`` and the schema's default settings for the example CIFs: model
    id, and per example the ensemble mean DOS, its std, C_V(300 K) and the beyond_grid flag (rounded: the test
    compares within 1e-5)."""
    import tempfile

    import pandas as pd

    from pipeline.data.featurize import FeaturizeSettings
    from pipeline.physics.properties import PropertiesSettings

    properties = PropertiesSettings.from_config({})
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            [examples_dir],
            tmp,
            ScreenSettings.from_config({}),
            properties.temperatures,
            properties.unstable_fraction,
            FeaturizeSettings.from_config({}).min_distance,
            model_path,
            progress=False,
            summary=False,
            head_unstable_fraction=properties.head_unstable_fraction,
        )
        df = pd.read_parquet(Path(tmp) / "screen.parquet").sort_values("material_id")
        model_id = df["model_id"].iloc[0]
    return {
        "model": Path(model_path).name,
        "model_id": model_id,
        "n_rejected": result.n_rejected,
        "materials": {
            r.material_id: {
                "dos_pred": [round(float(v), 7) for v in r.dos_pred],
                "dos_std": [round(float(v), 7) for v in r.dos_std],
                "cv_300k_j_per_mol_k": round(float(r.cv_300k_j_per_mol_k), 6),
                "beyond_grid": bool(r.beyond_grid),
            }
            for r in df.itertuples()
        },
    }


def write_expected(model_path: str | os.PathLike, out: str | os.PathLike = EXPECTED_FILE) -> Path:
    """Write :func:`expected_predictions` of ``model_path`` as JSON to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(expected_predictions(model_path), indent=1) + "\n")
    return out
