"""Example structures for ``screen`` (and ``make demo``): textbook crystals written as CIF files.

``python -m pipeline.data.examples [OUT_DIR]`` writes ``data/examples/*.cif``: each crystal is built from its prototype
and experimental room-temperature lattice constant (Kittel / CRC-style tables; the builders of
:mod:`pipeline.data.demo_data`) and written by pymatgen's ``CifWriter`` with its space group (symmetrised conventional
cell), so reading it back exercises the symmetry expansion of a real CIF.

LiH and MgH2 are the hydrides: their hydrogen modes lie far above the model's 1000 cm^-1 grid (LiH optical modes
up to ~1100 cm^-1, MgH2 up to ~1500 cm^-1), which ``screen`` must flag as ``beyond_grid``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.data.demo_data import Cell, diamond, fcc, rocksalt, zincblende


def rutile(a: float, c: float, u: float, cation: str, anion: str) -> Cell:
    """Rutile (P4_2/mnm): cation at 2a (0,0,0), (1/2,1/2,1/2); anion at 4f (u,u,0), (1-u,1-u,0),
    (1/2+u,1/2-u,1/2), (1/2-u,1/2+u,1/2)."""
    lattice = [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, c]]
    coords = [
        [0, 0, 0],
        [0.5, 0.5, 0.5],
        [u, u, 0],
        [1 - u, 1 - u, 0],
        [0.5 + u, 0.5 - u, 0.5],
        [0.5 - u, 0.5 + u, 0.5],
    ]
    return lattice, coords, [cation, cation, anion, anion, anion, anion]


#: (file stem, builder, arguments); lattice constants in Angstrom, experimental, room temperature
EXAMPLES: list[tuple[str, Callable[..., Cell], tuple]] = [
    ("NaCl", rocksalt, (5.640, "Na", "Cl")),
    ("Si", diamond, (5.431, "Si")),
    ("MgO", rocksalt, (4.212, "Mg", "O")),
    ("LiH", rocksalt, (4.083, "Li", "H")),
    ("MgH2", rutile, (4.501, 3.010, 0.304, "Mg", "H")),
    ("GaAs", zincblende, (5.653, "Ga", "As")),
    ("Cu", fcc, (3.615, "Cu")),
]


def structures() -> dict[str, object]:
    """stem -> pymatgen Structure of every example."""
    from pymatgen.core import Lattice, Structure

    out = {}
    for name, builder, args in EXAMPLES:
        lattice, coords, elements = builder(*args)
        out[name] = Structure(Lattice(lattice), elements, coords)
    return out


def write(out_dir: str | Path = "data/examples") -> list[Path]:
    from pymatgen.io.cif import CifWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, s in structures().items():
        path = out / f"{name}.cif"
        text = str(CifWriter(s, symprec=0.01))
        path.write_text(
            text.replace("# generated using pymatgen", f"# {name}: pipeline.data.examples (textbook)")
        )
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    written = write(argv[0] if argv else "data/examples")
    print(f"wrote {len(written)} example CIFs: {', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
