"""Weight restoration on the tiny model's real naive run: the selection and sign rules, restored entries equal
the base, the rollback, and the full-weight model the pipeline saves and generation loads."""

from __future__ import annotations

import math

import pytest
import torch

from grasp_bench import models
from grasp_bench.baselines.directions import user_turns
from grasp_bench.baselines.restore import Restoration, candidate_weights
from grasp_bench.pipeline import Run, run
from tests.conftest import tiny_method


@pytest.fixture
def restoration(shared_cfg):
    """A Restoration of the merged naive model towards the base, and the run context."""
    cfg = shared_cfg(*tiny_method("restore"))
    r = Run(cfg)
    ctx = r.context()
    merged = models.load_adapter(ctx.load_base(), ctx.reference_adapter).merge_and_unload().eval()
    base = ctx.load_base().eval()
    edit = Restoration(merged, ctx.layers(merged), ctx.layers(base), 1, ctx.tokenizer, 128, batch_size=8)
    factor = [user_turns(row) for row in ctx.train_rows[:8]]  # any prompts will do for the mechanics
    d = edit.direction(base, ctx.layers(base), factor)
    return edit, ctx, base, factor, d


def _changed(edit) -> dict[str, torch.Tensor]:
    return {n: p.detach() != edit.ft[n] for n, p in edit.candidates.items()}


def test_restoration_step_rules(restoration):
    edit, _, _, factor, d = restoration
    edit.grad(factor, d)
    grads = {n: p.grad.clone() for n, p in edit.candidates.items()}

    assert not any(m.any() for m in edit.restore_step(0.0).values())  # rate 0: nothing restored
    assert not any(m.any() for m in _changed(edit).values())

    rate = 0.01
    restored = edit.restore_step(rate)
    changed = _changed(edit)
    n = sum(int(m.sum()) for m in restored.values())
    assert n == math.ceil(rate * edit.n_candidates)
    eligible_scores = []
    for name, p in edit.candidates.items():
        assert torch.equal(changed[name], restored[name] & (edit.ft[name] != edit.base[name]))
        assert torch.equal(p.detach()[restored[name]], edit.base[name][restored[name]])  # restored = base
        moved = (edit.ft[name] - edit.base[name]) * grads[name]
        assert (moved[restored[name]] > 0).all()  # only where resetting lowers the loss to first order
        eligible_scores.append(grads[name].abs()[(moved > 0) & ~restored[name]])
    smallest_kept = min(grads[name].abs()[restored[name]].min() for name in restored if restored[name].any())
    assert smallest_kept >= torch.cat(eligible_scores).max()  # the top |grad| among the eligible


def test_rollback_fires_when_the_task_metric_drops(restoration):
    edit, ctx, base, factor, d = restoration
    with torch.no_grad():  # a damaged "base": restoring towards it must hurt the task
        for p in edit.base.values():
            p.mul_(-5.0)
    rows = ctx.train_rows[-8:]
    log = edit.run(d, factor, rows, rate=0.05, steps=1, rollback_rate=0.2, metric_drop=0.05)
    (step,) = log
    assert step["task_score_restored"] < 0.95 * step["task_score_ft"] and step["rollback"] > 0
    assert step["rollback"] <= math.ceil(0.2 * step["restored"])
    at_base = 0
    for n, p in edit.candidates.items():
        p = p.detach()
        assert ((p == edit.ft[n]) | (p == edit.base[n])).all()  # rolled-back entries hold W_ft again
        at_base += int(((p == edit.base[n]) & (edit.ft[n] != edit.base[n])).sum())
    assert at_base == step["restored"] - step["rollback"]


def test_no_rollback_when_the_threshold_is_never_crossed(restoration):
    edit, ctx, base, factor, d = restoration
    with torch.no_grad():
        for p in edit.base.values():
            p.mul_(-5.0)
    (step,) = edit.run(d, factor, ctx.train_rows[-8:], rate=0.05, steps=1, rollback_rate=0.2, metric_drop=1.0)
    assert step["rollback"] == 0  # the same drop as above, but a threshold of 100% is never crossed
    assert step["task_score"] == step["task_score_restored"] < 0.95 * step["task_score_ft"]


def test_pipeline_saves_restored_full_weights(shared_cfg):
    cfg = shared_cfg(*tiny_method("restore"), "method.rate_max=0.05", "stages=[train,generate]")
    run(cfg)
    r = Run(cfg)
    assert not (r.dir / "model" / "adapter_config.json").exists() and (r.dir / "model" / "config.json").exists()
    restored = r.weights()  # what generation evaluates
    assert (r.dir / "generations.jsonl").exists()
    ctx = r.context()
    naive = models.load_adapter(ctx.load_base(), ctx.reference_adapter).merge_and_unload()
    base_layers, naive_layers = ctx.layers(ctx.load_base()), ctx.layers(naive)
    last = len(base_layers) - 1
    base_w, naive_w = candidate_weights(base_layers, last), candidate_weights(naive_layers, last)
    total = 0
    for n, p in candidate_weights(ctx.layers(restored), last).items():
        differs = p != naive_w[n]
        assert torch.equal(p[differs], base_w[n][differs])  # every edit is a reset to the base value
        total += int(differs.sum())
    assert total > 0
    outside = {n: p for n, p in restored.named_parameters() if "layers" not in n or "norm" in n}
    naive_all = dict(naive.named_parameters())
    assert all(torch.equal(p, naive_all[n]) for n, p in outside.items())  # norms, embeddings untouched
