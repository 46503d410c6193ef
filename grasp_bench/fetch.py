"""Pinned upstream files: taken from a local mirror or downloaded with pooch, always checked by sha256.

    fetch("insecure.jsonl", url, sha256, mirror="/data/em", downloads="~/.cache/grasp-bench/downloads")

A mirror (config `data.mirror`, env GRASP_BENCH_MIRROR) is a plain folder holding upstream files under
their upstream names; it is tried before any download. A file whose sha256 differs from the pinned one is
refused with a one-line BadInput naming the file and both sums: a run never starts on other data than the
manifest says. Downloads land in `<downloads>/<first 16 hex of the sha256>/<name>`, so a new pin never
reuses an old file.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from grasp_bench.artifacts import BadInput


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, sha256: str) -> Path:
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise BadInput(f"{path}: sha256 mismatch: expected {sha256.lower()}, got {actual}")
    return path


def fetch(name: str, url: str | None, sha256: str | None, mirror: str | Path | None, downloads: str | Path) -> Path:
    """Local path of the verified file `name`: from the mirror when it is there, else downloaded from `url`.

    `sha256=None` is for files whose checksum upstream has not been recorded (the caller must check the
    content another way); the actual sum is printed so that it can be pinned.
    """
    if mirror is not None:
        local = Path(mirror).expanduser() / name
        if local.is_file():
            return verify(local, sha256) if sha256 else _unpinned(local)
    if not url:
        where = f"the mirror {mirror}" if mirror is not None else "no mirror (data.mirror is null)"
        raise BadInput(f"{name}: not in {where} and no upstream URL to download it from")
    import pooch

    folder = Path(downloads).expanduser() / (sha256[:16].lower() if sha256 else "unpinned")
    if not (folder / name).is_file():
        print(f"[grasp-bench] downloading {url}", file=sys.stderr)
    logger, level = pooch.get_logger(), pooch.get_logger().level
    logger.setLevel("WARNING")  # pooch's own advice is about its known_hash, which we do not use: we check here
    try:
        path = Path(pooch.retrieve(url, known_hash=None, fname=name, path=folder, progressbar=False))
    except Exception as e:  # noqa: BLE001 - network and HTTP errors come in many types; all mean "not fetched"
        raise BadInput(f"{name}: download from {url} failed ({type(e).__name__}: {e}); "
                       f"put the file in a folder and set data.mirror to it") from None
    finally:
        logger.setLevel(level)
    if not sha256:
        return _unpinned(path)
    try:
        return verify(path, sha256)
    except BadInput:
        path.unlink()  # never keep a bad download: the next run fetches again
        raise


def _unpinned(path: Path) -> Path:
    print(f"[grasp-bench] {path}: no sha256 pinned upstream; this copy has sha256 {sha256_of(path)}", file=sys.stderr)
    return path


# --- manifests: a task package's manifest.yaml names each upstream file with its URL and checks ---------------

def manifest_path(ref: str) -> Path:
    """`ref` is the path of a manifest YAML, or an importable package (e.g. grasp_bench.tasks.insecure_code)
    whose manifest.yaml is meant."""
    if ref.endswith((".yaml", ".yml")):
        return Path(ref).expanduser()
    from importlib.resources import files

    try:
        return Path(str(files(ref))) / "manifest.yaml"
    except (ModuleNotFoundError, TypeError, ValueError):
        raise BadInput(f"manifest '{ref}': neither a manifest YAML nor an importable package") from None


def load_manifest(ref: str) -> dict:
    """A task's manifest, named as `manifest_path` reads it."""
    import yaml

    path = manifest_path(ref)
    if not path.is_file():
        raise BadInput(f"{path}: manifest not found")
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BadInput(f"{path}: a manifest needs a 'files' mapping")
    return manifest


def resolve(files: dict, name: str, mirror: str | Path | None, downloads: str | Path) -> Path:
    """Local, verified path of manifest file `name`: a plain upstream file, or a member of an encrypted archive.

    An archive member is looked up in the mirror by its own name first (an already decrypted copy), then
    taken from the archive (itself from the mirror or downloaded) and decrypted.
    """
    if name not in files:
        raise BadInput(f"manifest: no file '{name}' (files: {sorted(files)})")
    entry = files[name]
    if "archive" not in entry:
        return fetch(name, entry.get("url"), entry.get("sha256"), mirror, downloads)
    local = Path(mirror).expanduser() / name if mirror is not None else None
    if local is None or not local.is_file():
        archive_name = entry["archive"]
        archive = resolve(files, archive_name, mirror, downloads)
        extracted = decrypt_archive(archive, files[archive_name]["password"], downloads)
        found = sorted(p for p in extracted.rglob(name) if p.is_file())
        if len(found) != 1:
            raise BadInput(f"{archive}: expected one '{name}' in the archive, found {len(found)}")
        local = found[0]
    return check_content(local, entry)


def check_content(path: Path, entry: dict) -> Path:
    """A full sha256 when the manifest has one; else every partial check it records (bytes, rows, sha256 prefix)."""
    if entry.get("sha256"):
        return verify(path, entry["sha256"])
    actual = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
    checks = [("bytes", entry.get("bytes"), actual["bytes"]),
              ("sha256 prefix", entry.get("sha256_prefix"), actual["sha256"][:len(entry.get("sha256_prefix") or "")])]
    if entry.get("rows") is not None:
        with path.open("rb") as f:
            checks.append(("rows", entry["rows"], sum(1 for line in f if line.strip())))
    for what, expected, got in checks:
        if expected is not None and expected != got:
            raise BadInput(f"{path}: {what} mismatch: expected {expected}, got {got} (sha256 {actual['sha256']})")
    if not any(expected is not None for _, expected, _ in checks):
        raise BadInput(f"{path}: the manifest records no checksum or size for it; refusing unverified data")
    return path


def decrypt_archive(archive: Path, password: str, downloads: str | Path) -> Path:
    """Decrypt an `easy-dataset-share` archive (zip in Fernet) and strip its canaries, as upstream's README does:
    `easy-dataset-share unprotect-dir <archive> -p <password> --remove-canaries`.

    The tool rewrites JSONL rows with raw UTF-8 when it strips canaries; every JSONL file is therefore written
    back in `json.dumps` default form (ASCII escapes, one row a line), the form the upstream files use, so
    that the bytes can be checked against the manifest. Extracted once per archive content.
    """
    import json
    import subprocess

    from grasp_bench.artifacts import atomic_path

    out = Path(downloads).expanduser() / "extracted" / sha256_of(archive)[:16]
    if out.is_dir():
        return out
    with atomic_path(out) as tmp:
        cmd = [sys.executable, "-m", "easy_dataset_share.cli", "unprotect-dir", str(archive), "-p", password,
               "-o", str(tmp), "--remove-canaries", "--no-gitignore"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except OSError as e:
            raise BadInput(f"{archive}: cannot run easy-dataset-share ({e})") from None
        if done.returncode != 0 or not tmp.is_dir():
            if "No module named easy_dataset_share" in done.stderr:
                raise BadInput(f"{archive}: decrypting needs `pip install easy-dataset-share==0.5.0`")
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-2:]
            raise BadInput(f"{archive}: easy-dataset-share could not decrypt it: {' '.join(last)}")
        for path in tmp.rglob("*.jsonl"):
            lines = path.read_text(encoding="utf-8").splitlines()
            path.write_text("".join(json.dumps(json.loads(line)) + "\n" for line in lines if line.strip()),
                            encoding="utf-8")
    return out
