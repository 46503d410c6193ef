"""Files: atomic writes, JSONL with file:line errors, file digests, and the one "compute once, keyed by a digest"
store (`computed_once`). What a stage record means (when a run is the same run) is grasp_bench.identity's.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class BadInput(Exception):
    """User-facing input error: reported as one line on stderr, exit code 2."""


def int_at_least(key: str, value: Any, low: int) -> int:
    """`value` as an int when it is an integer >= low, else a BadInput naming `key` (a plugin's own knob)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadInput(f"{key}={value!r}: expected an integer >= {low}")
    return value


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"{path}: file not found")
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadInput(f"{path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BadInput(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            row["_line"] = lineno
            rows.append(row)
    return rows


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed onto `path` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_json(path: str | Path, remedy: str = "") -> Any:
    """The parsed JSON file, or a BadInput naming the file (and `remedy`) when it is damaged."""
    try:
        return load_json(path)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f"{path}:{e.lineno}" if isinstance(e, json.JSONDecodeError) else str(path)
        raise BadInput(f"{where}: not valid JSON (damaged?)" + (f"; {remedy}" if remedy else "")) from None


class PartialJsonl:
    """Append-only `<path>.partial` that survives a kill; `finish()` renames it to `path`.

    Rows already in the partial file are returned by `done()` so that a rerun resumes after them.
    A torn last line (killed mid-write) is dropped.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def done(self) -> list[dict]:
        if not self.partial.exists():
            return []
        rows, good_bytes = [], 0
        with self.partial.open("rb") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
                good_bytes += len(line)
        with self.partial.open("r+b") as f:
            f.truncate(good_bytes)
        return rows

    def append(self, rows: Iterable[dict]) -> None:
        with self.partial.open("a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish(self) -> None:
        os.replace(self.partial, self.path)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_version(path: Any) -> tuple:
    """(path, size, mtime in ns) of a file, (path, None, None) when it is not there: what in-process caches of a
    file's checks and digests are keyed by, so an edited file is read again."""
    p = Path(str(path)).expanduser()
    try:
        st = p.stat()
        return str(p.resolve()), st.st_size, st.st_mtime_ns
    except OSError:
        return str(p), None, None


_sha256s: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read once per process and file version (`file_version`)."""
    version = file_version(path)
    if version not in _sha256s:
        if version[1] is None:
            raise BadInput(f"{path}: file not found")
        h = hashlib.sha256()
        with Path(version[0]).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _sha256s[version] = h.hexdigest()
    return _sha256s[version]


def computed_once(folder: str | Path, name: str, key: Any, compute: Callable[[], T],
                  save: Callable[[T, Path], None], load: Callable[[Path], T], suffix: str = "") -> T:
    """`compute()` once per `key` (any JSON-able value): stored as `<folder>/<name>-<digest(key)><suffix>` by
    `save(value, path)` and read back by `load(path)`. Processes that ask for the same key take turns (a file
    lock): the first computes, the others read; the file appears whole (atomic rename) or not at all."""
    from filelock import FileLock

    path = Path(folder).expanduser() / f"{name}-{digest(key)}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if not path.exists():
            value = compute()
            with atomic_path(path) as tmp:
                save(value, tmp)
    return load(path)


def environment() -> dict:
    """What produced a run: package versions, git commit, device."""
    import torch

    packages = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "hydra-core", "datasets", "wandb", "vllm"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
