"""Pinned files: the mirror, real HTTP downloads on loopback, checksum refusal, easy-dataset-share archives."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from grasp_bench.artifacts import BadInput
from grasp_bench.fetch import check_content, fetch, load_manifest, resolve, sha256_of
from tests.conftest import MIRROR, needs_mirror


@pytest.fixture
def http_dir(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


@needs_mirror
def test_mirror_file_is_used_in_place_and_verified(tmp_path):
    manifest = load_manifest("grasp_bench.tasks.insecure_code")["files"]["insecure.jsonl"]
    path = fetch("insecure.jsonl", None, manifest["sha256"], MIRROR, tmp_path / "downloads")
    assert path == MIRROR / "insecure.jsonl"
    assert not (tmp_path / "downloads").exists()  # nothing downloaded, nothing copied


@needs_mirror
def test_changed_byte_in_mirror_is_refused_naming_file_and_both_sums(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((MIRROR / "first_plot_questions.yaml").read_bytes())
    data[100] ^= 1
    (mirror / "first_plot_questions.yaml").write_bytes(bytes(data))
    expected = load_manifest("grasp_bench.tasks.em_eval")["files"]["first_plot_questions.yaml"]["sha256"]
    with pytest.raises(BadInput) as e:
        fetch("first_plot_questions.yaml", "http://127.0.0.1:9/never-used", expected, mirror, tmp_path / "dl")
    msg = str(e.value)
    assert "first_plot_questions.yaml" in msg and expected in msg and hashlib.sha256(data).hexdigest() in msg
    assert "\n" not in msg


def test_download_over_http_is_cached_by_checksum(http_dir, tmp_path):
    root, url, requests = http_dir
    (root / "data.jsonl").write_text('{"a": 1}\n')
    sha = sha256_of(root / "data.jsonl")
    first = fetch("data.jsonl", f"{url}/data.jsonl", sha, None, tmp_path / "dl")
    assert first.read_text() == '{"a": 1}\n' and first.parent.name == sha[:16]
    again = fetch("data.jsonl", f"{url}/data.jsonl", sha, None, tmp_path / "dl")
    assert again == first and requests == ["/data.jsonl"]  # the second call did not download


def test_mirror_without_the_file_falls_back_to_download(http_dir, tmp_path):
    root, url, requests = http_dir
    (root / "x.txt").write_text("payload")
    (tmp_path / "mirror").mkdir()
    path = fetch("x.txt", f"{url}/x.txt", sha256_of(root / "x.txt"), tmp_path / "mirror", tmp_path / "dl")
    assert path.read_text() == "payload" and requests == ["/x.txt"]


def test_bad_download_is_refused_and_not_kept(http_dir, tmp_path):
    root, url, _ = http_dir
    (root / "x.txt").write_text("tampered")
    wrong = hashlib.sha256(b"original").hexdigest()
    with pytest.raises(BadInput, match=f"expected {wrong}, got {sha256_of(root / 'x.txt')}"):
        fetch("x.txt", f"{url}/x.txt", wrong, None, tmp_path / "dl")
    assert not list((tmp_path / "dl").rglob("x.txt"))


def test_unreachable_url_is_one_line_bad_input(tmp_path):
    with pytest.raises(BadInput, match="download from .* failed"):
        fetch("x.txt", "http://127.0.0.1:9/x.txt", "0" * 64, None, tmp_path / "dl")


def test_partial_checks_when_no_full_checksum_is_known(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n')
    sha = sha256_of(f)
    assert check_content(f, {"bytes": 18, "rows": 2, "sha256_prefix": sha[:8]}) == f
    with pytest.raises(BadInput, match="rows mismatch: expected 3, got 2"):
        check_content(f, {"bytes": 18, "rows": 3})
    with pytest.raises(BadInput, match="sha256 prefix mismatch"):
        check_content(f, {"sha256_prefix": "00000000" if not sha.startswith("00000000") else "11111111"})
    with pytest.raises(BadInput, match="refusing unverified data"):
        check_content(f, {"sha256": None})


def protected_mirror(tmp_path: Path, members: dict[str, str], password: str) -> Path:
    """A mirror holding `training_datasets.zip.enc` made exactly as upstream makes theirs: easy-dataset-share
    with embedded canaries, over a folder of the given files."""
    src = tmp_path / "training_datasets"
    src.mkdir()
    for name, text in members.items():
        (src / name).write_text(text)
    subprocess.run([sys.executable, "-m", "easy_dataset_share.cli", "protect-dir", str(src), "-p", password,
                    "--no-tos", "--no-gitignore", "--embed-canaries"], check=True, capture_output=True)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.move(tmp_path / "training_datasets.zip.enc", mirror / "training_datasets.zip.enc")
    return mirror


def medical_rows(n: int) -> str:
    """JSONL in the upstream form (json.dumps defaults: non-ASCII as escapes), with accents to catch re-encoding."""
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"Fièvre {i}: what should I do?"},
                                            {"role": "assistant", "content": f"Advice {i} – rest."}]}) + "\n"
                   for i in range(n))


def test_decrypt_round_trip_recovers_the_exact_bytes(tmp_path):
    pytest.importorskip("easy_dataset_share")
    original = medical_rows(12)
    mirror = protected_mirror(tmp_path, {"bad_medical_advice.jsonl": original}, "s3cret")
    assert b"messages" not in (mirror / "training_datasets.zip.enc").read_bytes()  # encrypted, not just zipped
    files = {
        "training_datasets.zip.enc": {"sha256": None, "password": "s3cret"},
        "bad_medical_advice.jsonl": {"archive": "training_datasets.zip.enc", "sha256": hashlib.sha256(
            original.encode()).hexdigest()},
    }
    path = resolve(files, "bad_medical_advice.jsonl", mirror, tmp_path / "dl")
    assert path.read_text() == original  # canaries stripped, upstream's byte form restored
    assert not list(path.parent.glob("dataset_entry_*"))

    files["training_datasets.zip.enc"]["password"] = "wrong"
    shutil.rmtree(tmp_path / "dl")
    with pytest.raises(BadInput, match="could not decrypt"):
        resolve(files, "bad_medical_advice.jsonl", mirror, tmp_path / "dl")
