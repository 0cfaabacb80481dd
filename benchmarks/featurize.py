"""Benchmark of the featurize stage against alignn's pure-torch graph builder, measured in the same run.

    python benchmarks/featurize.py [--k 12] [--cutoff 8] [--limit N] [--memory-sizes 250 2000 16000]

1. Throughput (graphs/s, one process, one thread) of ``pipeline.data.graphs.build_graphs`` on chunks of 256 (what the
   stage runs; also ``build_graph`` one structure at a time, "one_by_one") vs
   ``alignn.torch_graph_builder.build_pure_torch_graph`` (same k = max_neighbors and cutoff, line graph and CGCNN
   features included in both) on
   - the real JARVIS structures in ../shared/data/jarvis_dft3d_subset.json.zip (skipped if absent), and
   - a mixed 2-40 atom set: textbook crystals (Cu, NaCl, Si, ZnO wurtzite, SrTiO3, TiO2 rutile) in supercells of
     2..40 atoms, rattled by 0.05 A so no two are alike.
   Ours starts from raw (lattice, frac, elements) arrays; alignn's from prebuilt jarvis ``Atoms`` (not timed).
   alignn runs with use_matscipy_topology=False (its pure-torch neighbour search) and, when matscipy and ase are
   importable (e.g. ``PYTHONPATH=/path/with/matscipy+ase``), also with its matscipy topology (ratio_vs_matscipy).
   Both builders run alternately ``--repeats`` times (so load from other processes hits both alike); the
   medians are printed with their ratio ours / alignn. Target: >= 5.
2. Peak memory of the whole stage (``run_shard``: parquet in, HDF5 shard out) in a fresh process per size, vs the
   number of structures. Target: flat (the input is streamed in batches; the shard writer flushes every 512 graphs).
3. Read-back speed of the largest of those shards (random single graphs, contiguous blocks, in-memory batches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_ZIP = (
    Path(os.environ.get("PHONON_SHARED_DATA", REPO.parent / "shared" / "data"))
    / "jarvis_dft3d_subset.json.zip"
)

Record = tuple[np.ndarray, np.ndarray, list[str]]  # lattice (3,3), frac (n,3), elements


def shared_structures() -> list[Record]:
    if not SHARED_ZIP.exists():
        return []
    with zipfile.ZipFile(SHARED_ZIP) as z:
        records = json.loads(z.read(z.namelist()[0]))
    return [
        (np.array(r["atoms"]["lattice_mat"]), np.array(r["atoms"]["coords"]), r["atoms"]["elements"])
        for r in records
    ]


def mixed_structures(n: int = 400, seed: int = 0) -> list[Record]:
    """Textbook primitive cells in supercells with 2..40 atoms, rattled by 0.05 A."""
    a = 1 / 3
    prims = [
        (np.array([[0, 1.805, 1.805], [1.805, 0, 1.805], [1.805, 1.805, 0]]), [[0, 0, 0]], ["Cu"]),
        (np.array([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), [[0, 0, 0], [0.5] * 3], ["Na", "Cl"]),
        (
            np.array([[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]]),
            [[0, 0, 0], [0.25] * 3],
            ["Si", "Si"],
        ),
        (
            np.array([[3.25, 0, 0], [-1.625, 2.8146, 0], [0, 0, 5.21]]),
            [[a, 2 * a, 0], [2 * a, a, 0.5], [a, 2 * a, 0.382], [2 * a, a, 0.882]],
            ["Zn", "Zn", "O", "O"],
        ),
        (
            np.eye(3) * 3.905,
            [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
            ["Sr", "Ti", "O", "O", "O"],
        ),
        (
            np.diag([4.594, 4.594, 2.959]),
            [
                [0, 0, 0],
                [0.5] * 3,
                [0.305, 0.305, 0],
                [0.695, 0.695, 0],
                [0.805, 0.195, 0.5],
                [0.195, 0.805, 0.5],
            ],
            ["Ti", "Ti", "O", "O", "O", "O"],
        ),
    ]
    reps = [np.array(r) for r in np.ndindex(4, 4, 4)]
    rng = np.random.default_rng(seed)
    out: list[Record] = []
    while len(out) < n:
        lat, frac, els = prims[rng.integers(len(prims))]
        rep = reps[rng.integers(len(reps))] + 1
        n_atoms = len(els) * int(np.prod(rep))
        if not 2 <= n_atoms <= 40:
            continue
        copies = np.array(list(np.ndindex(*rep)))
        f = ((np.array(frac)[None] + copies[:, None]) / rep).reshape(-1, 3)
        big = lat * rep[:, None]
        f = f + rng.normal(scale=0.05, size=f.shape) @ np.linalg.inv(big)  # 0.05 A cartesian rattle
        out.append((big, f, list(els) * len(copies)))
    return out


def ours_builder(k: int, cutoff: float, chunk: int = 0):
    """build_graph one structure at a time (chunk=0) or build_graphs on chunks (what the stage runs), atoms closer
    than ``featurize.min_distance`` (its schema default) overlapping."""
    from pipeline.data.featurize import FeaturizeSettings
    from pipeline.data.graphs import build_graph, build_graphs

    min_distance = FeaturizeSettings.from_config({}).min_distance

    def run(structures: list[Record]) -> None:
        if chunk:
            for i in range(0, len(structures), chunk):
                build_graphs(structures[i : i + chunk], k=k, cutoff=cutoff, min_distance=min_distance)
        else:
            for lat, frac, els in structures:
                build_graph(lat, frac, els, k=k, cutoff=cutoff, min_distance=min_distance)

    return structures_as_is, run


def alignn_builder(k: int, cutoff: float, matscipy: bool = False):
    import torch
    from alignn.torch_graph_builder import build_pure_torch_graph
    from jarvis.core.atoms import Atoms

    torch.set_num_threads(1)

    def prepare(structures: list[Record]) -> list:
        return [
            Atoms(lattice_mat=lat, coords=frac, elements=els, cartesian=False)
            for lat, frac, els in structures
        ]

    def run(atoms: list) -> None:
        for at in atoms:
            build_pure_torch_graph(
                at,
                two_body_cutoff=cutoff,
                max_neighbors=k,
                atom_features="cgcnn",
                use_matscipy_topology=matscipy,
            )

    return prepare, run


def has_matscipy() -> bool:
    """alignn's builder uses matscipy (+ ase) for the neighbour topology when both import; else pure torch."""
    try:
        import ase  # noqa: F401
        import matscipy.neighbours  # noqa: F401
    except ImportError:
        return False
    return True


def structures_as_is(structures: list[Record]) -> list[Record]:
    return structures


def throughput(name: str, structures: list[Record], k: int, cutoff: float, repeats: int) -> dict:
    """Alternate ours / alignn ``repeats`` times (other load on the machine hits both alike); median graphs/s."""
    builders = {
        "ours": ours_builder(k, cutoff, chunk=256),
        "ours_one_by_one": ours_builder(k, cutoff),
        "alignn": alignn_builder(k, cutoff),
    }
    if has_matscipy():
        builders["alignn_matscipy"] = alignn_builder(k, cutoff, matscipy=True)
    inputs = {key: prepare(structures) for key, (prepare, _) in builders.items()}  # not timed
    for key, (_, run) in builders.items():
        run(inputs[key][:5])  # warm-up: imports, caches
    rates: dict[str, list[float]] = {key: [] for key in builders}
    for _ in range(repeats):
        for key, (_, run) in builders.items():
            t = time.perf_counter()
            run(inputs[key])
            rates[key].append(len(structures) / (time.perf_counter() - t))
    sizes = [len(e) for _, _, e in structures]
    ours, ref = float(np.median(rates["ours"])), float(np.median(rates["alignn"]))
    one = float(np.median(rates["ours_one_by_one"]))
    row = {
        "set": name,
        "n_structures": len(structures),
        "atoms_min_mean_max": [min(sizes), round(float(np.mean(sizes)), 1), max(sizes)],
        "ours_graphs_per_s": round(ours, 1),
        "alignn_graphs_per_s": round(ref, 1),
        "ratio": round(ours / ref, 2),
        "ours_one_by_one_graphs_per_s": round(one, 1),
        "ratio_one_by_one": round(one / ref, 2),
        **{f"trials_{key}": [round(r) for r in r_list] for key, r_list in rates.items()},
    }
    if "alignn_matscipy" in rates:
        ref_m = float(np.median(rates["alignn_matscipy"]))
        row["alignn_matscipy_graphs_per_s"] = round(ref_m, 1)
        row["ratio_vs_matscipy"] = round(ours / ref_m, 2)
    print(json.dumps(row), flush=True)
    return row


# ------------------------------------------------------------------------------------------ memory ------------
_CHILD = """
import sys, time
from pipeline.data.featurize import FeaturizeSettings, run_shard
settings = FeaturizeSettings.from_config({"n_shards": 1, "k": int(sys.argv[4]), "cutoff": float(sys.argv[5])})
t = time.perf_counter()
s = run_shard(sys.argv[1], "train", 0, sys.argv[2], sys.argv[3], settings, progress=False)
dt = time.perf_counter() - t
# VmHWM is the peak RSS of this process image (ru_maxrss would include the parent's RSS at fork)
hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(s["n_graphs"], hwm_kb / 1024, dt)
"""


def write_input(path: Path, structures: list[Record], n: int) -> None:
    rows = [structures[i % len(structures)] for i in range(n)]
    pq.write_table(
        pa.table(
            {
                "jid": [f"JVASP-B{i}" for i in range(n)],
                "split": ["train"] * n,
                "dos": [np.full(66, 0.5, np.float32).tolist()] * n,
                "lattice_mat": [r[0].tolist() for r in rows],
                "frac_coords": [r[1].tolist() for r in rows],
                "elements": [r[2] for r in rows],
            }
        ),
        path,
    )


def peak_memory(structures: list[Record], sizes: list[int], k: int, cutoff: float) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            src = Path(tmp) / f"in-{n}.parquet"
            write_input(src, structures, n)
            res = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _CHILD,
                    str(src),
                    f"{tmp}/s-{n}.h5",
                    f"{tmp}/r-{n}.parquet",
                    str(k),
                    str(cutoff),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            n_graphs, rss_mb, seconds = res.stdout.split()
            row = {
                "n_structures": n,
                "n_graphs": int(n_graphs),
                "peak_rss_mb": round(float(rss_mb), 1),
                "stage_graphs_per_s": round(int(n_graphs) / float(seconds), 1),
                "shard_mb": round(Path(f"{tmp}/s-{n}.h5").stat().st_size / 2**20, 2),
            }
            print(json.dumps(row), flush=True)
            out.append(row)
        if sizes:
            print(json.dumps(read_speed(Path(f"{tmp}/s-{sizes[-1]}.h5"))), flush=True)
    return out


def read_speed(shard: Path, seed: int = 0) -> dict:
    """graphs/s when reading a shard back: random single graphs from disk, contiguous blocks, and batches of 64
    collated into GraphBatch from an in-memory reader (the training loop's access pattern)."""
    from pipeline.data.shards import ShardReader

    reader = ShardReader(shard)
    n = len(reader)
    picks = np.random.default_rng(seed).integers(0, n, min(n, 2000))
    t = time.perf_counter()
    for i in picks:
        reader[int(i)]
    random_rate = len(picks) / (time.perf_counter() - t)
    t = time.perf_counter()
    for lo in range(0, n, 1024):
        reader.read_range(lo, lo + 1024)
    block_rate = n / (time.perf_counter() - t)
    t = time.perf_counter()
    reader.load()
    load_s = time.perf_counter() - t
    order = np.random.default_rng(seed).permutation(n)
    reader.batch(order[:64])  # imports torch
    t = time.perf_counter()
    for lo in range(0, n, 64):
        reader.batch(order[lo : lo + 64])
    batch_rate = n / (time.perf_counter() - t)
    return {
        "read_shard_graphs": n,
        "random_single_graphs_per_s": round(random_rate),
        "block_1024_graphs_per_s": round(block_rate),
        "in_memory_load_s": round(load_s, 3),
        "in_memory_collate_64_graphs_per_s": round(batch_rate),
    }


def main() -> int:
    from pipeline.data.featurize import FeaturizeSettings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FeaturizeSettings.from_config({})  # the featurize stage's (the schema's)
    p.add_argument("--k", type=int, default=defaults.k)
    p.add_argument("--cutoff", type=float, default=defaults.cutoff)
    p.add_argument("--limit", type=int, default=None, help="use at most this many shared structures")
    p.add_argument("--mixed", type=int, default=400, help="size of the mixed 2-40 atom set")
    p.add_argument("--repeats", type=int, default=3, help="alternating timed passes per builder (median)")
    p.add_argument("--memory-sizes", type=int, nargs="*", default=[250, 2000, 16000])
    a = p.parse_args()

    shared = shared_structures()[: a.limit]
    mixed = mixed_structures(a.mixed)
    print(f"# k={a.k} cutoff={a.cutoff} A, one process, one thread", flush=True)
    rows = []
    if shared:
        rows.append(throughput("shared_jarvis", shared, a.k, a.cutoff, a.repeats))
    else:
        print(f"# {SHARED_ZIP} absent: shared set skipped", flush=True)
    rows.append(throughput("mixed_2_40", mixed, a.k, a.cutoff, a.repeats))
    mem = peak_memory(shared or mixed, a.memory_sizes, a.k, a.cutoff) if a.memory_sizes else []
    if len(mem) >= 2:
        lo, hi = mem[-2], mem[-1]
        slope = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) / (hi["n_structures"] - lo["n_structures"])
        print(
            f"# peak RSS {lo['peak_rss_mb']} MB at {lo['n_structures']} -> {hi['peak_rss_mb']} MB at "
            f"{hi['n_structures']} structures: {slope * 1000:.2f} MB per 1000 structures",
            flush=True,
        )
    for r in rows:
        verdict = "meets" if r["ratio"] >= 5 else "MISSES"
        extra = f"; vs alignn+matscipy {r['ratio_vs_matscipy']}x" if "ratio_vs_matscipy" in r else ""
        print(f"# {r['set']}: ours/alignn = {r['ratio']}x ({verdict} the >= 5x target){extra}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
