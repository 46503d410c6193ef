"""Experiment trackers. The run directory is the source of truth; a tracker only mirrors it.

`logger=none` (default) writes nothing beyond the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra.utils


class NullLogger:
    name = "none"

    def __init__(self, name: str = "none", **_: Any):
        self.name = name

    def start(self, cfg, run_dir: Path) -> None: ...

    def log_step(self, row: dict) -> None: ...

    def summary(self, metrics: dict, generations: Path | None = None, judgments: Path | None = None) -> None: ...

    def finish(self) -> None: ...


def make_logger(logger_cfg, cfg=None, run_dir: Path | None = None):
    logger = NullLogger() if logger_cfg is None else hydra.utils.instantiate(logger_cfg)
    if cfg is not None:
        logger.start(cfg, run_dir)
    return logger
