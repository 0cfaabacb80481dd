"""Debye temperature and sound velocities.

* From the elastic tensor (labelled ``'elastic'``): Voigt-Reuss-Hill bulk and shear moduli from pymatgen's
  ``ElasticTensor``, longitudinal/transverse sound velocities v_l = sqrt((K + 4G/3)/rho), v_t = sqrt(G/rho), the
  Debye mean v_m = [(2/v_t^3 + 1/v_l^3)/3]^(-1/3) and theta_D = (h/k_B) v_m (3/(4 pi V_at))^(1/3)
  (Anderson, J. Phys. Chem. Solids 24, 909 (1963); the same formula as pymatgen's ``debye_temperature``, written
  here on (formula mass, volume per atom) so no Structure object is needed).
* Else from Voigt bulk and shear moduli K_V, G_V (labelled ``'elastic_voigt'``; the JARVIS record's
  ``bulk_modulus_kv`` / ``shear_modulus_gv`` or the jarvis-leaderboard tables, ``pipeline.data.moduli``): the same
  velocities with K_V, G_V in place of the VRH averages (Voigt bounds them from above, so these velocities and
  Debye temperatures are upper estimates).
* Otherwise from the DOS (labelled ``'dos_moment'``): the second-moment Debye temperature
  :func:`pipeline.physics.thermo.second_moment_debye_temperature`, exact for a Debye spectrum.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from pipeline.physics.thermo import H_PLANCK, K_BOLTZMANN, N_AVOGADRO, second_moment_debye_temperature

ANGSTROM3_TO_M3 = 1e-30


@dataclass(frozen=True)
class SoundVelocities:
    longitudinal: float  # m/s
    transverse: float  # m/s

    @property
    def debye_mean(self) -> float:
        return (((2.0 / self.transverse**3) + (1.0 / self.longitudinal**3)) / 3.0) ** (-1.0 / 3.0)


def mass_density(formula_mass: float, n_atoms_per_fu: int, volume_per_atom: float) -> float:
    """kg/m^3 from g/mol per formula unit, atoms per formula unit and Angstrom^3 per atom."""
    kg_per_atom = formula_mass / n_atoms_per_fu / N_AVOGADRO / 1e3
    return kg_per_atom / (volume_per_atom * ANGSTROM3_TO_M3)


def velocities_from_moduli(
    bulk_gpa: float, shear_gpa: float, formula_mass: float, n_atoms_per_fu: int, volume_per_atom: float
) -> SoundVelocities | None:
    """v_l = sqrt((K + 4G/3)/rho), v_t = sqrt(G/rho); None unless K, G and the density are finite and > 0."""
    try:
        k, g = float(bulk_gpa), float(shear_gpa)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(k) and math.isfinite(g) and k > 0 and g > 0):
        return None
    rho = mass_density(formula_mass, n_atoms_per_fu, volume_per_atom)
    if not (rho > 0 and math.isfinite(rho)):
        return None
    return SoundVelocities(math.sqrt(1e9 * (k + 4.0 * g / 3.0) / rho), math.sqrt(1e9 * g / rho))


def material_velocities(
    elastic_tensor_gpa,
    bulk_gpa: float | None,
    shear_gpa: float | None,
    formula_mass: float,
    n_atoms_per_fu: int,
    volume_per_atom: float,
) -> tuple[SoundVelocities | None, str | None]:
    """(velocities, source) from the tensor (``'elastic'``), else the Voigt moduli (``'elastic_voigt'``), else
    (None, None)."""
    v = sound_velocities(elastic_tensor_gpa, formula_mass, n_atoms_per_fu, volume_per_atom)
    if v is not None:
        return v, "elastic"
    if bulk_gpa is not None and shear_gpa is not None:
        v = velocities_from_moduli(bulk_gpa, shear_gpa, formula_mass, n_atoms_per_fu, volume_per_atom)
        if v is not None:
            return v, "elastic_voigt"
    return None, None


def sound_velocities(
    elastic_tensor_gpa, formula_mass: float, n_atoms_per_fu: int, volume_per_atom: float
) -> SoundVelocities | None:
    """VRH sound velocities, or None when the tensor is missing, malformed or mechanically unphysical."""
    if elastic_tensor_gpa is None:
        return None
    try:
        c = np.array([np.asarray(row, dtype=np.float64) for row in elastic_tensor_gpa], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if c.shape != (6, 6) or not np.all(np.isfinite(c)) or not np.any(c):
        return None
    from pymatgen.core.elasticity import ElasticTensor  # slow import, only when tensors exist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        et = ElasticTensor.from_voigt(c)
        k, g = float(et.k_vrh), float(et.g_vrh)
    if not (k > 0 and g > 0):
        return None
    return velocities_from_moduli(k, g, formula_mass, n_atoms_per_fu, volume_per_atom)


def elastic_debye_temperature(v: SoundVelocities, volume_per_atom: float) -> float:
    """theta_D = (h / k_B) v_m (3 / (4 pi V_at))^(1/3), in K."""
    n = 1.0 / (volume_per_atom * ANGSTROM3_TO_M3)
    return H_PLANCK / K_BOLTZMANN * v.debye_mean * (3.0 * n / (4.0 * math.pi)) ** (1.0 / 3.0)


def debye_temperatures(
    dos: np.ndarray,
    elastic_tensors: list,
    formula_mass: np.ndarray,
    n_atoms_per_fu: np.ndarray,
    volume_per_atom: np.ndarray,
    bulk_gpa: list | None = None,
    shear_gpa: list | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Per material: theta_D (K) and its source label: 'elastic' (tensor), 'elastic_voigt' (moduli) or
    'dos_moment'."""
    theta = second_moment_debye_temperature(dos)
    source = ["dos_moment"] * len(theta)
    n = len(theta)
    bulk = bulk_gpa if bulk_gpa is not None else [None] * n
    shear = shear_gpa if shear_gpa is not None else [None] * n
    for i, tensor in enumerate(elastic_tensors):
        v, label = material_velocities(
            tensor, bulk[i], shear[i], formula_mass[i], int(n_atoms_per_fu[i]), volume_per_atom[i]
        )
        if v is not None:
            theta[i] = elastic_debye_temperature(v, volume_per_atom[i])
            source[i] = label
    return theta, source
