"""The embedded demo dataset: textbook crystals built from prototype + experimental lattice constant.

``python -m pipeline.data.demo_data [OUT]`` writes ``data/demo/structures.json`` (JARVIS record format). Ids are the
JARVIS-DFT ids of the same compounds, so the ``jarvis-leaderboard`` DFT phonon DOS labels pair with them; the
structures themselves are idealised primitive cells (room-temperature lattice constants from standard tables,
e.g. Kittel / CRC), not the relaxed JARVIS cells, so small label-structure mismatches are expected.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

Cell = tuple[list[list[float]], list[list[float]], list[str]]  # lattice rows (A), fractional coords, elements


def fcc(a: float, el: str) -> Cell:
    return (0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])).tolist(), [[0, 0, 0]], [el]


def bcc(a: float, el: str) -> Cell:
    return (0.5 * a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])).tolist(), [[0, 0, 0]], [el]


def rocksalt(a: float, cation: str, anion: str) -> Cell:
    lat, _, _ = fcc(a, cation)
    return lat, [[0, 0, 0], [0.5, 0.5, 0.5]], [cation, anion]


def zincblende(a: float, cation: str, anion: str) -> Cell:
    lat, _, _ = fcc(a, cation)
    return lat, [[0, 0, 0], [0.25, 0.25, 0.25]], [cation, anion]


def diamond(a: float, el: str) -> Cell:
    return zincblende(a, el, el)


def cscl(a: float, a_el: str, b_el: str) -> Cell:
    return (a * np.eye(3)).tolist(), [[0, 0, 0], [0.5, 0.5, 0.5]], [a_el, b_el]


def _hex_lattice(a: float, c: float) -> list[list[float]]:
    return [[a, 0.0, 0.0], [-0.5 * a, 0.5 * np.sqrt(3) * a, 0.0], [0.0, 0.0, c]]


def hcp(a: float, c: float, el: str) -> Cell:
    return _hex_lattice(a, c), [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]], [el, el]


def wurtzite(a: float, c: float, cation: str, anion: str, u: float = 0.375) -> Cell:
    coords = [[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    return _hex_lattice(a, c), coords, [cation, cation, anion, anion]


def perovskite(a: float, a_el: str, b_el: str, x_el: str) -> Cell:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return (a * np.eye(3)).tolist(), coords, [a_el, b_el, x_el, x_el, x_el]


#: (JARVIS id, builder, arguments). Lattice constants in Angstrom (experimental, room temperature).
CRYSTALS: list[tuple[str, Callable[..., Cell], tuple]] = [
    # diamond and zinc blende
    ("JVASP-1002", diamond, (5.431, "Si")),
    ("JVASP-91", diamond, (3.567, "C")),
    ("JVASP-1174", zincblende, (5.653, "Ga", "As")),
    ("JVASP-1372", zincblende, (5.661, "Al", "As")),
    # rock salt
    ("JVASP-23862", rocksalt, (5.640, "Na", "Cl")),
    ("JVASP-116", rocksalt, (4.212, "Mg", "O")),
    ("JVASP-1996", rocksalt, (6.473, "Na", "I")),
    ("JVASP-1390", rocksalt, (5.160, "Sr", "O")),
    ("JVASP-1369", rocksalt, (4.877, "Y", "N")),
    ("JVASP-14575", rocksalt, (5.020, "Ce", "N")),
    ("JVASP-13886", rocksalt, (5.780, "Ce", "S")),
    ("JVASP-7794", rocksalt, (4.905, "Dy", "N")),
    ("JVASP-8180", rocksalt, (4.874, "Ho", "N")),
    # fcc metals
    ("JVASP-816", fcc, (4.050, "Al")),
    ("JVASP-867", fcc, (3.615, "Cu")),
    ("JVASP-943", fcc, (3.524, "Ni")),
    ("JVASP-963", fcc, (3.891, "Pd")),
    ("JVASP-972", fcc, (3.924, "Pt")),
    ("JVASP-984", fcc, (3.803, "Rh")),
    ("JVASP-961", fcc, (4.950, "Pb")),
    # bcc metals
    ("JVASP-861", bcc, (2.910, "Cr")),
    ("JVASP-21195", bcc, (3.147, "Mo")),
    ("JVASP-934", bcc, (3.300, "Nb")),
    ("JVASP-1014", bcc, (3.303, "Ta")),
    ("JVASP-14837", bcc, (3.030, "V")),
    ("JVASP-14604", bcc, (5.020, "Ba")),
    # CsCl-type intermetallics
    ("JVASP-14639", cscl, (2.862, "Al", "Co")),
    ("JVASP-15000", cscl, (2.908, "Al", "Fe")),
    ("JVASP-11956", cscl, (2.887, "Al", "Ni")),
    ("JVASP-20625", cscl, (3.262, "Zr", "Cu")),
    # hcp metals
    ("JVASP-919", hcp, (3.209, 5.211, "Mg")),
    ("JVASP-1056", hcp, (2.665, 4.947, "Zn")),
    ("JVASP-987", hcp, (2.706, 4.282, "Ru")),
    ("JVASP-14744", hcp, (2.734, 4.317, "Os")),
    ("JVASP-981", hcp, (2.761, 4.456, "Re")),
    ("JVASP-1050", hcp, (3.647, 5.731, "Y")),
    ("JVASP-802", hcp, (3.195, 5.051, "Hf")),
    ("JVASP-14612", hcp, (3.232, 5.147, "Zr")),
    ("JVASP-858", hcp, (2.507, 4.069, "Co")),
    ("JVASP-996", hcp, (3.309, 5.273, "Sc")),
    # wurtzite
    ("JVASP-39", wurtzite, (3.112, 4.982, "Al", "N", 0.382)),
    ("JVASP-30", wurtzite, (3.189, 5.185, "Ga", "N", 0.377)),
    ("JVASP-1180", wurtzite, (3.545, 5.703, "In", "N", 0.379)),
    ("JVASP-95", wurtzite, (4.136, 6.714, "Cd", "S", 0.377)),
    # perovskite
    ("JVASP-8082", perovskite, (3.905, "Sr", "Ti", "O")),
    # no phonon DOS in the benchmark: the demo's unlabeled inference pool
    ("JVASP-260", rocksalt, (5.936, "Pb", "S")),
    ("JVASP-79561", bcc, (3.165, "W")),
    ("JVASP-834", hcp, (2.286, 3.584, "Be")),
    ("JVASP-78964", rocksalt, (5.990, "Sn", "Se")),
]


def records() -> list[dict]:
    out = []
    for jid, builder, args in CRYSTALS:
        lattice, coords, elements = builder(*args)
        out.append(
            {
                "jid": jid,
                "atoms": {
                    "lattice_mat": np.round(np.asarray(lattice, dtype=float), 10).tolist(),
                    "coords": np.asarray(coords, dtype=float).tolist(),
                    "elements": elements,
                    "cartesian": False,
                },
                "source": f"demo:{builder.__name__}",
                "relaxation": "textbook",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "data/demo/structures.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records(), indent=1) + "\n")
    print(f"wrote {len(CRYSTALS)} structures to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
