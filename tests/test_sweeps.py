"""Sweeps are Hydra multiruns: their configs, launchers, a failed job amid good ones, and resuming a sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra.utils
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from grasp_bench.artifacts import load_json
from grasp_bench.method import Untrained
from tests.conftest import CONF, REPO, TINY

SWEEP_TINY = [o for o in TINY if o != "sweep=none"]


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def grasp_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grasp_bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})


class FailsAtEval(Untrained):
    """A job that passes validation and crashes while it runs."""

    def generating(self, model, ctx):
        raise RuntimeError("broken on purpose")


def stamps(d: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file() and p.name not in ("config.yaml", "env.json")}


def test_sweep_configs():
    smoke = compose_hydra("sweep=smoke")
    assert smoke.hydra.mode.name == "MULTIRUN" and smoke.model.name == "tiny" and smoke.train.max_steps == 3
    assert dict(smoke.hydra.sweeper.params) == {"method": "glob(*)", "method.strength": "0,1"}
    baseline = compose_hydra("sweep=baseline")
    assert dict(baseline.hydra.sweeper.params) == {"method": "base,sft", "seed": "0,1,2"}
    assert baseline.model.name == "smollm2_135m"  # the sweep names no model: the command line chooses


def test_launcher_configs_compose_and_instantiate():
    slurm = compose_hydra("sweep=baseline", "hydra/launcher=slurm", "hydra.launcher.partition=gpu").hydra.launcher
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (slurm.gpus_per_node, slurm.tasks_per_node, slurm.partition, slurm.timeout_min) == (1, 1, "gpu", 720)
    plain = compose_hydra("hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=4").hydra.launcher
    assert plain._target_ == slurm._target_ and plain.gpus_per_node == 4
    joblib = compose_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2
    for launcher in (slurm, plain, joblib):
        assert type(hydra.utils.instantiate(launcher)).__name__ in ("SlurmLauncher", "JoblibLauncher")


def test_failed_job_keeps_the_others_and_a_rerun_resumes(tmp_path):
    runs = tmp_path / "runs"
    # two jobs crash while they run; the two others must still finish
    first = grasp_bench("-m", *SWEEP_TINY, "method=base", "seed=0,1",
                        "method._target_=tests.test_sweeps.FailsAtEval,grasp_bench.method.Untrained",
                        f"paths.runs={runs}", cwd=tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "error: 2 job(s) failed, the others' results are kept" in first.stderr
    errors = sorted(runs.glob(".hydra/multirun_*/*/job_error.txt"))
    assert len(errors) == 2 and all("broken on purpose" in e.read_text() for e in errors)
    results = pd.read_csv(runs / "results.csv")  # the report ran at the end of the sweep anyway
    assert sorted(results["seed"]) == [0, 1] and set(results["strength"]) == {0.0}

    seed0, seed1 = (runs / "toy_rude" / "tiny" / "base" / "strength=0" / f"seed={k}" for k in (0, 1))
    before0, before1 = stamps(seed0), stamps(seed1)
    (seed1 / "metrics" / "rule.json").unlink()  # as if the sweep had been killed before this stage
    rerun = grasp_bench("-m", *SWEEP_TINY, "method=base", "seed=0,1", f"paths.runs={runs}", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert stamps(seed0) == before0  # nothing recomputed
    after1 = stamps(seed1)
    changed = {p.relative_to(seed1).as_posix() for p in after1 if after1[p] != before1.get(p)}
    assert changed == {"metrics/rule.json", "stages/metrics.json"}
    assert load_json(seed1 / "metrics" / "rule.json")["seed"] == 1


def test_joblib_launcher_runs_jobs_in_two_workers(tmp_path):
    runs = tmp_path / "runs"
    done = grasp_bench("-m", *SWEEP_TINY, "method=base", "seed=0,1", "hydra/launcher=joblib",
                       "hydra.launcher.n_jobs=2", f"paths.runs={runs}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    for k in (0, 1):
        assert load_json(runs / "toy_rude" / "tiny" / "base" / "strength=0" / f"seed={k}" / "metrics" / "rule.json")
    assert sorted(pd.read_csv(runs / "results.csv")["seed"]) == [0, 1]


@pytest.mark.slow
def test_smoke_sweep_runs_every_method_config(tmp_path):
    runs = tmp_path / "runs"
    done = grasp_bench("sweep=smoke", f"paths.runs={runs}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    methods = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
    results = pd.read_csv(runs / "results.csv")
    assert sorted(zip(results["method"], results["strength"], strict=True)) == [
        (m, s) for m in methods for s in (0.0, 1.0)]


def test_a_damaged_metrics_file_stops_the_sweeps_report_in_one_line(tmp_path):
    runs = tmp_path / "runs"
    damaged = runs / "toy_rude" / "tiny" / "sft" / "strength=0" / "seed=9" / "metrics" / "rule.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"task": ')  # e.g. a disk filled up while it was written
    out = grasp_bench("-m", *SWEEP_TINY, "method=base", "seed=0,1", f"paths.runs={runs}", cwd=tmp_path)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert errors == [f"error: the report: {damaged}:1: not valid JSON (damaged?); delete it or rerun with "
                      "'force=[metrics]'"]
    assert damaged.read_text() == '{"task": ' and not (runs / "results.csv").exists()
