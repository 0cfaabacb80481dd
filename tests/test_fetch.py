"""The real figshare download code against a local HTTP server on 127.0.0.1 serving figshare-format zips.

The server is bounded (at most MAX_REQUESTS requests, stops itself after LIFETIME_S seconds) and only ever
listens on the loopback interface.
"""

from __future__ import annotations

import io
import json
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import fetch
from pipeline.data.demo_data import records as demo_records
from pipeline.stages import fetch as fetch_stage
from tests.helpers import figshare_settings
from tests.loopback import LoopbackServer

MAX_REQUESTS = 200
LIFETIME_S = 120.0


def figshare_zip(member: str, payload: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, json.dumps(payload))
    return buf.getvalue()


class FigshareLike(LoopbackServer):
    """Serves ``/files/<id>`` like ndownloader.figshare.com; ``mode[id]`` injects failures."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode: dict[
            str, list[str]
        ] = {}  # per file id: queue of 'ok' | 'truncate' | 'error500' | 'corrupt'
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                outer.requests += 1
                if outer.requests > MAX_REQUESTS:
                    self.send_error(429)
                    return
                file_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                if file_id not in outer.files:
                    self.send_error(404)
                    return
                queue = outer.mode.get(file_id, [])
                mode = queue.pop(0) if queue else "ok"
                body = outer.files[file_id]
                if mode == "error500":
                    self.send_error(500)
                    return
                if mode == "corrupt":
                    body = body[:100] + bytes(b ^ 0xFF for b in body[100:200]) + body[200:]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(outer.files[file_id])))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

        super().__init__(Handler, LIFETIME_S, "/files")


def dft3d_records() -> list[dict]:
    recs = demo_records()[:6]
    for rec in recs:
        rec.pop("source")
        rec.pop("relaxation")
    recs[0]["reference"] = "mp-149"
    recs[0]["elastic_tensor"] = (np.eye(6) * 100).tolist()
    recs[1]["elastic_tensor"] = "na"
    recs.append(
        {"jid": "JVASP-BROKEN", "atoms": {"lattice_mat": [[1, 0], [0, 1]], "coords": [], "elements": []}}
    )
    recs.append({"atoms": recs[2]["atoms"]})  # no jid
    return recs


def edos_records(jids: list[str]) -> list[dict]:
    freqs = fetch.PDOS_ELAST_FREQ_CM
    out = [
        {"jid": j, "pdos_elast": np.exp(-(((freqs - 300) / 40) ** 2)).tolist(), "edos_up": [0.1]}
        for j in jids
    ]
    out.append({"jid": "JVASP-EDOS-ONLY", "pdos_elast": "na", "edos_up": [0.1]})  # electronic DOS only
    out.append({"jid": "JVASP-SHORT", "pdos_elast": [1.0, 2.0]})
    return out


@pytest.fixture()
def server():
    with FigshareLike() as srv:
        for name, payload in (
            ("dft_3d", dft3d_records()),
            ("edos_pdos", edos_records(["JVASP-1002", "JVASP-91"])),
        ):
            rec = fetch.figshare_record(name)
            srv.files[rec.file_id] = figshare_zip(rec.member, payload)
        yield srv


def test_figshare_source_end_to_end(server, tmp_path):
    mirror = figshare_settings(mirror=server.url)
    counts = fetch.run("figshare", "figshare", None, mirror, tmp_path / "out", tmp_path / "raw")
    structures = pd.read_parquet(tmp_path / "out/structures.parquet")
    dos_raw = pd.read_parquet(tmp_path / "out/dos_raw.parquet")
    rejects = pd.read_parquet(tmp_path / "out/rejects.parquet")
    assert counts == {"structures": 6, "spectra": 2, "rejects": 3}
    si = structures.set_index("jid").loc["JVASP-1002"]
    assert si.mp_id == "mp-149" and np.asarray(si.elastic_tensor.tolist()).shape == (6, 6)
    assert structures.set_index("jid").loc["JVASP-91"].elastic_tensor is None
    assert sorted(rejects.reason.str.split(":").str[0]) == [
        "pdos_elast has 2 values, expected 200",
        "record has no 'jid'",
        "unparsable structure",
    ]
    assert set(dos_raw.jid) == {"JVASP-1002", "JVASP-91"} and len(dos_raw.frequencies[0]) == 200
    sums = json.loads((tmp_path / "raw/checksums.json").read_text())
    assert set(sums) == {"dft_3d", "edos_pdos"}
    assert sums["dft_3d"] == fetch.sha256_file(tmp_path / "raw/dft_3d.zip")

    before = server.requests
    fetch.run("figshare", "figshare", None, mirror, tmp_path / "out2", tmp_path / "raw")
    assert server.requests == before, "a verified cached file must not be downloaded again"


def _download(server: FigshareLike, cache: Path, retries: int = 2) -> Path:
    return fetch.download_record(
        fetch.figshare_record("dft_3d"), cache, figshare_settings(mirror=server.url, retries=retries), 0.01
    )


def test_truncated_download_is_retried_and_never_left_behind(server, tmp_path):
    file_id = fetch.figshare_record("dft_3d").file_id
    server.mode[file_id] = ["truncate", "truncate", "truncate"]
    with pytest.raises(fetch.FetchError, match="after 3 attempts"):
        _download(server, tmp_path)
    assert not (tmp_path / "dft_3d.zip").exists()
    assert not list(tmp_path.glob(".*tmp")), "temporary files must be cleaned up"

    server.mode[file_id] = ["truncate", "error500"]  # two failures, then a good copy
    assert _download(server, tmp_path).exists()


def test_corrupt_zip_is_rejected(server, tmp_path):
    server.mode[fetch.figshare_record("dft_3d").file_id] = ["corrupt"]
    with pytest.raises(fetch.FetchError, match="corrupt|not a valid zip|CRC"):
        _download(server, tmp_path, retries=0)
    assert not (tmp_path / "dft_3d.zip").exists()


def test_tampered_cache_fails_the_checksum(server, tmp_path):
    path = _download(server, tmp_path)
    data = zipfile.ZipFile(path).read(fetch.figshare_record("dft_3d").member)
    path.write_bytes(figshare_zip(fetch.figshare_record("dft_3d").member, json.loads(data)[:2]))
    with pytest.raises(fetch.FetchError, match="does not match the recorded"):
        _download(server, tmp_path)


def test_offline_error_is_clear(tmp_path):
    with pytest.raises(fetch.FetchError, match="offline"):
        fetch.download_record(
            fetch.figshare_record("dft_3d"),
            tmp_path,
            figshare_settings(mirror="http://127.0.0.1:9/files", retries=0, timeout_s=2),
        )


def test_mirror_directory(tmp_path):
    rec = fetch.figshare_record("edos_pdos")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / rec.file_id).write_bytes(figshare_zip(rec.member, edos_records(["JVASP-1"])))
    path = fetch.download_record(rec, tmp_path / "raw", figshare_settings(mirror=str(mirror), retries=0))
    rows, rejects = fetch.figshare_dos_records(fetch.read_json_records(path, rec.member))
    assert [r["jid"] for r in rows] == ["JVASP-1"] and len(rejects) == 1


def _run_local(local_path: Path, out_dir: Path) -> dict[str, int]:
    """The fetch stage on local structures and the leaderboard DOS (figshare settings and cache unused)."""
    return fetch.run("local", "leaderboard", str(local_path), figshare_settings(), out_dir, out_dir / "raw")


def test_local_source_reads_shared_subset(shared_zip, tmp_path):
    counts = _run_local(shared_zip.parent, tmp_path)
    assert counts == {"structures": 2347, "spectra": 14243, "rejects": 0}


def test_cartesian_coordinates_are_converted():
    lattice = [[2.0, 0, 0], [0, 3.0, 0], [0, 0, 4.0]]
    rec = {
        "jid": "X",
        "atoms": {"lattice_mat": lattice, "coords": [[1.0, 1.5, 2.0]], "elements": ["Si"], "cartesian": True},
    }
    row = fetch.parse_structure_record(rec, "test")
    np.testing.assert_allclose(row["frac_coords"], [[0.5, 0.5, 0.5]])


# --------------------------------------------------------------------------------- unreadable local files ------
def _bad_files(good: list[dict]) -> dict[str, bytes]:
    """Files a local folder may hold by mistake: name -> content (seeded, so the same bytes every run)."""
    text = json.dumps(good).encode()
    rng = np.random.default_rng(12)
    return {
        "garbage.json": b"this is not JSON, it is a note somebody saved here\n",
        "binary.json": b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "empty.json": b"",
        "truncated.json": text[: len(text) // 2],
        "truncated.json.zip": figshare_zip("t.json", good)[:150],
        "object.json": json.dumps({"jid": "JVASP-1", "atoms": {}}).encode(),
    }


def test_unreadable_files_in_a_local_folder_are_rejects_and_the_rest_goes_through(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "leaderboard_dos_records", lambda: iter(()))  # structures only, fast
    good = demo_records()[:4]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.json").write_text(json.dumps(good[:2]))
    (folder / "z_good.json.zip").write_bytes(figshare_zip("z.json", good[2:]))
    bad = _bad_files(good)
    for name, content in bad.items():
        (folder / name).write_bytes(content)
    counts = _run_local(folder, tmp_path / "out")
    structures = pd.read_parquet(tmp_path / "out/structures.parquet")
    assert sorted(structures.jid) == sorted(r["jid"] for r in good)
    rejects = pd.read_parquet(tmp_path / "out/rejects.parquet").set_index("jid")
    assert counts["rejects"] == len(bad) and sorted(rejects.index) == sorted(bad)
    assert (rejects.stage == "fetch").all() and rejects.reason.str.startswith("unreadable file: ").all()
    expected = {
        "garbage.json": "not valid JSON (Expecting value: line 1 column 1",
        "binary.json": "not JSON text (binary or not UTF-8: 'utf-8' codec can't decode byte 0x89",
        "empty.json": "file is empty",
        "truncated.json": "not valid JSON (",
        "truncated.json.zip": "not a readable zip (File is not a zip file)",
        "object.json": "expected a JSON list of JARVIS records, got dict",
    }
    for name, message in expected.items():
        assert message in rejects.loc[name, "reason"], (name, rejects.loc[name, "reason"])


@pytest.mark.parametrize("name", sorted(_bad_files(demo_records()[:2])))
def test_a_single_unreadable_file_exits_non_zero_with_the_message(name, tmp_path, caplog):
    path = tmp_path / name
    path.write_bytes(_bad_files(demo_records()[:2])[name])
    argv = ["--set", "source=local", "--set", f"local_path={path}", "--out-dir", str(tmp_path / "out")]
    assert fetch_stage.main(argv) == 1
    assert str(path) in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "out/structures.parquet").exists()


def test_a_single_unreadable_file_gives_no_traceback_from_the_command_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "truncated.json"
    path.write_bytes(_bad_files(demo_records()[:2])["truncated.json"])
    argv = ["--set", "source=local", "--set", f"local_path={path}", "--out-dir", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "fetch", *argv],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert f"{path}: not valid JSON (" in proc.stderr and "truncated or not a JARVIS file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_folder_without_any_readable_file_is_an_error(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, content in list(_bad_files(demo_records()[:2]).items())[:2]:
        (folder / name).write_bytes(content)
    with pytest.raises(fetch.FetchError, match="no readable records file: binary.json: .*garbage.json: "):
        _run_local(folder, tmp_path / "out")


def test_broken_copy_of_a_duplicated_id_says_so_and_a_bad_optional_field_costs_nothing(tmp_path, monkeypatch):
    """A broken first copy of an id in one file and a good copy in another: the fetch reject names the copy and
    the good one reaches dos; a malformed elastic tensor drops the tensor, not the structure; records without an
    id are named by file and position."""
    monkeypatch.setattr(fetch, "leaderboard_dos_records", lambda: iter(()))
    good = demo_records()[:3]
    broken = {**good[0], "atoms": {**good[0]["atoms"], "coords": [[0, 0, float("nan")]] * 2}}
    ragged = {**good[1], "elastic_tensor": [[1.0, 2.0], [3.0]]}
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps([broken, ragged, {"atoms": good[2]["atoms"]}, "JVASP-7"]))
    (folder / "b.json").write_text(json.dumps([good[0], good[2]]))
    _run_local(folder, tmp_path / "out")
    structures = pd.read_parquet(tmp_path / "out/structures.parquet").set_index("jid")
    assert sorted(structures.index) == sorted(r["jid"] for r in good)
    assert structures.loc[good[1]["jid"], "elastic_tensor"] is None
    rejects = sorted(pd.read_parquet(tmp_path / "out/rejects.parquet").itertuples(index=False, name=None))
    assert rejects == [
        (
            good[0]["jid"],
            "fetch",
            "unparsable structure: non-finite lattice or coordinates (copy 1 of 2 with this jid)",
        ),
        ("a.json record #2", "fetch", "record has no 'jid'"),
        ("a.json record #3", "fetch", "record is a str, not an object"),
    ]
