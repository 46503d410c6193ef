"""Every option of every config group composes with the real config; names agree; typos fail at once."""

from __future__ import annotations

import subprocess
import sys

import hydra.utils
import pytest
from omegaconf import OmegaConf

from grasp_bench import protocols
from tests.conftest import CONF, REPO, compose_config

GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir()}
OPTIONS = [(g, o) for g, opts in GROUPS.items() for o in opts if g != "hydra"]


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes(group, option, tmp_path):
    cfg = compose_config(f"{group}={option}", runs=tmp_path)
    if group in ("method", "generator", "judge", "logger", "model", "task"):
        node = cfg[group]
        assert node.name == option, f"conf/{group}/{option}.yaml must set name: {option}"
    if group == "method":
        method = hydra.utils.instantiate(node, _convert_="all")
        assert method.name == option
        assert all(0.0 <= s <= 1.0 for s in method.grid)
    if group in ("generator", "judge", "logger"):
        plugin = hydra.utils.instantiate(node)
        assert plugin.name == option
        assert isinstance(plugin, getattr(protocols, group.capitalize()))  # declares its capabilities
        if group == "judge":
            assert set(plugin.operational) <= set(node), "operational settings are settings of this judge"


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_every_config_file_opens_with_a_comment(path):
    assert path.read_text().startswith("#"), f"{path}: open with a comment naming what it is and how to run it"


def test_default_config_is_the_embedded_comparison():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert cfg.task.name == "toy_rude" and cfg.model.name == "smollm2_135m" and cfg.judge.name == "rule"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert set(OmegaConf.select(cfg, "hydra.sweeper.params.method").split(",")) == {"base", "sft", "grasp"}


def _cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grasp_bench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("override,needle", [
    ("train.lrr=0.1", "lrr"),
    ("method=sftt", "sftt"),
    ("model.lora.rr=4", "rr"),
    ("method=base,sfft", "sfft"),  # a typo in the second value of a sweep is caught before any job runs
])
def test_typo_fails_at_once_with_one_line_and_exit_2(override, needle, tmp_path):
    out = _cli("sweep=none", override, f"paths.runs={tmp_path}")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not (tmp_path / "toy_rude").exists()


def test_help_lists_the_config_groups():
    out = _cli("--help")
    assert out.returncode == 0
    for group in ("task", "model", "method", "generator", "judge", "logger", "sweep"):
        assert f"{group}:" in out.stdout or f"{group}/" in out.stdout, group
