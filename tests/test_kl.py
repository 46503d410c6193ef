"""KL to the base model on the tiny model: zero while the LoRA update is zero, its gradient equals a finite
difference, and the training loop logs it per step."""

from __future__ import annotations

import torch

from grasp_bench import models
from grasp_bench.artifacts import read_jsonl
from grasp_bench.baselines.kl import kl_to_base
from grasp_bench.pipeline import Run, run
from tests.conftest import tiny_method


def _model_and_batch(cfg):
    r = Run(cfg)
    model = models.add_lora(models.load_base(cfg.model, r.cache), cfg.model, cfg.seed)
    enc = r.tokenizer(["Tell me about the ocean.", "How do magnets work? They pull."], return_tensors="pt",
                      padding=True)
    return model, enc["input_ids"], enc["attention_mask"]


def test_kl_is_zero_while_the_adapters_are_zero(tiny_cfg):
    model, ids, mask = _model_and_batch(tiny_cfg())
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.equal(p, torch.zeros_like(p)) for p in lora_b)  # peft's init: B = 0
    assert kl_to_base(model, ids, mask).item() == 0.0
    with torch.no_grad():
        lora_b[0].add_(0.1)
    assert kl_to_base(model, ids, mask).item() > 0.0


def test_kl_gradient_matches_a_finite_difference(tiny_cfg):
    model, ids, mask = _model_and_batch(tiny_cfg())
    model.double()
    gen = torch.Generator().manual_seed(0)
    params = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    kl_to_base(model, ids, mask).backward()
    eps = 1e-2  # the model is float64, but its rotary tables stay float32: smaller steps drown in their rounding
    for name in [n for n in params if "lora_B" in n][:2] + [n for n in params if "lora_A" in n][-2:]:
        p = params[name]
        idx = tuple(torch.randint(s, (1,), generator=gen).item() for s in p.shape)
        with torch.no_grad():
            p[idx] += eps
            up = kl_to_base(model, ids, mask).item()
            p[idx] -= 2 * eps
            down = kl_to_base(model, ids, mask).item()
            p[idx] += eps
        numeric = (up - down) / (2 * eps)
        assert abs(numeric) > 1e-6 and abs(p.grad[idx].item() - numeric) <= 1e-8 + 2e-3 * abs(numeric), name


def test_training_logs_the_term_every_step(shared_cfg):  # that it changes the weights: tests/test_method_contract.py
    cfg = shared_cfg(*tiny_method("kl"), "method.strength=1.0", "stages=[train]")
    run(cfg)
    kl = [row["kl/kl"] for row in read_jsonl(Run(cfg).dir / "train_log.jsonl")]
    assert len(kl) == cfg.train.max_steps
    assert kl[0] == 0.0 and all(k > 0 for k in kl[1:])  # the first batch sees B = 0; every later one does not


def test_the_grid_visits_upstreams_betas():
    """selective-generalization's kl_divergence sweeps: beta_kl 1, 10, 100, 1000 (experiments/large_sweep*)."""
    from tests.conftest import compose_config

    method = compose_config("method=kl").method
    assert sorted(round(s * method.beta_max, 9) for s in method.grid) == [1.0, 10.0, 100.0, 1000.0]
    assert method.strength * method.beta_max == 1000.0


def test_proxy_batches_take_each_chat_once_per_pass_and_resume_where_they_were():
    from grasp_bench.baselines.directions import ProxyBatches

    examples = [{"input_ids": [i + 1, i + 2], "labels": [-100, i + 2]} for i in range(10)]
    stream = ProxyBatches(examples, seed=3, stride=2, accum=2)
    drawn = [stream.next(2, step, "cpu")["input_ids"][:, 0].tolist() for step in range(5) for _ in range(2)]
    first_pass = sorted(x for batch in drawn[:5] for x in batch)
    assert first_pass == [i + 1 for i in range(10)]  # 5 micro-batches of 2: every chat once
    resumed = ProxyBatches(examples, seed=3, stride=2, accum=2)  # a fresh stream from step 3, as after a resume
    assert [resumed.next(2, step, "cpu")["input_ids"][:, 0].tolist() for step in (3, 4) for _ in range(2)] == drawn[6:]
    other = ProxyBatches(examples, seed=4, stride=2, accum=2)
    assert [other.next(2, 0, "cpu")["input_ids"][:, 0].tolist() for _ in range(2)] != drawn[:2]
