"""Data contracts between stages, defined once.

Every Parquet table the pipeline writes has its Arrow schema here, with units in the field metadata
(``pandas.read_parquet`` ignores them; ``pyarrow.parquet.read_schema(path)`` shows them).
Stages validate what they write with :func:`conform`, so a column cannot silently change type or vanish.
HDF5 shard layout is documented in :mod:`pipeline.data.shards` (the graph contract) and ``GraphBatch`` in
:mod:`pipeline.data.batch`.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.grid import N_BINS


def _f(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


# ---------------------------------------------------------------- fetch stage ---------------------------------
#: results/fetch/structures.parquet: one row per structure as read from the source (JARVIS record format).
STRUCTURES = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id, e.g. JVASP-1002", nullable=False),
        _f("lattice_mat", pa.list_(pa.list_(pa.float64(), 3), 3), "lattice vectors as rows, Angstrom"),
        _f("frac_coords", pa.list_(pa.list_(pa.float64(), 3)), "fractional coordinates, one row per site"),
        _f("elements", pa.list_(pa.string()), "element symbol per site"),
        _f("source", pa.string(), "where the structure came from (record 'source' or the fetch source)"),
        _f(
            "relaxation",
            pa.string(),
            "'jarvis' (OptB88vdW JARVIS cell), 'other' (relaxed elsewhere) or 'textbook' (demo)",
        ),
        _f("mp_id", pa.string(), "Materials Project id from the JARVIS record 'reference', if any"),
        _f("elastic_tensor", pa.list_(pa.list_(pa.float64(), 6), 6), "6x6 Voigt elastic tensor, GPa, if any"),
        _f(
            "bulk_modulus_gpa",
            pa.float64(),
            "Voigt bulk modulus K_V of the JARVIS record (bulk_modulus_kv), GPa",
        ),
        _f(
            "shear_modulus_gpa",
            pa.float64(),
            "Voigt shear modulus G_V of the JARVIS record (shear_modulus_gv), GPa",
        ),
    ]
)

#: results/fetch/dos_raw.parquet: one row per spectrum as delivered by the DOS source, before re-binning.
DOS_RAW = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id", nullable=False),
        _f("frequencies", pa.list_(pa.float64()), "frequency grid of the spectrum, in `unit`"),
        _f("values", pa.list_(pa.float64()), "DOS values on that grid (arbitrary scale)"),
        _f("unit", pa.string(), "'cm-1' or 'THz'"),
        _f(
            "official_split",
            pa.string(),
            "train/val/test of the jarvis-leaderboard benchmark, null otherwise",
        ),
        _f("dos_source", pa.string(), "'leaderboard' or 'figshare'"),
    ]
)

# ---------------------------------------------------------------- dos stage -----------------------------------
_MATERIAL_FIELDS = [
    _f("jid", pa.string(), "JARVIS id", nullable=False),
    _f("split", pa.string(), "train / val / test for labelled rows, 'pool' for structures without a DOS"),
    _f(
        "dos",
        pa.list_(pa.float32(), N_BINS),
        "66-bin DOS on -300..1000 cm^-1 (step 20), max-normalised; null in the pool",
    ),
    _f("dos_scale", pa.float64(), "max of the re-binned DOS before normalisation (source units per cm^-1)"),
    _f(
        "area_below_grid_fraction",
        pa.float64(),
        "fraction of the source spectrum's area below -310 cm^-1 (lower edge of the first bin), dropped by the "
        "re-binning; dimensionless, 0..1; null in the pool",
    ),
    _f(
        "area_above_grid_fraction",
        pa.float64(),
        "fraction of the source spectrum's area above 1010 cm^-1 (upper edge of the last bin, centre 1000), "
        "dropped by the re-binning; dimensionless, 0..1; null in the pool",
    ),
    _f("formula", pa.string(), "reduced formula, e.g. 'GaAs'"),
    _f("n_atoms", pa.int32(), "atoms in the cell"),
    _f("n_atoms_per_fu", pa.int32(), "atoms per formula unit (N in 3N)"),
    _f("formula_mass", pa.float64(), "mass of one formula unit, g/mol"),
    _f("volume_per_atom", pa.float64(), "cell volume / n_atoms, Angstrom^3"),
    _f("n_elements", pa.int32(), "number of distinct elements"),
    _f("spacegroup_number", pa.int32(), "international space-group number (spglib, symprec 0.1)"),
    _f("crystal_system", pa.string(), "triclinic ... cubic, from the space group"),
    _f("relaxation", pa.string(), "see structures.relaxation"),
    _f("mp_id", pa.string(), "Materials Project id, if any"),
    _f("lattice_mat", pa.list_(pa.list_(pa.float64(), 3), 3), "lattice vectors as rows, Angstrom"),
    _f("frac_coords", pa.list_(pa.list_(pa.float64(), 3)), "fractional coordinates"),
    _f("elements", pa.list_(pa.string()), "element symbol per site"),
    _f("elastic_tensor", pa.list_(pa.list_(pa.float64(), 6), 6), "6x6 Voigt elastic tensor, GPa, if any"),
    _f("bulk_modulus_gpa", pa.float64(), "Voigt bulk modulus K_V, GPa (see moduli_source); null if unknown"),
    _f(
        "shear_modulus_gpa", pa.float64(), "Voigt shear modulus G_V, GPa (see moduli_source); null if unknown"
    ),
    _f(
        "moduli_source",
        pa.string(),
        "'record' (the JARVIS record's bulk_modulus_kv/shear_modulus_gv), 'leaderboard' (jarvis-leaderboard "
        "dft_3d_bulk_modulus_kv / dft_3d_shear_modulus_gv) or null",
    ),
]
#: results/dos/dataset.parquet (labelled) and results/dos/pool.parquet (no DOS): one row per material.
MATERIALS = pa.schema(_MATERIAL_FIELDS)

#: results/*/rejects.parquet: every material a stage refused, and why. Nothing is dropped without a row here.
REJECTS = pa.schema(
    [
        _f(
            "jid",
            pa.string(),
            "JARVIS id; fetch rejects of a whole input file carry its file name, of a record without an id "
            "'FILE record #i' (local files) or 'record#i'",
            nullable=False,
        ),
        _f(
            "stage",
            pa.string(),
            "stage that rejected it: fetch, dos, featurize, predict, properties, crossval",
            nullable=False,
        ),
        _f("reason", pa.string(), "human-readable reason", nullable=False),
    ]
)

# ---------------------------------------------------------------- predict stage -------------------------------
#: results/predict/{set}.parquet
PREDICTIONS = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id", nullable=False),
        _f("split", pa.string(), "split of the material (test, pool, ...)"),
        _f(
            "dos_pred",
            pa.list_(pa.float32(), N_BINS),
            "predicted 66-bin DOS, same grid/normalisation as dataset.dos",
        ),
        _f("model_id", pa.string(), "sha256 (first 16 hex) of the checkpoint used"),
        _f(
            "negative_fraction_head",
            pa.float32(),
            "the stability head's predicted fraction of the DOS below 0 cm^-1 (model.stability_head), clipped to "
            "[0, 1]; null for a model without one",
        ),
    ]
)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, order and types (metadata included).

    Raises ``ValueError`` naming the missing columns, so a stage cannot write a table off-contract.
    """
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"table lacks contract columns {missing}")
    return table.select(schema.names).cast(schema)


# ---------------------------------------------------------------- train stage ---------------------------------
#: results/train/history.parquet: one row per finished epoch of each ensemble member (member-{i}/history.parquet:
#: that member's rows).
TRAIN_HISTORY = pa.schema(
    [
        _f(
            "member",
            pa.int32(),
            "ensemble member 0..train.ensemble-1 (trained with seed train.seed + member)",
        ),
        _f("epoch", pa.int32(), "epoch number, from 1", nullable=False),
        _f(
            "train_loss",
            pa.float64(),
            "mean training loss over the epoch's graphs (train.loss, on max-normalised DOS)",
        ),
        _f("val_loss", pa.float64(), "validation mean squared error per bin"),
        _f(
            "val_mae",
            pa.float64(),
            "validation spectral MAE: mean over materials of the mean |error| over the 66 bins",
        ),
        _f("lr", pa.float64(), "learning rate after the epoch's last step"),
        _f("seconds", pa.float64(), "wall time of the epoch (training + validation), s"),
        _f("graphs_per_s", pa.float64(), "training throughput (forward + backward + step), graphs/s"),
        _f(
            "is_best",
            pa.bool_(),
            "val_mae improved on every earlier epoch of this member (these weights are in model.pt)",
        ),
    ]
)

# ---------------------------------------------------------------- featurize stage -----------------------------
#: results/graphs/manifest.parquet: one row per HDF5 graph shard (layout documented in pipeline/data/shards.py).
#: The stage's rejects are results/graphs/rejects.parquet (REJECTS schema, stage 'featurize').
GRAPH_MANIFEST = pa.schema(
    [
        _f("split", pa.string(), "train / val / test / pool", nullable=False),
        _f("shard", pa.int32(), "shard index 0..n_shards-1 (hash of the jid)", nullable=False),
        _f("n_shards", pa.int32(), "shards of this split"),
        _f("path", pa.string(), "path of the .h5 shard, as given to the gather step", nullable=False),
        _f("n_input", pa.int64(), "materials of the split assigned to this shard (= n_graphs + n_rejected)"),
        _f("n_graphs", pa.int64(), "graphs written"),
        _f("n_rejected", pa.int64(), "materials rejected (rows in results/graphs/rejects.parquet)"),
        _f("n_atoms", pa.int64(), "atoms (crystal-graph nodes) in the shard"),
        _f("n_edges", pa.int64(), "directed bonds in the shard (= n_atoms * k)"),
        _f("n_triplets", pa.int64(), "line-graph edges (bond pairs) in the shard (= n_atoms * k^2)"),
        _f("k", pa.int32(), "neighbours per atom"),
        _f("cutoff", pa.float64(), "neighbour search radius, Angstrom"),
        _f("labelled", pa.bool_(), "shard stores 66-bin DOS targets"),
        _f("bytes", pa.int64(), "file size, bytes"),
    ]
)

# ---------------------------------------------------------------- properties stage ----------------------------
#: results/properties/properties.parquet: one row per (material, spectrum source). Molar values are per mole of
#: formula units; the DOS is rescaled to 3N over its non-negative part (convention in pipeline.physics.thermo).
PROPERTIES = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id", nullable=False),
        _f("split", pa.string(), "split of the material (train/val/test/pool)"),
        _f("source", pa.string(), "'dft' (dataset spectrum) or 'pred' (model prediction)", nullable=False),
        _f("model_id", pa.string(), "checkpoint id for source='pred', null for 'dft'"),
        _f("n_atoms_per_fu", pa.int32(), "N: atoms per formula unit"),
        _f("formula_mass", pa.float64(), "g/mol per formula unit"),
        _f("temperatures_k", pa.list_(pa.float64()), "temperature grid (config properties.temperatures), K"),
        _f(
            "cv", pa.list_(pa.float64()), "C_V on temperatures_k, J/(mol K) per mole of formula units (eq. 2)"
        ),
        _f("s_vib", pa.list_(pa.float64()), "S_vib on temperatures_k, J/(mol K) (eq. 3)"),
        _f(
            "f_vib",
            pa.list_(pa.float64()),
            "harmonic vibrational free energy incl. ZPE on temperatures_k, kJ/mol",
        ),
        _f("zpe", pa.float64(), "zero-point energy, kJ/mol"),
        _f("cv_300k", pa.float64(), "C_V(300 K), J/(mol K)"),
        _f("s_vib_300k", pa.float64(), "S_vib(300 K), J/(mol K)"),
        _f("cv_300k_gravimetric", pa.float64(), "C_V(300 K), J/(kg K)"),
        _f("s_vib_300k_gravimetric", pa.float64(), "S_vib(300 K), J/(kg K)"),
        _f("negative_fraction", pa.float64(), "fraction of the DOS (bin sums) below 0 cm^-1"),
        _f(
            "stable",
            pa.bool_(),
            "dynamically stable: negative_fraction <= properties.unstable_fraction; for a prediction of a model "
            "with a stability head, negative_fraction_head <= properties.head_unstable_fraction (stability_source)",
        ),
        _f(
            "negative_fraction_head",
            pa.float64(),
            "the stability head's predicted fraction of the DOS below 0 cm^-1; null for DFT rows and models without one",
        ),
        _f("stability_source", pa.string(), "what 'stable' was read from: 'spectrum' or 'head'"),
        _f("debye_temperature", pa.float64(), "Debye temperature, K (see debye_source)"),
        _f(
            "debye_source",
            pa.string(),
            "'elastic' (VRH sound velocity of the elastic tensor), 'elastic_voigt' (sound velocity of the Voigt "
            "moduli K_V, G_V) or 'dos_moment' (second-moment estimate of the spectrum)",
        ),
        _f("cv_half_debye", pa.float64(), "C_V at 0.5 * debye_temperature, J/(mol K)"),
        _f(
            "mass_variance",
            pa.float64(),
            "isotopic mass variance Gamma (phonopy natural abundances); NaN if unknown",
        ),
        _f("isotope_flag", pa.string(), "'ok', 'no_isotope_variance' or 'no_isotope_data:<elements>'"),
        _f(
            "tau_iso_inv",
            pa.float64(),
            "phonon-isotope scattering rate (eq. 4, jarvis-tools convention), GHz",
        ),
    ]
)


# ---------------------------------------------------------------- crossval stage ------------------------------
def _three_sides(quantity: str, unit: str, doc: str) -> list[pa.Field]:
    sides = {
        "mp": "from the Materials Project DFPT DOS",
        "pred": "from the predicted DOS (null without a model or prediction)",
        "jarvis": "from the matched JARVIS DFT DOS (null without one)",
    }
    fields = [_f(f"{quantity}_{s}", pa.float64(), f"{doc} {what}, {unit}") for s, what in sides.items()]
    for s in ("pred", "jarvis"):
        fields.append(_f(f"{quantity}_{s}_minus_mp", pa.float64(), f"{quantity}_{s} - {quantity}_mp, {unit}"))
    return fields


#: DIR/mp.parquet of the crossval stage: one row per usable Materials Project phonon document (pipeline/reports/crossval.py).
#: Properties per mole of formula units at 300 K, computed as in PROPERTIES from the 66-bin spectra.
CROSSVAL_MP = pa.schema(
    [
        _f("material_id", pa.string(), "Materials Project id, e.g. mp-149", nullable=False),
        _f("formula", pa.string(), "reduced formula (pymatgen) of the MP structure"),
        _f("n_atoms", pa.int32(), "atoms in the MP cell"),
        _f("n_atoms_per_fu", pa.int32(), "N: atoms per formula unit"),
        _f(
            "source",
            pa.string(),
            "where the document came from (its 'source', or mp-api endpoint and phonon id)",
        ),
        _f("jid", pa.string(), "matched JARVIS id, null when unmatched"),
        _f(
            "match_method",
            pa.string(),
            "'mp_id' (the JARVIS record carries this MP id), 'structure_matcher' (same reduced composition and "
            "pymatgen StructureMatcher fit) or 'none'",
            nullable=False,
        ),
        _f(
            "match_rms",
            pa.float64(),
            "StructureMatcher RMS displacement (normalised by (V/n)^(1/3)); NaN otherwise",
        ),
        _f(
            "jid_split",
            pa.string(),
            "split of the matched JARVIS id in the model's dataset (train/val/test/pool)",
        ),
        _f(
            "in_training_split",
            pa.bool_(),
            "leakage: the matched JARVIS id is in the train split; null if unmatched",
        ),
        _f("model_id", pa.string(), "sha256 (first 16 hex) of the model file; null without a model"),
        _f(
            "dos_mp",
            pa.list_(pa.float32(), N_BINS),
            "MP DOS, THz -> cm^-1, re-binned to the 66-bin grid, max-normalised",
        ),
        _f("dos_pred", pa.list_(pa.float32(), N_BINS), "predicted DOS of the MP structure, same grid"),
        _f(
            "dos_jarvis",
            pa.list_(pa.float32(), N_BINS),
            "DOS of the matched JARVIS id (dataset.dos), same grid",
        ),
        _f(
            "area_off_grid_mp", pa.float64(), "fraction of the MP DOS area outside -310..1010 cm^-1 (dropped)"
        ),
        _f(
            "spectral_mae_pred",
            pa.float64(),
            "per-bin MAE of dos_pred vs dos_mp (max-normalised, paper eq. 5)",
        ),
        _f("spectral_mae_jarvis", pa.float64(), "per-bin MAE of dos_jarvis vs dos_mp"),
        _f("negative_fraction_mp", pa.float64(), "fraction of dos_mp (bin sums) below 0 cm^-1"),
        _f("negative_fraction_pred", pa.float64(), "fraction of dos_pred below 0 cm^-1"),
        _f("negative_fraction_jarvis", pa.float64(), "fraction of dos_jarvis below 0 cm^-1"),
        _f(
            "stable_mp",
            pa.bool_(),
            "dynamically stable by the MP DOS (negative_fraction <= unstable fraction)",
        ),
        _f("stable_pred", pa.bool_(), "dynamically stable by the predicted DOS"),
        _f("stable_jarvis", pa.bool_(), "dynamically stable by the JARVIS DOS"),
        *_three_sides("cv_300k", "J/(mol K)", "C_V(300 K)"),
        *_three_sides("s_vib_300k", "J/(mol K)", "S_vib(300 K)"),
        *_three_sides("tau_iso_inv", "GHz", "phonon-isotope scattering rate (NaN without isotope variance)"),
    ]
)

#: DIR/summary.parquet of the crossval stage: one row per (comparison, subset, quantity).
CROSSVAL_SUMMARY = pa.schema(
    [
        _f(
            "comparison",
            pa.string(),
            "'pred_vs_mp' (ALIGNN vs MP DFPT) or 'jarvis_vs_mp' (DFT-DFT)",
            nullable=False,
        ),
        _f(
            "subset",
            pa.string(),
            "'all', 'matched', 'unmatched', 'not_in_training_split', 'within_grid' (area_off_grid_mp <= 1 %)",
            nullable=False,
        ),
        _f(
            "quantity",
            pa.string(),
            "'cv_300k', 's_vib_300k', 'tau_iso_inv', 'spectrum', 'stability'",
            nullable=False,
        ),
        _f(
            "n", pa.int64(), "materials: with both spectra (spectrum, stability), stable in both (properties)"
        ),
        _f("mae", pa.float64(), "mean |other - MP| in the quantity's unit (spectrum: mean per-bin MAE)"),
        _f("mad", pa.float64(), "mean |MP - mean(MP)|, the quantity's unit"),
        _f("mae_mad", pa.float64(), "MAE / MAD (the paper's MAE:MAD, 'MAE:D' in Fig. 10)"),
        _f("r2", pa.float64(), "coefficient of determination of the other values against MP's"),
        _f("accuracy", pa.float64(), "stability: fraction of materials with the same stable/unstable label"),
    ]
)

# ---------------------------------------------------------------- evaluate stage ------------------------------
#: results/reports/spectral.parquet: one row per test material with both a DFT and a predicted spectrum.
SPECTRAL = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id", nullable=False),
        _f("mae", pa.float64(), "per-bin MAE between DFT and predicted max-normalised spectra (paper eq. 5)"),
        _f(
            "nearest_train_mae",
            pa.float64(),
            "smallest per-bin MAE of the DFT spectrum to any train+val spectrum",
        ),
        _f("near_duplicate", pa.bool_(), "nearest_train_mae < evaluate.duplicate_mae"),
        _f("volume_per_atom", pa.float64(), "Angstrom^3"),
        _f("n_elements", pa.int32(), "distinct elements"),
        _f("crystal_system", pa.string(), "crystal system"),
        _f("relaxation", pa.string(), "'jarvis' or 'other'"),
        _f("stable_dft", pa.bool_(), "DFT spectrum dynamically stable"),
        _f(
            "stable_pred",
            pa.bool_(),
            "predicted dynamically stable (the properties table's stable: spectrum or stability head)",
        ),
    ]
)

#: results/reports/metrics.parquet: long table of every metric on every subset (all / non_duplicate / ...).
METRICS = pa.schema(
    [
        _f(
            "subset",
            pa.string(),
            "'all', 'non_duplicate', 'near_duplicate', 'relaxation=jarvis', ...",
            nullable=False,
        ),
        _f(
            "method",
            pa.string(),
            "'alignn_dos' (DOS-mediated), 'debye', 'born_von_karman', 'direct_alignn'",
            nullable=False,
        ),
        _f(
            "quantity",
            pa.string(),
            "'spectrum', 'stability', 'cv_300k', 's_vib_300k', 'tau_iso_inv', 'cv_<f>_debye'",
            nullable=False,
        ),
        _f(
            "metric",
            pa.string(),
            "'mae', 'mad', 'mae_mad', 'r2', 'accuracy', 'precision', 'recall', 'tp', ...",
            nullable=False,
        ),
        _f("value", pa.float64(), "metric value (units of the quantity for mae/mad)"),
        _f("n", pa.int64(), "materials entering the metric"),
    ]
)

#: results/reports/thermal.parquet: test materials, DFT vs predicted (and baseline) properties, one row per material.
THERMAL = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id", nullable=False),
        _f("near_duplicate", pa.bool_(), "see SPECTRAL"),
        _f("stable_both", pa.bool_(), "stable by DFT and by prediction"),
        _f(
            "debye_temperature",
            pa.float64(),
            "reference Debye temperature (from DFT DOS or elastic tensor), K",
        ),
        _f(
            "debye_source",
            pa.string(),
            "what debye_temperature (the T_D of the C_V-at-f*T_D curves) came from: see PROPERTIES.debye_source",
        ),
        _f(
            "velocity_source",
            pa.string(),
            "sound velocity of the Debye/BvK baselines: 'elastic' (tensor), 'elastic_voigt' (moduli) or null",
        ),
        _f("cv_300k_dft", pa.float64(), "J/(mol K)"),
        _f("cv_300k_pred", pa.float64(), "J/(mol K)"),
        _f("s_vib_300k_dft", pa.float64(), "J/(mol K)"),
        _f("s_vib_300k_pred", pa.float64(), "J/(mol K)"),
        _f("tau_iso_inv_dft", pa.float64(), "GHz"),
        _f("tau_iso_inv_pred", pa.float64(), "GHz"),
        _f("cv_debye_fractions", pa.list_(pa.float64()), "fractions f of the reference Debye temperature"),
        _f("cv_at_fraction_dft", pa.list_(pa.float64()), "C_V(f T_D) from the DFT DOS, J/(mol K)"),
        _f("cv_at_fraction_pred", pa.list_(pa.float64()), "C_V(f T_D) from the predicted DOS, J/(mol K)"),
        _f(
            "cv_300k_debye_model",
            pa.float64(),
            "C_V(300 K) of the Debye DOS baseline (null without sound velocity)",
        ),
        _f("s_vib_300k_debye_model", pa.float64(), "S_vib(300 K) of the Debye DOS baseline"),
        _f("cv_300k_bvk_model", pa.float64(), "C_V(300 K) of the Born-von Karman DOS baseline"),
        _f("s_vib_300k_bvk_model", pa.float64(), "S_vib(300 K) of the Born-von Karman DOS baseline"),
    ]
)

#: results/baselines/direct_{split}.parquet: direct scalar ALIGNN predictions (paper Fig. 8a), per material.
DIRECT_PREDICTIONS = pa.schema(
    [
        _f("jid", pa.string(), "JARVIS id", nullable=False),
        _f("cv_300k_direct", pa.float64(), "C_V(300 K) predicted by the direct scalar model, J/(mol K)"),
        _f("s_vib_300k_direct", pa.float64(), "S_vib(300 K) predicted by the direct scalar model, J/(mol K)"),
    ]
)


# ---------------------------------------------------------------- screen stage --------------------------------
#: DIR/screen.parquet of ``python -m pipeline screen``: one row per screened structure (pipeline/screening/screen.py). Units
#: are in the column names and in each field's metadata ("unit"); ``pipeline.screening.screen.units_table()`` lists them
#: (DIR/units.parquet). "_std": the standard deviation of the value over the ensemble's members (ddof 1; NaN
#: for a one-model file). Molar values are per mole of formula units; properties of the ensemble are those of its
#: mean spectrum.
def _u(name: str, type_: pa.DataType, unit: str, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc, "unit": unit})


_SPECTRUM = pa.list_(pa.float32(), N_BINS)
_PER_T = pa.list_(pa.float64())
SCREEN = pa.schema(
    [
        _u(
            "material_id",
            pa.string(),
            "",
            "file stem (#i for the i-th structure of a file), or the JARVIS jid",
            nullable=False,
        ),
        _u("formula", pa.string(), "", "reduced formula (pymatgen)"),
        _u("source_file", pa.string(), "", "file the structure was read from"),
        _u("index_in_file", pa.int32(), "", "position of the structure in its file, from 0"),
        _u("n_atoms", pa.int32(), "", "atoms in the cell"),
        _u("n_atoms_per_fu", pa.int32(), "", "N: atoms per formula unit"),
        _u("formula_mass_g_per_mol", pa.float64(), "g/mol", "mass of one formula unit"),
        _u("volume_per_atom_a3", pa.float64(), "Angstrom^3", "cell volume / n_atoms"),
        _u("elements", pa.list_(pa.string()), "", "distinct elements, sorted"),
        _u("model_id", pa.string(), "", "sha256 (first 16 hex) of the model file"),
        _u("n_members", pa.int32(), "", "models in the ensemble"),
        _u(
            "dos_pred",
            _SPECTRUM,
            "max-normalised",
            "predicted 66-bin DOS on -300..1000 cm^-1 (step 20), ensemble mean (as predict writes)",
        ),
        _u("dos_std", _SPECTRUM, "max-normalised", "per-bin standard deviation of the members' predictions"),
        _u(
            "dos_abs_states_per_cm1_per_fu",
            _SPECTRUM,
            "states/(cm^-1 formula unit)",
            "dos_pred rescaled so its non-negative part integrates (trapezoid) to 3N",
        ),
        _u(
            "dos_abs_std_states_per_cm1_per_fu",
            _SPECTRUM,
            "states/(cm^-1 formula unit)",
            "per-bin standard deviation of the members' 3N-scaled spectra",
        ),
        _u("negative_fraction", pa.float64(), "1", "fraction of the DOS (bin sums) below 0 cm^-1"),
        _u("negative_fraction_std", pa.float64(), "1", "ensemble standard deviation"),
        _u(
            "stable",
            pa.bool_(),
            "",
            "dynamically stable: negative_fraction <= properties.unstable_fraction (0.1); for a model with a "
            "stability head, negative_fraction_head <= properties.head_unstable_fraction (stability_source)",
        ),
        _u(
            "negative_fraction_head",
            pa.float64(),
            "1",
            "the stability head's predicted fraction of the DOS below 0 cm^-1, members' mean, clipped to [0, 1]; "
            "null for a model without one",
        ),
        _u(
            "negative_fraction_head_std", pa.float64(), "1", "ensemble standard deviation of the head's value"
        ),
        _u("stability_source", pa.string(), "", "what 'stable' was read from: 'spectrum' or 'head'"),
        _u(
            "stable_member_fraction",
            pa.float64(),
            "1",
            "fraction of the members that call it stable (by their spectrum, or their head: stability_source)",
        ),
        _u("temperatures_k", _PER_T, "K", "temperature grid of the per-temperature columns"),
        _u("cv_j_per_mol_k", _PER_T, "J/(mol K)", "C_V on temperatures_k, per mole of formula units (eq. 2)"),
        _u("cv_std_j_per_mol_k", _PER_T, "J/(mol K)", "ensemble standard deviation"),
        _u("cv_j_per_kg_k", _PER_T, "J/(kg K)", "C_V on temperatures_k, gravimetric"),
        _u("cv_std_j_per_kg_k", _PER_T, "J/(kg K)", "ensemble standard deviation"),
        _u("s_vib_j_per_mol_k", _PER_T, "J/(mol K)", "S_vib on temperatures_k (eq. 3)"),
        _u("s_vib_std_j_per_mol_k", _PER_T, "J/(mol K)", "ensemble standard deviation"),
        _u("s_vib_j_per_kg_k", _PER_T, "J/(kg K)", "S_vib on temperatures_k, gravimetric"),
        _u("s_vib_std_j_per_kg_k", _PER_T, "J/(kg K)", "ensemble standard deviation"),
        _u(
            "f_vib_kj_per_mol",
            _PER_T,
            "kJ/mol",
            "harmonic vibrational free energy incl. ZPE on temperatures_k",
        ),
        _u("f_vib_std_kj_per_mol", _PER_T, "kJ/mol", "ensemble standard deviation"),
        _u("f_vib_kj_per_kg", _PER_T, "kJ/kg", "F_vib on temperatures_k, gravimetric"),
        _u("f_vib_std_kj_per_kg", _PER_T, "kJ/kg", "ensemble standard deviation"),
        _u("zpe_kj_per_mol", pa.float64(), "kJ/mol", "zero-point energy"),
        _u("zpe_std_kj_per_mol", pa.float64(), "kJ/mol", "ensemble standard deviation"),
        _u("zpe_kj_per_kg", pa.float64(), "kJ/kg", "zero-point energy, gravimetric"),
        _u("zpe_std_kj_per_kg", pa.float64(), "kJ/kg", "ensemble standard deviation"),
        _u("cv_300k_j_per_mol_k", pa.float64(), "J/(mol K)", "C_V(300 K)"),
        _u("cv_300k_std_j_per_mol_k", pa.float64(), "J/(mol K)", "ensemble standard deviation"),
        _u("cv_300k_j_per_kg_k", pa.float64(), "J/(kg K)", "C_V(300 K), gravimetric (paper Table S2)"),
        _u("cv_300k_std_j_per_kg_k", pa.float64(), "J/(kg K)", "ensemble standard deviation"),
        _u("s_vib_300k_j_per_mol_k", pa.float64(), "J/(mol K)", "S_vib(300 K)"),
        _u("s_vib_300k_std_j_per_mol_k", pa.float64(), "J/(mol K)", "ensemble standard deviation"),
        _u("s_vib_300k_j_per_kg_k", pa.float64(), "J/(kg K)", "S_vib(300 K), gravimetric (paper Table S2)"),
        _u("s_vib_300k_std_j_per_kg_k", pa.float64(), "J/(kg K)", "ensemble standard deviation"),
        _u(
            "cv_300k_per_oscillator_j_per_mol_k",
            pa.float64(),
            "J/(mol K)",
            "C_V(300 K) / 3N: per mole of oscillators, at most R (paper Fig. 11)",
        ),
        _u(
            "cv_300k_per_oscillator_std_j_per_mol_k", pa.float64(), "J/(mol K)", "ensemble standard deviation"
        ),
        _u(
            "s_vib_300k_per_oscillator_j_per_mol_k",
            pa.float64(),
            "J/(mol K)",
            "S_vib(300 K) / 3N: per mole of oscillators (paper Fig. 11)",
        ),
        _u(
            "s_vib_300k_per_oscillator_std_j_per_mol_k",
            pa.float64(),
            "J/(mol K)",
            "ensemble standard deviation",
        ),
        _u(
            "tau_iso_inv_ghz",
            pa.float64(),
            "GHz",
            "phonon-isotope scattering rate (eq. 4, jarvis-tools form)",
        ),
        _u("tau_iso_inv_std_ghz", pa.float64(), "GHz", "ensemble standard deviation"),
        _u(
            "mass_variance",
            pa.float64(),
            "1",
            "isotopic mass variance Gamma (phonopy abundances); NaN if unknown",
        ),
        _u("isotope_flag", pa.string(), "", "'ok', 'no_isotope_variance' or 'no_isotope_data:<elements>'"),
        _u("debye_temperature_k", pa.float64(), "K", "second-moment Debye temperature of the predicted DOS"),
        _u("debye_temperature_std_k", pa.float64(), "K", "ensemble standard deviation"),
        _u(
            "top_bins_weight",
            pa.float64(),
            "1",
            "fraction of the non-negative DOS (bin sums) in the bins at >= 940 cm^-1 (the grid's top 4)",
        ),
        _u("top_bins_weight_std", pa.float64(), "1", "ensemble standard deviation"),
        _u(
            "beyond_grid",
            pa.bool_(),
            "",
            "spectrum likely extends above 1000 cm^-1, so C_V and S_vib are biased (see beyond_grid_reason)",
        ),
        _u("beyond_grid_reason", pa.string(), "", "why beyond_grid is set ('' when it is not)"),
        _u(
            "unseen_elements",
            pa.list_(pa.string()),
            "",
            "elements absent from the model's training set; null when the model does not record them",
        ),
        _u(
            "ood_score",
            pa.float64(),
            "max-normalised",
            "ensemble disagreement: mean over bins of dos_std (an error estimate, like the spectral MAE; NaN for "
            "one model)",
        ),
    ]
)

#: DIR/summary.parquet of ``screen``: the highest and lowest materials per property (paper Table S2).
SCREEN_SUMMARY = pa.schema(
    [
        _u("property", pa.string(), "", "column of screen.parquet that is ranked", nullable=False),
        _u("unit", pa.string(), "", "its unit"),
        _u("end", pa.string(), "", "'highest' or 'lowest'", nullable=False),
        _u("rank", pa.int32(), "", "1 = most extreme", nullable=False),
        _u("material_id", pa.string(), "", "see SCREEN", nullable=False),
        _u("formula", pa.string(), "", "reduced formula"),
        _u("value", pa.float64(), "see unit", "the property"),
        _u("std", pa.float64(), "see unit", "its ensemble standard deviation"),
        _u("stable", pa.bool_(), "", "predicted dynamically stable"),
        _u("beyond_grid", pa.bool_(), "", "see SCREEN.beyond_grid"),
        _u("n_ranked", pa.int64(), "", "materials with a finite value of the property"),
    ]
)


# ---------------------------------------------------------------- units of every column ------------------------
#: The unit of a column from its name, first matching rule wins: "" = none (an id, a label, a flag, an index),
#: "1" = dimensionless. ``pd.read_parquet`` drops Parquet field metadata, so :func:`units` is how a pandas user
#: finds them. tests/test_units.py checks that every column of every schema here resolves, and agrees with the unit
#: its doc string names.
_UNIT_RULES: list[tuple[str, str]] = [
    (
        r"jid|material_id|mp_id|formula|split|source|relaxation|crystal_system|elements|unit|official_split"
        r"|dos_source|model_id|match_method|jid_split|path|stage|reason|subset|method|quantity|metric|comparison"
        r"|isotope_flag|\w+_source|shard|member|epoch|spacegroup_number",
        "",
    ),
    (r"stable\w*|near_duplicate|in_training_split|labelled|is_best", ""),
    (r"bytes", "bytes"),
    (r"n|n_\w+|k", "count"),
    (r"dos|dos_pred|dos_mp|dos_jarvis", "1 (DOS divided by its maximum)"),
    (r"mae|val_mae|nearest_train_mae|spectral_mae_\w+", "1 (per-bin MAE of max-normalised DOS)"),
    (r"train_loss", "1 (train.loss of max-normalised DOS: l1, or squared for mse)"),
    (r"val_loss", "1 (per-bin squared error of max-normalised DOS)"),
    (r"values", "arbitrary (the source's DOS scale)"),
    (r"frequencies", "cm^-1 or THz (see unit)"),
    (r"dos_scale", "source DOS units per cm^-1"),
    (r"cv_at_fraction_\w+", "J/(mol K)"),
    (r"\w*fraction\w*|area_off_grid_mp|mass_variance|mae_mad|r2|accuracy|lr", "1"),
    (r"frac_coords", "1 (fractions of the lattice vectors)"),
    (r"match_rms", "1 (in units of (V/n)^(1/3))"),
    (r"lattice_mat|cutoff", "Angstrom"),
    (r"volume_per_atom", "Angstrom^3"),
    (r"formula_mass", "g/mol"),
    (r"elastic_tensor|\w+_gpa", "GPa"),
    (r"temperatures_k|debye_temperature", "K"),
    (r"\w+_gravimetric", "J/(kg K)"),
    (r"cv|s_vib|cv_\w+|s_vib_\w+", "J/(mol K)"),
    (r"f_vib|zpe", "kJ/mol"),
    (r"tau_iso_inv\w*", "GHz"),
    (r"seconds", "s"),
    (r"graphs_per_s", "graphs/s"),
]
#: names that mean something else in one table
_UNIT_OVERRIDES: dict[str, dict[str, str]] = {
    "CROSSVAL_SUMMARY": {
        "mae": "unit of `quantity` (J/(mol K), GHz; spectrum: max-normalised DOS)",
        "mad": "unit of `quantity`",
    },
    "METRICS": {
        "value": "mae/mad: unit of `quantity` (J/(mol K), GHz, max-normalised DOS); else 1 or a count"
    },
}


def schemas() -> dict[str, pa.Schema]:
    """Every table schema defined here, by name (MATERIALS, PROPERTIES, ...)."""
    return {
        name: value for name, value in globals().items() if isinstance(value, pa.Schema) and name.isupper()
    }


def column_unit(column: str, schema: str | None = None) -> str | None:
    """The unit of ``column`` (in table ``schema``, when its meaning depends on it); None when no rule knows it."""
    import re

    own = schemas().get(schema) if schema else None
    if own is not None and column in own.names:
        meta = own.field(column).metadata or {}
        if b"unit" in meta:
            return meta[b"unit"].decode()
    if schema in _UNIT_OVERRIDES and column in _UNIT_OVERRIDES[schema]:
        return _UNIT_OVERRIDES[schema][column]
    for pattern, unit in _UNIT_RULES:
        if re.fullmatch(pattern, column):
            return unit
    return None


def _columns(table: object) -> tuple[list[str], dict[str, dict[bytes, bytes]]]:
    """Column names (and any field metadata) of a path, Arrow table/schema or DataFrame."""
    import os

    if isinstance(table, str | os.PathLike):
        import pyarrow.parquet as pq

        table = pq.read_schema(table)
    if isinstance(table, pa.Table):
        table = table.schema
    if isinstance(table, pa.Schema):
        return table.names, {f.name: dict(f.metadata or {}) for f in table}
    return [str(c) for c in table.columns], {}  # a pandas DataFrame


def units(table: object, schema: str | None = None):
    """Unit and meaning of every column of ``table``: a Parquet path, an Arrow table or schema, or a pandas
    DataFrame (``pd.read_parquet`` drops the field metadata; the schema is found by the columns, or give its name,
    e.g. ``schema="PROPERTIES"``). Returns a DataFrame indexed by column with ``unit`` ("" = none, "1" =
    dimensionless), ``description`` (the schema's doc string) and ``schema``.

    >>> units("results/demo/properties/properties.parquet").loc["cv_300k", "unit"]
    'J/(mol K)'
    """
    import pandas as pd

    names, meta = _columns(table)
    known = schemas()
    if schema is None:  # the schema holding every column with the fewest others
        fits = [(len(s.names) - len(set(names)), n) for n, s in known.items() if set(names) <= set(s.names)]
        schema = min(fits)[1] if fits else None
    elif schema not in known:
        raise KeyError(f"no schema {schema!r} in pipeline.schemas ({', '.join(sorted(known))})")
    # a column the schema lacks (a merged frame): from the schema sharing the most columns with the frame
    ranked = sorted(known, key=lambda n: -len(set(names) & set(known[n].names)))
    rows = []
    for col in names:
        where = schema if schema and col in known[schema].names else None
        where = where or next((n for n in ranked if col in known[n].names), None)
        field_meta = meta.get(col) or (dict(known[where].field(col).metadata or {}) if where else {})
        unit = field_meta[b"unit"].decode() if b"unit" in field_meta else column_unit(col, where)
        doc = field_meta.get(b"doc", b"").decode()
        rows.append({"column": col, "unit": unit, "description": doc, "schema": where})
    return pd.DataFrame(rows, columns=["column", "unit", "description", "schema"]).set_index("column")
