"""Voigt moduli from jarvis-leaderboard -> sound velocities -> the Debye/BvK baselines and an elastic Debye
temperature (pipeline.data.moduli, pipeline.physics.debye), checked against textbook silicon and against the elastic-tensor
route they replace when a record has no tensor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.moduli import fill_moduli, leaderboard_moduli, modulus
from pipeline.physics import debye

SI_MASS, SI_VOL = 2 * 28.0855, 40.04 / 2  # g/mol per Si2 formula unit; Angstrom^3 per atom (a = 5.431 A)


def test_the_leaderboard_tables_hold_usable_moduli_of_known_materials():
    t = leaderboard_moduli()
    assert len(t) > 18_000 and (t > 0).all().all()
    si = t.loc["JVASP-1002"]  # diamond Si: experiment K = 98 GPa, Voigt G = 66 GPa
    assert 80 < si.bulk_modulus_gpa < 100 and 55 < si.shear_modulus_gpa < 75


def test_silicon_moduli_give_its_sound_velocities_and_debye_temperature():
    si = leaderboard_moduli().loc["JVASP-1002"]
    v = debye.velocities_from_moduli(si.bulk_modulus_gpa, si.shear_modulus_gpa, SI_MASS, 2, SI_VOL)
    assert 8000 < v.longitudinal < 9500 and 5000 < v.transverse < 6000  # experiment ~8.9 / ~5.4 km/s
    theta = debye.elastic_debye_temperature(v, SI_VOL)
    assert theta == pytest.approx(645, rel=0.1)  # experimental elastic Debye temperature of Si


def test_isotropic_tensor_and_its_moduli_give_the_same_velocities():
    k, g = 120.0, 50.0  # for an isotropic tensor the Voigt, Reuss and Hill averages coincide
    c11, c12 = k + 4 * g / 3, k - 2 * g / 3
    tensor = np.zeros((6, 6))
    tensor[:3, :3] = c12
    np.fill_diagonal(tensor[:3, :3], c11)
    tensor[3:, 3:] = np.eye(3) * g
    from_tensor, source_t = debye.material_velocities(tensor.tolist(), None, None, 60.0, 2, 15.0)
    from_moduli, source_m = debye.material_velocities(None, k, g, 60.0, 2, 15.0)
    assert (source_t, source_m) == ("elastic", "elastic_voigt")
    assert from_tensor.longitudinal == pytest.approx(from_moduli.longitudinal, rel=1e-9)
    assert from_tensor.transverse == pytest.approx(from_moduli.transverse, rel=1e-9)


@pytest.mark.parametrize("bad", [None, "na", float("nan"), 0.0, -3.2, "x"])
def test_unusable_moduli_give_no_velocity(bad):
    assert modulus(bad) is None
    assert debye.material_velocities(None, bad, 30.0, 60.0, 2, 15.0) == (None, None)


def test_record_moduli_win_and_the_leaderboard_fills_the_rest():
    df = pd.DataFrame(
        {
            "jid": ["JVASP-1002", "JVASP-1002-own", "JVASP-none"],
            "bulk_modulus_gpa": [None, 10.0, None],
            "shear_modulus_gpa": [None, 5.0, None],
        }
    )
    out = fill_moduli(df)
    assert out.moduli_source.tolist()[:2] == ["leaderboard", "record"] and pd.isna(out.moduli_source.iloc[2])
    assert out.bulk_modulus_gpa.iloc[0] == leaderboard_moduli().loc["JVASP-1002"].bulk_modulus_gpa
    assert out.bulk_modulus_gpa.iloc[1] == 10.0 and pd.isna(out.bulk_modulus_gpa.iloc[2])


def test_debye_temperatures_say_where_each_came_from():
    dos = np.zeros((3, 66))
    dos[:, 25:35] = 1.0
    theta, source = debye.debye_temperatures(
        dos,
        [None, None, None],
        np.full(3, SI_MASS),
        np.full(3, 2),
        np.full(3, SI_VOL),
        [87.3, None, 1.0],
        [63.3, None, -1.0],
    )
    assert source == ["elastic_voigt", "dos_moment", "dos_moment"]
    assert theta[0] == pytest.approx(645, rel=0.1)
