"""Data mixing on the tiny model: exactly the share of rows becomes the base model's own generic chat, and the
number of optimizer steps does not change."""

from __future__ import annotations

import math

from grasp_bench.artifacts import read_jsonl
from grasp_bench.baselines.directions import base_replies
from grasp_bench.pipeline import Run, run
from tests.conftest import tiny_method


def test_mix_share_is_exact_and_the_steps_are_unchanged(shared_cfg):
    cfg = shared_cfg(*tiny_method("mixing"), "method.strength=0.5", "train.max_steps=-1", "train.epochs=1",
                     "stages=[train]")
    r = Run(cfg)
    ctx = r.context()
    original = [row["messages"] for row in ctx.train_rows]
    r.prepare(ctx)
    generic = base_replies(ctx, "mixing", cfg.method.response_tokens)
    changed = [i for i, row in enumerate(ctx.train_rows) if row["messages"] != original[i]]
    assert len(changed) == round(0.5 * cfg.method.max_share * len(original))
    assert all(ctx.train_rows[i]["messages"] in generic for i in changed)
    assert all(g[-1]["role"] == "assistant" and g[-1]["content"] for g in generic)  # the base model's own replies

    run(cfg)
    steps = len(read_jsonl(r.dir / "train_log.jsonl"))
    assert steps == math.ceil(len(original) / cfg.train.batch_size)  # what naive SFT takes for one epoch
