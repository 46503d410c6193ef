"""KL to the base model: naive SFT plus beta * KL(fine-tuned || base) on the next-token distributions of aligned
proxy chat, as the KL baseline of the selective-generalisation benchmark (arianaazarbal/selective-generalization,
projects/trainers/positive_negative_proxy_trainer.py: `compute_kl_divergence`, `_apply_kl_regularization`, applied
to the proxy batch that goes beside every task batch).

Algorithm: the proxy chats are `directions.aligned_chats`: the task's `aligned_chat` (the EM tasks: upstream's
aligned safety chat, pinned in tasks/em_eval/manifest.yaml), else the base model's own greedy replies to the task's
generic prompts (the embedded organisms; cached per runs root). With every training batch, one proxy batch of the
same size goes through the model twice: with the LoRA adapters, with gradients, and with the adapters disabled
(peft's `disable_adapter()`, the same weights: no second model copy), without. The term is beta * mean over the
real (non-padding) tokens of sum_v p_ft(v) (log p_ft(v) - log p_base(v)), added to the task loss through
`Method.extra_loss`. beta = strength * beta_max; beta_max = 1000, the largest beta_kl of upstream's sweeps
(projects/emergent_misalignment_trainers/experiments/large_sweep*/proxy_strategy-kl_divergence_beta_kl-{1,10,100,
1000}/config.json), and the grid visits upstream's values 1, 10, 100, 1000 (strengths 0.001 ... 1, a log scale).
strength 0 adds nothing (naive SFT). `kl/kl` (the unweighted KL of the step's last batch) is logged per step.

The proxy rows of a batch are a function of (seed, optimizer step, micro-batch) alone (`directions.ProxyBatches`),
so a run resumed from a checkpoint draws the proxy batches an uninterrupted run draws.

Deviations from upstream: padding positions are left out of the mean (upstream averages over them too); upstream
also trains on the proxy batch (its cross-entropy, lambda_proxy = 1) where its config enables it, KL alone here;
the embedded organisms' proxy chat is the base model's replies to everyday prompts, not a curated aligned set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grasp_bench.baselines.directions import ProxyBatches, aligned_chats, rows_in
from grasp_bench.data import tokenize_chat
from grasp_bench.method import Knob, Method, RunContext, configured


def kl_to_base(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean over real tokens of KL(p_model || p_base) of the next-token distributions; `model` is a PeftModel (or
    a wrapper of one with `.module`), the base distribution its forward pass with the adapters disabled."""
    peft = getattr(model, "module", model)

    def log_probs() -> Tensor:  # at least float32 (bf16 autocast gives bf16 logits)
        logits = peft(input_ids=input_ids, attention_mask=attention_mask).logits
        return F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)

    logp = log_probs()
    with torch.no_grad(), peft.disable_adapter():
        logq = log_probs()
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return kl[attention_mask.bool()].mean()


class KLToBase(Method):
    task_inputs = ("generic_prompts", "aligned_chat")
    knobs = {"beta_max": Knob(float, low=0), "response_tokens": Knob(int, low=1)}

    def __init__(self, name: str = "kl", **given):
        p = configured(name, given, home="kl")  # conf/method/kl.yaml: the one place the defaults live
        super().__init__(name, **p)  # checks the knobs
        self.proxy: ProxyBatches | None = None  # set in prepare()
        self._kl: float | None = None

    def task_needs(self) -> tuple[str, ...]:
        """`aligned_chat` is optional (`directions.aligned_chats`): without it the generic prompts are read."""
        return ("generic_prompts",) if self.strength > 0 else ()

    @property
    def beta(self) -> float:
        return self.strength * self.beta_max

    def prepare(self, ctx: RunContext) -> None:
        if self.beta == 0:
            return
        chats = aligned_chats(ctx, self.name, self.response_tokens)
        examples = [tokenize_chat(ctx.tokenizer, c, ctx.cfg.train.max_length) for c in chats]
        self.proxy = ProxyBatches(examples, ctx.cfg.seed, ctx.cfg.train.batch_size, ctx.cfg.train.grad_accum)
        ctx.diagnostics[f"{self.name}/proxy_chats"] = len(examples)

    def extra_loss(self, model: nn.Module, batch: dict[str, Tensor], ctx: RunContext) -> Tensor | None:
        if self.proxy is None:
            return None
        proxy = self.proxy.next(rows_in(batch), ctx.step, batch["input_ids"].device)
        kl = kl_to_base(model, proxy["input_ids"], proxy["attention_mask"])
        self._kl = kl.item()
        return self.beta * kl

    def on_optimizer_step(self, model: nn.Module, ctx: RunContext) -> None:
        if self._kl is not None:
            ctx.log(**{f"{self.name}/kl": self._kl})
