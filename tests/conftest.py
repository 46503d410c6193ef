"""Shared fixtures: the *real* config composed with small overrides, on a tiny random model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grasp_bench.contract import TINY_RUN, WORK_KNOBS

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
# The emergent-misalignment data mirror: $GRASP_BENCH_MIRROR, else ../shared/data/emergent_misalignment beside the repo.
MIRROR = Path(os.environ.get("GRASP_BENCH_MIRROR") or REPO.parent / "shared" / "data" / "emergent_misalignment")
needs_mirror = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"the EM data mirror is not at {MIRROR}")
# The tiny random models built in code: SmolLM2's architecture (Llama) and the seed papers' (Qwen2).
TINY_MODELS = ["tiny", "tiny_qwen2"]

# A 3-step run of the tiny model on a slice of the toy task: seconds on CPU (the method contract's, shared).
TINY = TINY_RUN


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


# Method knobs that only set how much work a method does: shrunk in tests, where present in the method's config.
TINY_METHOD_KNOBS = WORK_KNOBS


def tiny_method(name: str) -> list[str]:
    """`method=<name>` plus the shrunk work-size knobs that conf/method/<name>.yaml has."""
    knobs = OmegaConf.load(CONF / "method" / f"{name}.yaml")
    return [f"method={name}"] + [f"method.{k}={v}" for k, v in TINY_METHOD_KNOBS.items() if k in knobs]


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory) -> Path:
    """One runs root for the whole session: the naive tiny run (every baseline's reference) trains once."""
    return tmp_path_factory.mktemp("shared") / "runs"


@pytest.fixture
def shared_cfg(shared_runs: Path):
    """Factory: like `tiny_cfg`, in the session's shared runs root."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(*TINY, *overrides, runs=shared_runs)

    return make


@pytest.fixture
def show(capsys):
    """Print past pytest's capture: for the figures a test measures (the vllm tier's agreement, unscored rows)."""

    def write(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}")

    return write
