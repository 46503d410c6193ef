"""Concurrent jobs that need the same naive SFT reference run, or are that run (`method=sft`): exactly one of them
trains it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from grasp_bench.artifacts import load_json
from tests.conftest import TINY, compose_config


def _build_reference(runs: str, counter: str, start, out, how: str = "reference") -> None:
    """In a fresh process: count every real training call, wait for the other process, then build the reference
    on demand (`how="reference"`, as a method that needs it does) or train it as a plain `method=sft` job."""
    import grasp_bench.train
    from grasp_bench.pipeline import ensure_reference, run, run_dir

    real_train = grasp_bench.train.train

    def counted_train(*args, **kwargs):
        with open(counter, "a") as f:
            f.write("trained\n")
        return real_train(*args, **kwargs)

    grasp_bench.train.train = counted_train  # a spy: the real training still runs
    cfg = compose_config(*TINY, "method=sft", runs=Path(runs))
    start.wait(timeout=120)
    if how == "reference":
        out.put(str(ensure_reference(cfg)))
    else:
        cfg.stages = ["train"]
        run(cfg)
        out.put(str(run_dir(cfg)))


@pytest.mark.parametrize("second", ["reference", "plain"])
def test_two_processes_train_the_reference_once(runs, tmp_path, second):
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as two launcher workers would be
    counter = tmp_path / "train_calls.txt"
    start, out = spawn.Barrier(2), spawn.Queue()
    workers = [spawn.Process(target=_build_reference, args=(str(runs), str(counter), start, out, how))
               for how in ("reference", second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    dirs = {out.get(timeout=5) for _ in workers}
    assert len(dirs) == 1
    ref = Path(dirs.pop())
    assert ref.parts[-3:] == ("sft", "strength=0", "seed=0")
    assert counter.read_text().splitlines() == ["trained"]
    assert load_json(ref / "stages" / "train.json")["steps"] == 3
    assert (ref / "model" / "adapter_config.json").exists()
