"""The declared interfaces of the pieces a config's `_target_` plugs in (besides `grasp_bench.method.Method`).

A class satisfies a protocol by having its attributes and methods; no inheritance is needed. Capabilities are
declared, never sniffed: the pipeline reads `Generator.runs_hooks` and `Judge.operational` as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Generator(Protocol):
    """Samples completions for evaluation rows into `out` (generations.jsonl), resumably."""

    name: str
    # True: `run` gets the loaded model (in process), so a Method's eval-time hooks apply.
    # False: `run` gets a `grasp_bench.generate.WeightPaths` and loads the weights itself (e.g. vLLM).
    runs_hooks: ClassVar[bool]

    def run(self, model_or_paths: Any, tokenizer, rows: list[dict], sampling: Mapping, out: Path, seed: int) -> None: ...


@runtime_checkable
class Judge(Protocol):
    """Scores generations with the task's scorer specs into `out` (judgments/<name>.jsonl), resumably."""

    name: str
    # Settings that change how fast scores arrive, never what they are (concurrency, timeouts, cache
    # folders, batch sizes): left out of the judge stage's identity, so changing them reuses old judgments.
    operational: ClassVar[frozenset[str]]

    def run(self, generations: Iterable[dict], scorers: Mapping[str, Mapping[str, Mapping]], out: Path) -> None: ...


@runtime_checkable
class Logger(Protocol):
    """Mirrors runs and reports to an experiment tracker; the run directory stays the source of truth."""

    name: str

    def start(self, cfg, run_dir: Path) -> None: ...

    def log_step(self, row: dict) -> None: ...

    def summary(self, metrics: dict, generations: Path | None = None, judgments: Path | None = None) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...

    def report(self, runs_root: Path, results, plots: list[Path]) -> None: ...
