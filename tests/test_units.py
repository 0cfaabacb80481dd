"""pipeline.schemas.units: the unit of every column of every table, for pandas users (pd.read_parquet drops the
Parquet field metadata)."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schemas
from pipeline.schemas import MATERIALS, METRICS, PROPERTIES, SPECTRAL, THERMAL, column_unit, units

#: unit words a doc string may name -> the unit they mean (the longest match is taken)
DOC_UNITS = ["J/(mol K)", "J/(kg K)", "kJ/mol", "g/mol", "GHz", "GPa", "Angstrom^3", "Angstrom", "graphs/s"]


@pytest.mark.parametrize("name", sorted(schemas.schemas()))
def test_every_column_of_every_schema_has_a_unit_that_agrees_with_its_doc(name):
    for field in schemas.schemas()[name]:
        unit = column_unit(field.name, name)
        assert unit is not None, f"{name}.{field.name}: no unit rule (pipeline.schemas._UNIT_RULES)"
        doc = (field.metadata or {}).get(b"doc", b"").decode()
        named = [u for u in DOC_UNITS if re.search(rf"(^|[ ,(]){re.escape(u)}($|[ ,;).])", doc)]
        if named and "unit" not in doc:  # "in `unit`", "the quantity's unit": no fixed unit
            assert max(named, key=len) in unit, f"{name}.{field.name}: doc names {named}, unit is {unit!r}"
        if re.search(r"(, | in )K\b", doc):
            assert unit == "K", f"{name}.{field.name}: doc says K, unit is {unit!r}"


def _write(df: pd.DataFrame, schema: pa.Schema, path):
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).select(df.columns), path)
    return path


def test_units_of_a_dataframe_read_by_pandas_finds_its_schema(tmp_path):
    props = pd.DataFrame({n: [None] for n in PROPERTIES.names})
    props["cv_300k"] = [24.9]
    path = _write(props.astype({"cv_300k": float}), PROPERTIES, tmp_path / "properties.parquet")
    df = pd.read_parquet(path)
    u = units(df)
    assert list(u.index) == PROPERTIES.names and set(u["schema"]) == {"PROPERTIES"}
    assert u.loc["cv_300k", "unit"] == "J/(mol K)" and u.loc["cv_300k_gravimetric", "unit"] == "J/(kg K)"
    assert u.loc["tau_iso_inv", "unit"] == "GHz" and u.loc["zpe", "unit"] == "kJ/mol"
    assert u.loc["temperatures_k", "unit"] == "K" and u.loc["jid", "unit"] == ""
    assert "per mole of formula units" in u.loc["cv", "description"]
    assert units(path).equals(u)  # from the path: the same


def test_units_of_a_column_subset_and_of_a_merged_frame():
    u = units(pd.DataFrame(columns=["jid", "volume_per_atom", "formula_mass"]))
    assert u.loc["volume_per_atom", "unit"] == "Angstrom^3" and u.loc["formula_mass", "unit"] == "g/mol"
    assert u["schema"].iloc[0] == "MATERIALS"
    merged = pd.DataFrame(columns=[*SPECTRAL.names, "cv_300k_dft", "elastic_tensor"])  # no single schema
    u = units(merged)
    assert u.loc["cv_300k_dft", "unit"] == "J/(mol K)" and u.loc["cv_300k_dft", "schema"] == "THERMAL"
    assert u.loc["elastic_tensor", "unit"] == "GPa" and u.loc["mae", "schema"] == "SPECTRAL"
    assert units(pd.DataFrame(columns=["my_column"])).loc["my_column", "unit"] is None


def test_table_specific_meanings_and_screen_metadata():
    assert "quantity" in units(pd.DataFrame(columns=METRICS.names)).loc["value", "unit"]
    assert "max-normalised" in units(pd.DataFrame(columns=["mae"]), schema="SPECTRAL").loc["mae", "unit"]
    # SCREEN carries its units in the field metadata, and units() reads them from there
    screen = schemas.schemas()["SCREEN"]
    field = next(f for f in screen if (f.metadata or {}).get(b"unit"))
    assert units(screen).loc[field.name, "unit"] == field.metadata[b"unit"].decode()
    with pytest.raises(KeyError, match="no schema 'NOPE'"):
        units(pd.DataFrame(columns=["jid"]), schema="NOPE")
    assert (
        set(units(MATERIALS)["schema"]) == {"MATERIALS"} and units(THERMAL).loc["cv_at_fraction_dft", "unit"]
    )
