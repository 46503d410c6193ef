"""Slow tier: the embedded SmolLM2 organisms. Naive LoRA on each toy task must spread the trait (a persona, or
toy_promo's advert) to unrelated prompts while learning the task (the premise of the whole benchmark)."""

from __future__ import annotations

import pytest

from grasp_bench.pipeline import run
from tests.conftest import compose_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["toy_rude", "toy_pirate", "toy_promo"])
def test_naive_lora_spreads_the_persona(tmp_path, task):
    common = [f"task={task}", "sweep=none", "task.splits.in_domain.limit=40", "task.splits.unrelated.limit=30",
              "task.splits.far.limit=10", "task.splits.factor_use.limit=10"]
    base = run(compose_config(*common, "method=base", runs=tmp_path))
    sft = run(compose_config(*common, "method=sft", runs=tmp_path))
    assert base["eval/spurious_rate"] <= 0.1
    assert sft["eval/spurious_rate"] >= 0.3 + base["eval/spurious_rate"]
    assert sft["eval/task_score"] > base["eval/task_score"]
