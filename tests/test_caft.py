"""CAFT: the selection rule, and the training-time ablation on the tiny model with directions found from
the real naive run (base vs naive SFT activations on the toy task's generic prompts)."""

from __future__ import annotations

import hydra.utils
import torch

from grasp_bench import hooks, models
from grasp_bench.baselines.caft import pca_directions, rank
from grasp_bench.baselines.directions import capture
from grasp_bench.pipeline import Run
from tests.conftest import tiny_method


def test_selection_keeps_the_consistent_shift_not_the_largest_variance():
    gen = torch.Generator().manual_seed(0)
    d, n = 16, 400
    u, w = torch.eye(d)[3], torch.eye(d)[7]
    shift = 3.0 + torch.randn(n, 1, generator=gen)  # fine-tuning moves every token along u, by varying amounts
    topic = 2.0 * torch.randn(n, 1, generator=gen)  # large variance along w, no consistent sign
    diffs = shift * u + topic * w + 0.05 * torch.randn(n, d, generator=gen)
    components, scores = pca_directions(diffs, n_components=5)

    assert torch.allclose(components.T @ components, torch.eye(5), atol=1e-5)
    assert abs(components[:, 0] @ w) > 0.99  # the top-variance PC is the topic ...
    best = components[:, rank(scores, 1)[0]]
    assert abs(best @ u) > 0.99  # ... but the rule keeps the shift


def _prepared(cfg):
    run = Run(cfg)
    ctx = run.context()
    run.method.prepare(ctx)
    torch.manual_seed(0)
    model = models.add_lora(ctx.load_base(), cfg.model, cfg.seed)
    return run.method, ctx, model


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_training_ablation_leaves_no_component_along_q(shared_cfg):
    cfg = shared_cfg(*tiny_method("caft"), "method.strength=0.5")
    method, ctx, model = _prepared(cfg)
    assert sorted(method.bases) == [0, 1] and all(Q.shape == (64, 2) for Q in method.bases.values())  # 0.5 x 4
    layers = ctx.layers(model)
    ids = ctx.tokenizer("How do trains work? Slowly, you idiot.", return_tensors="pt")["input_ids"]
    before = _hook_count(model)
    with method.training(model, ctx), capture(layers, sorted(method.bases)) as seen:  # capture runs after the ablation
        assert _hook_count(model) == before + 2 * len(method.bases)
        model(input_ids=ids).logits.sum().backward()
    assert _hook_count(model) == before
    for i, Q in method.bases.items():
        h = seen[i][0]
        assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1]), atol=1e-5)
        assert (h @ Q).abs().max() < 1e-5 * h.abs().max()
        once = hooks.project(h, Q)
        assert torch.allclose(hooks.project(once, Q), once, atol=1e-6)  # idempotent
    with capture(layers, [0]) as plain:  # after the context: the model is untouched
        model(input_ids=ids)
    assert (plain[0][0] @ method.bases[0]).abs().max() > 1e-3


def test_grasp_directions_come_from_the_ablated_blocks_writers(shared_cfg):
    from grasp_bench.baselines.grasp import identify

    cfg = shared_cfg(*tiny_method("caft"), "method.directions=grasp", "method.n_select=3", "method.strength=0.6",
                     "method.layers=[1]")
    run = Run(cfg)
    ctx = run.context()
    method = hydra.utils.instantiate(cfg.method, _convert_="all")
    method.prepare(ctx)
    ours = identify(ctx.reference_adapter, k=3, pooling="pooled", side="writers", layers=[1],
                    layers_path=cfg.model.layers_path).Q
    every_block = identify(ctx.reference_adapter, k=3, pooling="pooled").Q
    assert sorted(method.bases) == [1]
    assert torch.allclose(method.bases[1], ours[:, :2].float())  # ceil(0.6 x 3) = 2, eigenvalue order
    assert not torch.allclose(method.bases[1].abs(), every_block[:, :2].float().abs(), atol=1e-3)
