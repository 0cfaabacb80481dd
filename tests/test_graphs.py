"""Crystal graph + line graph: correctness against a brute-force reference, physical limits, invariances,
line-graph bookkeeping and the failure modes that must become rejects."""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from pipeline.data.graphs import (
    FeaturizationError,
    Graph,
    bond_cosines,
    cgcnn_table,
    line_graph,
)
from tests.helpers import graph_of, graphs_of


# ------------------------------------------------------------------------------------------ crystals ----------
@functools.cache
def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@functools.cache
def diamond_primitive(a: float = 5.431) -> Structure:
    lat = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lat, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


@functools.cache
def wurtzite() -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]
    )


@functools.cache
def triclinic_generic(seed: int = 0) -> Structure:
    """A low-symmetry cell with no degenerate neighbour shells, so the kNN graph is unique up to relabelling."""
    rng = np.random.default_rng(seed)
    lat = Lattice.from_parameters(4.1, 4.7, 5.3, 79.0, 86.0, 97.0)
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.25, 0.7, 0.1], [0.8, 0.2, 0.6], [0.4, 0.1, 0.85]])
    frac += rng.normal(scale=0.02, size=frac.shape)
    return Structure(lat, ["Ga", "As", "O", "Li", "Zn"], frac)


CRYSTALS = {
    "rocksalt": rocksalt,
    "diamond": diamond_primitive,
    "wurtzite": wurtzite,
    "triclinic": triclinic_generic,
}


def structure_graph(s: Structure, **overrides) -> Graph:
    """The graph of a pymatgen structure with the featurize defaults (``overrides``, e.g. ``k=6``, over them)."""
    return graph_of(s.lattice.matrix, s.frac_coords, [sp.symbol for sp in s.species], **overrides)


def per_atom_distances(g: Graph, k: int) -> np.ndarray:
    """(n, k) sorted neighbour distances of each atom."""
    return np.sort(np.linalg.norm(g.bond_vec.astype(np.float64), axis=1).reshape(g.n_atoms, k), axis=1)


def per_atom_angles(g: Graph) -> list[np.ndarray]:
    """Sorted angle cosines of the line-graph edges centred on each atom (the shared atom j = src of bond b)."""
    centre = g.edge_src[g.line_dst]
    return [np.sort(g.angle_cos[centre == i]) for i in range(g.n_atoms)]


def brute_force_knn_distances(s: Structure, k: int, reach: int = 4) -> np.ndarray:
    """k smallest periodic neighbour distances of each atom by enumerating every image in [-reach, reach]^3."""
    rng = np.arange(-reach, reach + 1)
    images = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), -1).reshape(-1, 3)
    cart = s.lattice.get_cartesian_coords(s.frac_coords)
    shifts = images @ s.lattice.matrix
    d = np.linalg.norm(
        cart[None, :, None] + shifts[None, None] - cart[:, None, None], axis=-1
    )  # (i, j, image)
    d = d.reshape(len(s), -1)
    d = np.where(d < 1e-8, np.inf, d)
    return np.sort(d, axis=1)[:, :k]


# ------------------------------------------------------------------------------------------ correctness -------
@pytest.mark.parametrize("name", CRYSTALS)
@pytest.mark.parametrize("k", [4, 12])
def test_knn_matches_brute_force_and_bond_vectors_are_periodic_images(name: str, k: int) -> None:
    s = CRYSTALS[name]()
    g = structure_graph(s, k=k)
    assert g.n_edges == len(s) * k
    np.testing.assert_array_equal(g.edge_src, np.repeat(np.arange(len(s)), k))
    np.testing.assert_allclose(per_atom_distances(g, k), brute_force_knn_distances(s, k), atol=1e-5)
    cart = s.lattice.get_cartesian_coords(s.frac_coords % 1.0)
    expected = cart[g.edge_dst] + g.edge_image @ s.lattice.matrix - cart[g.edge_src]
    np.testing.assert_allclose(g.bond_vec, expected, atol=1e-5)
    assert g.search_radius == 8.0


def test_diamond_tetrahedra_limit() -> None:
    """k=4 in diamond: the 4 bonds are a*sqrt(3)/4; angles at each atom are tetrahedral (cos -1/3), and every bond
    is mutual, so the backtracking pairs (kept, cos 1) are exactly one per bond."""
    a = 5.431
    g = structure_graph(diamond_primitive(a), k=4)
    np.testing.assert_allclose(np.linalg.norm(g.bond_vec, axis=1), a * np.sqrt(3) / 4, rtol=1e-6)
    assert g.n_triplets == 2 * 4 * 4
    cos, counts = np.unique(np.round(g.angle_cos.astype(np.float64), 5), return_counts=True)
    assert dict(zip(cos.tolist(), counts.tolist(), strict=True)) == {-0.33333: 2 * 4 * 3, 1.0: 2 * 4}


def test_rocksalt_octahedra_limit() -> None:
    """k=6 in rocksalt: 6 unlike neighbours at a/2; bond pairs at an atom are at 90 or 180 degrees (or backtrack)."""
    a = 5.64
    s = rocksalt(a)
    g = structure_graph(s, k=6)
    np.testing.assert_allclose(np.linalg.norm(g.bond_vec, axis=1), a / 2, rtol=1e-6)
    z = g.atomic_number
    assert (z[g.edge_src] != z[g.edge_dst]).all()
    n = len(s)
    cos, counts = np.unique(np.round(g.angle_cos.astype(np.float64), 5), return_counts=True)
    assert dict(zip(cos.tolist(), counts.tolist(), strict=True)) == {-1.0: n * 6, 0.0: n * 6 * 4, 1.0: n * 6}


def test_angle_cos_is_alignn_convention() -> None:
    g = structure_graph(triclinic_generic())
    u, v = -g.bond_vec[g.line_src].astype(np.float64), g.bond_vec[g.line_dst].astype(np.float64)
    expected = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(g.angle_cos, expected, atol=1e-6)
    assert (g.edge_dst[g.line_src] == g.edge_src[g.line_dst]).all()


def test_atomic_numbers_and_cgcnn_table_match_jarvis() -> None:
    from jarvis.core.specie import get_node_attributes

    g = structure_graph(wurtzite())
    assert sorted(set(g.atomic_number.tolist())) == [8, 30]
    for z, symbol in [(8, "O"), (30, "Zn"), (1, "H"), (100, "Fm")]:
        np.testing.assert_allclose(cgcnn_table()[z], get_node_attributes(symbol, atom_features="cgcnn"))


def test_deterministic() -> None:
    s = rocksalt()
    assert structure_graph(s).equals(structure_graph(s))


def test_build_graphs_is_bit_identical_to_build_graph_including_failures() -> None:
    """The chunked builder (used by the stage) against the one-structure builder, on crystals, a supercell, an
    enlarged-sphere case and every failure mode, in one chunk."""
    structures = [
        (s.lattice.matrix, s.frac_coords, [sp.symbol for sp in s.species])
        for s in map(lambda f: f(), CRYSTALS.values())
    ]
    structures += [
        (np.eye(3) * 5, [[0, 0, 0], [0.02, 0, 0]], ["Na", "Cl"]),  # overlap
        (np.eye(3) * 12, [[0.5, 0.5, 0.5], [0.5 + 0.74 / 12, 0.5, 0.5]], ["H", "H"]),  # enlarged sphere
        (np.eye(3) * 20, [[0, 0, 0], [0.5, 0, 0]], ["Ar", "Ar"]),  # isolated
        (np.eye(3) * 4, [[0, 0, 0]], ["Qq"]),  # unknown element
        ([[1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 0, 0]], ["Cu"]),  # zero volume
        (
            np.diag([3.61, 7.22, 3.61]),
            [[0, 0, 0], [0.5, 0.25, 0.5], [0, 0.5, 0], [0.5, 0.75, 0.5]],
            ["Cu"] * 4,
        ),
    ]
    for k in (3, 12):
        batch = graphs_of(structures, k=k)
        for structure, got in zip(structures, batch, strict=True):
            try:
                expected = graph_of(*structure, k=k)
            except FeaturizationError as e:
                assert isinstance(got, FeaturizationError) and str(got) == str(e)
            else:
                assert isinstance(got, Graph) and got.equals(expected)


# ------------------------------------------------------------------------------------------ line graph --------
def test_line_graph_counts_match_edge_degrees() -> None:
    """On an irregular directed graph: bond a has out_degree(dst a) successors, bond b has in_degree(src b)
    predecessors, and the pairs are exactly those sharing the middle atom (checked against a double loop)."""
    rng = np.random.default_rng(1)
    n = 7
    src = rng.integers(0, n, 40)
    dst = rng.integers(0, n, 40)
    ls, ld = line_graph(src, dst, n)
    out_deg = np.bincount(src, minlength=n)
    in_deg = np.bincount(dst, minlength=n)
    np.testing.assert_array_equal(np.bincount(ls, minlength=40), out_deg[dst])
    np.testing.assert_array_equal(np.bincount(ld, minlength=40), in_deg[src])
    expected = sorted((a, b) for a in range(40) for b in range(40) if dst[a] == src[b])
    assert sorted(zip(ls.tolist(), ld.tolist(), strict=True)) == expected


@pytest.mark.parametrize("name", CRYSTALS)
def test_fast_line_graph_equals_the_generic_construction(name: str) -> None:
    g = structure_graph(CRYSTALS[name](), k=5)
    ls, ld = line_graph(g.edge_src, g.edge_dst, g.n_atoms)
    np.testing.assert_array_equal(g.line_src, ls)
    np.testing.assert_array_equal(g.line_dst, ld)
    np.testing.assert_allclose(g.angle_cos, bond_cosines(g.bond_vec.astype(np.float64), ls, ld), atol=1e-6)


@pytest.mark.parametrize("name", CRYSTALS)
def test_crystal_line_graph_has_k_successors_per_bond(name: str) -> None:
    k = 12
    g = structure_graph(CRYSTALS[name](), k=k)
    assert g.n_triplets == g.n_atoms * k * k
    np.testing.assert_array_equal(np.bincount(g.line_src, minlength=g.n_edges), np.full(g.n_edges, k))
    in_deg = np.bincount(g.edge_dst, minlength=g.n_atoms)
    np.testing.assert_array_equal(np.bincount(g.line_dst, minlength=g.n_edges), in_deg[g.edge_src])
    # backtracking pairs are kept: one for every bond whose reverse bond (same image, negated) is in the graph
    back = (g.edge_dst[g.line_dst] == g.edge_src[g.line_src]) & (
        g.edge_image[g.line_dst] == -g.edge_image[g.line_src]
    ).all(1)
    bonds = {(s, d, *img) for s, d, img in zip(g.edge_src, g.edge_dst, g.edge_image.tolist(), strict=True)}
    mutual = sum((d, s, *(-np.array(img))) in bonds for s, d, *img in bonds)
    assert back.sum() == mutual > 0
    np.testing.assert_allclose(g.angle_cos[back], 1.0, atol=1e-6)


# ------------------------------------------------------------------------------------------ invariances -------
@pytest.mark.parametrize("name", CRYSTALS)
def test_permutation_invariance(name: str) -> None:
    s = CRYSTALS[name]()
    perm = np.random.default_rng(2).permutation(len(s))
    g0 = structure_graph(s)
    g1 = structure_graph(Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm]))
    np.testing.assert_allclose(per_atom_distances(g1, 12), per_atom_distances(g0, 12)[perm], atol=1e-5)
    np.testing.assert_array_equal(g1.atomic_number, g0.atomic_number[perm])
    if name == "triclinic":  # no ties: the whole graph is the same up to relabelling, angles included
        a0, a1 = per_atom_angles(g0), per_atom_angles(g1)
        for new, old in enumerate(perm):
            np.testing.assert_allclose(a1[new], a0[old], atol=1e-5)


@pytest.mark.parametrize("name", CRYSTALS)
def test_translation_invariance(name: str) -> None:
    s = CRYSTALS[name]()
    shift = np.array([0.37, -0.81, 2.26])
    g0, g1 = structure_graph(s), structure_graph(Structure(s.lattice, s.species, s.frac_coords + shift))
    np.testing.assert_allclose(per_atom_distances(g1, 12), per_atom_distances(g0, 12), atol=1e-5)
    if name == "triclinic":
        for a0, a1 in zip(per_atom_angles(g0), per_atom_angles(g1), strict=True):
            np.testing.assert_allclose(a1, a0, atol=1e-5)


@pytest.mark.parametrize("name", CRYSTALS)
def test_rotation_invariance(name: str) -> None:
    """Rotating the lattice (fractional coordinates fixed) rotates every bond vector and keeps lengths and angles."""
    from scipy.spatial.transform import Rotation

    s = CRYSTALS[name]()
    rot = Rotation.from_euler("zyx", [33.0, -71.0, 12.5], degrees=True).as_matrix()
    g0 = structure_graph(s)
    g1 = graph_of(s.lattice.matrix @ rot.T, s.frac_coords, [sp.symbol for sp in s.species])
    np.testing.assert_allclose(per_atom_distances(g1, 12), per_atom_distances(g0, 12), atol=1e-5)
    for a0, a1 in zip(per_atom_angles(g0), per_atom_angles(g1), strict=True):
        np.testing.assert_allclose(a1, a0, atol=1e-5)
    if name == "triclinic":
        np.testing.assert_allclose(g1.bond_vec, g0.bond_vec @ rot.T, atol=1e-5)


def _edge_keys(g: Graph, image_perm=(0, 1, 2)) -> list[tuple[int, int, int, int, int]]:
    image = g.edge_image[:, list(image_perm)]
    return [(int(s), int(d), *map(int, im)) for s, d, im in zip(g.edge_src, g.edge_dst, image, strict=True)]


@pytest.mark.parametrize(
    ("name", "k"), [("rocksalt", 6), ("rocksalt", 18), ("diamond", 4), ("diamond", 16), ("triclinic", 12)]
)
def test_left_handed_cell_gives_the_same_graph(name: str, k: int) -> None:
    """Lattice rows 0 and 1 swapped (det < 0) with the fractional columns swapped too: the same crystal, so the same
    graph up to the order of the bonds (k closes a neighbour shell, so the bond set is unique), bond vectors and
    line graph included. Left-handed cells used to be rejected as 'degenerate or left-handed'."""
    s = CRYSTALS[name]()
    elements = [sp.symbol for sp in s.species]
    lattice, frac = s.lattice.matrix, s.frac_coords
    assert np.linalg.det(lattice) > 0
    g = graph_of(lattice, frac, elements, k=k)
    h = graph_of(lattice[[1, 0, 2]], frac[:, [1, 0, 2]], elements, k=k)
    assert np.linalg.det(lattice[[1, 0, 2]]) < 0
    g_keys, h_keys = _edge_keys(g), _edge_keys(h, image_perm=(1, 0, 2))  # image (a, b, c) -> (b, a, c)
    assert sorted(g_keys) == sorted(h_keys)
    perm = np.array([h_keys.index(key) for key in g_keys])  # edge e of g is edge perm[e] of h
    np.testing.assert_array_equal(h.atomic_number, g.atomic_number)
    np.testing.assert_allclose(h.bond_vec[perm], g.bond_vec, atol=1e-5)
    g_pairs = sorted(zip(perm[g.line_src].tolist(), perm[g.line_dst].tolist(), strict=True))
    assert g_pairs == sorted(zip(h.line_src.tolist(), h.line_dst.tolist(), strict=True))
    cos_h = dict(zip(zip(h.line_src.tolist(), h.line_dst.tolist(), strict=True), h.angle_cos, strict=True))
    cos_g = [cos_h[(int(perm[a]), int(perm[b]))] for a, b in zip(g.line_src, g.line_dst, strict=True)]
    np.testing.assert_allclose(cos_g, g.angle_cos, atol=1e-6)
    # k=12 cuts through a degenerate shell in rocksalt/diamond: which bonds are kept may differ, lengths may not
    g12 = graph_of(lattice, frac, elements)
    h12 = graph_of(lattice[[1, 0, 2]], frac[:, [1, 0, 2]], elements)
    np.testing.assert_allclose(per_atom_distances(h12, 12), per_atom_distances(g12, 12), atol=1e-5)


@pytest.mark.parametrize("name", CRYSTALS)
@pytest.mark.parametrize("reps", [(2, 1, 1), (2, 2, 3)])
def test_supercell_invariance(name: str, reps: tuple[int, int, int]) -> None:
    """Every copy of atom i in a supercell has the same k neighbour distances as atom i in the primitive cell."""
    s = CRYSTALS[name]()
    copies = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1).reshape(-1, 3)
    frac = ((s.frac_coords[None] + copies[:, None]) / np.array(reps)).reshape(-1, 3)  # copy-major
    lattice = s.lattice.matrix * np.array(reps)[:, None]
    elements = [sp.symbol for sp in s.species] * len(copies)
    g_super = graph_of(lattice, frac, elements)
    expected = np.tile(per_atom_distances(structure_graph(s), 12), (len(copies), 1))
    np.testing.assert_allclose(per_atom_distances(g_super, 12), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------ failure modes -----
def _fails(match: str, lattice, frac, elements, **kw) -> None:
    with pytest.raises(FeaturizationError, match=match):
        graph_of(lattice, frac, elements, **kw)


def test_overlapping_atoms_rejected() -> None:
    _fails(
        "overlapping atoms: atom 0 \\(Na\\) and atom 1 \\(Cl\\) are 0.10",
        np.eye(3) * 5,
        [[0, 0, 0], [0.02, 0, 0]],
        ["Na", "Cl"],
    )


def test_overlap_across_the_periodic_boundary_rejected() -> None:
    _fails("overlapping atoms", np.eye(3) * 5, [[0.001, 0.5, 0.5], [0.999, 0.5, 0.5]], ["Na", "Cl"])


@pytest.mark.parametrize(
    "lattice, match",
    [
        ([[1, 0, 0], [0, 1, 0], [1, 1, 0]], "volume .* degenerate cell"),  # coplanar vectors
        ([[1, 0, 0], [1, 1, 0], [0, 1, 0]], "volume .* degenerate cell"),  # coplanar and left-handed
        ([[4, 0, 0], [0, np.nan, 0], [0, 0, 4]], "non-finite"),
    ],
)
def test_bad_lattice_rejected(lattice, match: str) -> None:
    _fails(match, lattice, [[0, 0, 0]], ["Cu"])


@pytest.mark.parametrize("symbol", ["Xx", "Og", "D"])
def test_unknown_element_rejected(symbol: str) -> None:
    _fails(f"unknown element '{symbol}'", np.eye(3) * 4, [[0, 0, 0], [0.5, 0.5, 0.5]], ["Cu", symbol])


def test_shape_mismatch_rejected() -> None:
    _fails("frac_coords has shape \\(1, 3\\), expected \\(2, 3\\)", np.eye(3) * 4, [[0, 0, 0]], ["Cu", "Cu"])
    _fails("no atoms", np.eye(3) * 4, np.zeros((0, 3)), [])


def test_isolated_atom_rejected() -> None:
    """Two atoms 10 A apart in a 20 A box: neither has any neighbour (nor own image) within 8 A."""
    _fails(
        "atom 0 \\(Ar\\) has no neighbour within the cutoff 8.0 A",
        np.eye(3) * 20,
        [[0, 0, 0], [0.5, 0, 0]],
        ["Ar", "Ar"],
    )


def test_sparse_neighbourhood_enlarges_the_sphere_never_fewer_than_k_edges() -> None:
    """An H2 molecule in a 12 A box: 1 neighbour within 8 A, so the k=12 bonds come from an enlarged sphere."""
    d = 0.74
    g = graph_of(np.eye(3) * 12, [[0.5, 0.5, 0.5], [0.5 + d / 12, 0.5, 0.5]], ["H", "H"], k=12, cutoff=8.0)
    assert g.n_edges == 24 and g.search_radius > 8.0
    dist = per_atom_distances(g, 12)
    np.testing.assert_allclose(dist[:, 0], d, rtol=1e-6)
    assert (dist[:, 1:] >= 12 - d - 1e-6).all()  # the next neighbours are periodic images, >= 11.26 A away


# ------------------------------------------------------------------------------------------ real data ---------
@pytest.fixture(scope="module")
def shared_structures(shared_zip: Path) -> list[dict]:
    with zipfile.ZipFile(shared_zip) as z:
        records = json.loads(z.read(z.namelist()[0]))
    return records[::47]  # 50 real JARVIS structures spread over the file


@pytest.mark.shared
def test_real_jarvis_structures_match_brute_force(shared_structures: list[dict]) -> None:
    for rec in shared_structures:
        atoms = rec["atoms"]
        s = Structure(atoms["lattice_mat"], atoms["elements"], atoms["coords"])
        g = graph_of(atoms["lattice_mat"], atoms["coords"], atoms["elements"])
        assert g.n_edges == 12 * len(s), rec["jid"]
        reach = int(np.ceil(8.0 * np.linalg.norm(np.linalg.inv(s.lattice.matrix), axis=0).max())) + 1
        if len(s) * (2 * reach + 1) ** 3 > 200_000:
            continue  # brute force too large for a fast test
        np.testing.assert_allclose(
            per_atom_distances(g, 12), brute_force_knn_distances(s, 12, reach), atol=1e-5, err_msg=rec["jid"]
        )
