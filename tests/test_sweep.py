"""`sweep=tradeoff`: each method over its own strength grid (the method_grid sweeper), seeds, then the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grasp_bench.sweep import expand_grids
from tests.conftest import REPO, TINY, compose_config


def _grid_of(job: list[str]) -> list[float]:
    return list(compose_config(*job).method.get("grid") or [])


def test_each_method_gets_its_own_grid():
    jobs = [["method=sft", "seed=0"], ["method=caft", "seed=0"], ["method=restore", "seed=1", "method.strength=0.3"]]
    caft_grid = compose_config("method=caft").method.grid
    assert expand_grids(jobs, _grid_of) == [
        ["method=sft", "seed=0"],  # no grid: once, at its configured strength
        *[["method=caft", "seed=0", f"method.strength={s}"] for s in caft_grid],
        ["method=restore", "seed=1", "method.strength=0.3"],  # an explicit strength wins
    ]
    assert len(caft_grid) > 1


def _sweep(runs: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "grasp_bench", "sweep=tradeoff", *TINY[:1], *TINY[2:],
                           f"paths.runs={runs}", *overrides], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)


def _strength_dirs(runs: Path) -> set[tuple[str, str, str]]:
    return {(p.parts[-3], p.parts[-2], p.parts[-1]) for p in runs.glob("toy_rude/tiny/*/strength=*/seed=*")}


def test_tradeoff_sweep_launches_every_method_over_its_grid(tmp_path):
    runs = tmp_path / "runs"
    out = _sweep(runs, "method=sft,caft,steer_eval", "seed=0,1", "stages=[]")  # no stages: the job list only
    assert out.returncode == 0, out.stderr[-2000:]
    expected = {("sft", "strength=0", f"seed={k}") for k in (0, 1)}
    for name in ("caft", "steer_eval"):
        grid = compose_config(f"method={name}").method.grid
        expected |= {(name, f"strength={s:g}", f"seed={k}") for s in grid for k in (0, 1)}
    assert _strength_dirs(runs) == expected
    assert f"Launching {len(expected)} jobs" in out.stdout + out.stderr


@pytest.mark.slow
def test_tradeoff_sweep_end_to_end_reuses_the_reference(tmp_path):
    runs = tmp_path / "runs"
    out = _sweep(runs, "method=sft,steer_eval,ablate_eval", "seed=0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "building the reference run" not in out.stderr  # sft ran first and is the reference
    table = pd.read_csv(runs / "results.csv")
    assert sorted(table["method"].unique()) == ["ablate_eval", "sft", "steer_eval"]
    assert len(table) == 1 + 2 * len(compose_config("method=steer_eval").method.grid)
    assert (runs / "plots").is_dir()
