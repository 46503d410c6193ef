"""bench/memory.py (run on a GPU in a later session) runs end to end here on its tiny shape, on CPU."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import REPO


def test_memory_bench_runs_on_the_tiny_shape(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_memory", REPO / "bench" / "memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--shape", "tiny", "--out", str(tmp_path / "memory_cpu.json")])
    result = json.loads((tmp_path / "memory_cpu.json").read_text())
    tiny = result["shapes"]["tiny"]
    assert tiny["status"] == "ok" and len(tiny["step_s"]) == 2 and all(s > 0 for s in tiny["step_s"])
    assert tiny["params"] == tiny["plan_params"]  # the model built from the pinned figures is the one the plan counts
    # r 32 on every linear layer of 2: q, o (64+64), k, v (64+32), gate, up, down (64+128)
    assert tiny["lora_params"] == 2 * 32 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128))
    assert tiny["plan"]["total"] > 0 and (tiny["batch"], tiny["tokens"]) == (2, 128)
    assert result["gpu"] == "cpu" and "mfu" not in tiny  # no GPU peak to compare with
