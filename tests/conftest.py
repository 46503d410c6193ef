"""Shared fixtures: the *real* config composed with small overrides, on a tiny random model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"

# A 3-step run of the tiny model on a slice of the toy task: seconds on CPU.
TINY = [
    "model=tiny", "sweep=none", "train.max_steps=3", "train.precision=fp32", "train.batch_size=4",
    "task.train.limit=24", "task.splits.in_domain.limit=6", "task.splits.unrelated.limit=6",
    "task.splits.factor_use.limit=6", "task.sampling.max_new_tokens=6", "generator.batch_size=8",
]


def compose_config(*overrides: str, runs: Path | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides) + ([f"paths.runs={runs}"] if runs else []))
    return cfg


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def tiny_cfg(runs: Path):
    """Factory: the composed config for a tiny run with extra overrides."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(*TINY, *overrides, runs=runs)

    return make
