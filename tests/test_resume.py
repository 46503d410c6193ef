"""Killing a run at any moment and running the same command again completes it, with no stray files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from grasp_bench.artifacts import BadInput, read_jsonl, write_json
from grasp_bench.identity import Stage
from tests.conftest import REPO, TINY


def start(runs, *extra):
    return subprocess.Popen([sys.executable, "-m", "grasp_bench", *TINY, f"paths.runs={runs}", *extra],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("kill_when", ["training", "generating"])
def test_killed_run_resumes(tmp_path, kill_when):
    runs = tmp_path / "runs"
    extra = ["train.max_steps=40", "generator.batch_size=2", "task.splits.unrelated.limit=12"]
    d = runs / "toy_rude" / "tiny" / "sft" / "strength=0" / "seed=0"
    trigger = d / ("trainer" if kill_when == "training" else "generations.jsonl.partial")
    proc = start(runs, *extra)
    deadline = time.time() + 180
    while not trigger.exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "metrics" / "rule.json").exists()

    done = subprocess.run([sys.executable, "-m", "grasp_bench", *TINY, f"paths.runs={runs}", *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (d / "metrics" / "rule.json").exists()
    gens = read_jsonl(d / "generations.jsonl")
    assert len(gens) == len({(g["id"], g["sample"]) for g in gens}) == 6 + 12 + 6 + 6  # in_domain, unrelated, far, factor_use
    leftovers = [p for p in d.rglob("*") if p.name.endswith((".partial", ".tmp")) or ".tmp" in p.name]
    assert leftovers == []


def test_a_record_made_before_a_knob_existed_counts_while_the_knob_is_at_its_default(tmp_path):
    (tmp_path / "out").write_text("done")
    write_json(tmp_path / "stages" / "train.json", {"config": {"method": {"k": 1}, "seed": 0}})

    def stage(**method):
        return Stage(tmp_path, "train", tmp_path / "out", {"method": {"k": 1, **method}, "seed": 0},
                     method_defaults={"k": 1, "basis": "identified"})

    assert stage(basis="identified").is_done()
    with pytest.raises(BadInput, match=r"method.basis: 'identified' -> 'random'"):
        stage(basis="random").is_done()
    with pytest.raises(BadInput, match=r"method.extra: '<missing>' -> 1"):  # a key without a default
        stage(basis="identified", extra=1).is_done()


def test_a_batch_cut_off_by_a_kill_is_not_written_twice(tiny_cfg):
    """A kill between two flushes of one batch leaves part of it: the rerun generates the batch again and appends
    only the rows that were missing, the same rows an uninterrupted run writes."""
    from grasp_bench.pipeline import Run, run, run_dir

    cfg = tiny_cfg("method=base", "generator.batch_size=4", "stages=[generate]")
    run(cfg)
    out = run_dir(cfg) / "generations.jsonl"
    whole = out.read_text().splitlines()
    out.unlink()
    (run_dir(cfg) / "stages" / "generate.json").unlink()
    out.with_name(out.name + ".partial").write_text("\n".join(whole[:6]) + "\n")  # batch 0, half of batch 1
    Run(cfg).generate_stage()
    again = out.read_text().splitlines()
    assert len(again) == len(whole) == 24 and sorted(again) == sorted(whole)
