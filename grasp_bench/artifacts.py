"""Files of a run directory: atomic writes, JSONL with file:line errors, and stage records.

A stage is done when its output exists *and* `stages/<stage>.json` records the config slice that made it.
The output is renamed into place first and the record written second, so a kill between the two only
costs a recomputation, never a half-written file taken for a finished one.
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
from typing import Any


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


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key, "<missing>") != new.get(key, "<missing>"):
                return _first_difference(old.get(key, "<missing>"), new.get(key, "<missing>"), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')}: {old!r} -> {new!r}"


def _with_defaults(old: Any, defaults: Any) -> Any:
    """`old` plus the keys of `defaults` it lacks (recursively)."""
    if not (isinstance(old, dict) and isinstance(defaults, dict)):
        return old
    return {**defaults, **{k: _with_defaults(v, defaults.get(k)) for k, v in old.items()}}


class Stage:
    """One pipeline stage of one run: its output path and the config slice that makes it.

    `defaults`: values a record made before a key existed is read with. A knob added later defaults to the
    old behaviour, so runs recorded without it stay valid while it is at its default. `identity`: what both
    slices are compared by (default: all of it); the record always keeps the full slice."""

    def __init__(self, run_dir: Path, name: str, output: Path, config_slice: dict, force: bool = False,
                 defaults: dict | None = None, identity: Callable[[dict], dict] | None = None,
                 later: tuple[str, ...] = ()):
        self.name, self.output, self.slice, self.force = name, output, config_slice, force
        self.defaults = defaults or {}
        self.identity = identity or (lambda s: s)
        self.record = run_dir / "stages" / f"{name}.json"
        self.later = [run_dir / "stages" / f"{s}.json" for s in later]  # the records of the stages that read this one

    def is_done(self) -> bool:
        """True when finished with this config; raises when finished with another one."""
        if self.force or not (self.output.exists() and self.record.exists()):
            return False
        record = check_json(self.record, f"delete it or rerun with 'force=[{self.name}]'")
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise BadInput(f"{self.record}: not a stage record; delete it or rerun with 'force=[{self.name}]'")
        old = _with_defaults(record["config"], json.loads(json.dumps(self.defaults, default=str)))
        old, new = self.identity(old), self.identity(json.loads(json.dumps(self.slice, default=str)))
        if old != new:
            raise BadInput(
                f"{self.record.parent.parent}: stage '{self.name}' was made with another config "
                f"({_first_difference(old, new)}); use another paths.runs, delete the run directory, "
                f"or rerun with 'force=[{self.name}]'"
            )
        return True

    def mark_done(self, **info: Any) -> None:
        """Records the stage as made with its config slice. The stages after it were made from its old output (a
        forced or retried stage): their records go, so that they are made again."""
        for record in self.later:
            record.unlink(missing_ok=True)
        write_json(self.record, {"config": self.slice, "digest": digest(self.slice), **info})


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
