"""KL to the base model: naive SFT plus beta * KL(fine-tuned || base) on the next-token distributions of
generic chat, as the KL baseline of the selective-generalisation benchmark (arianaazarbal/selective-generalization,
projects/trainers/positive_negative_proxy_trainer.py: `compute_kl_divergence`, `_apply_kl_regularization`).

Algorithm: the generic chats are the task's `generic_prompts` with the base model's own greedy replies
(`directions.base_replies`, cached per runs root). With every training batch, one batch of generic chat
of the same size goes through the model twice: with the LoRA adapters, with
gradients, and with the adapters disabled (peft's `disable_adapter()`, the same weights: no second model copy),
without. The term is beta * mean over the real (non-padding) tokens of sum_v p_ft(v) (log p_ft(v) - log p_base(v)),
added to the task loss through `Method.extra_loss`. beta = strength * beta_max (default 10: upstream's sweeps
reach beta_kl = 10); strength 0 adds nothing (naive SFT). `kl/kl` (the unweighted KL of the step's last batch)
is logged per step.

The generic rows of a batch are a function of (seed, optimizer step, micro-batch) alone: positions of one stream
of seeded shuffles of the generic chats (each chat once per pass over them), `train.batch_size` positions per
micro-batch. So a run resumed from a checkpoint draws the generic batches an uninterrupted run draws.

Deviations from upstream: padding positions are left out of the mean (upstream averages over them too); the
generic batch is sampled from the task's generic prompts, not from a proxy dataset of the task's domain.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grasp_bench.baselines.directions import base_replies
from grasp_bench.data import ChatCollator, tokenize_chat
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
    task_inputs = ("generic_prompts",)
    knobs = {"beta_max": Knob(float, low=0), "response_tokens": Knob(int, low=1)}

    def __init__(self, name: str = "kl", **given):
        p = configured(name, given, home="kl")  # conf/method/kl.yaml: the one place the defaults live
        super().__init__(name, **p)  # checks the knobs
        self.beta_max, self.response_tokens = p["beta_max"], p["response_tokens"]
        self.examples: list[dict] = []
        self._seed, self._stride, self._accum = 0, 1, 1  # set in prepare()
        self._passes: dict[int, list[int]] = {}  # pass over the generic chats -> its shuffled order
        self._micro = (-1, 0)  # (optimizer step, micro-batches seen in it)
        self._kl: float | None = None

    @property
    def beta(self) -> float:
        return self.strength * self.beta_max

    def prepare(self, ctx: RunContext) -> None:
        if self.beta == 0:
            return
        chats = base_replies(ctx, self.name, self.response_tokens)
        self.examples = [tokenize_chat(ctx.tokenizer, c, ctx.cfg.train.max_length) for c in chats]
        self._seed, self._stride, self._accum = ctx.cfg.seed, ctx.cfg.train.batch_size, ctx.cfg.train.grad_accum
        self._passes, self._micro = {}, (-1, 0)

    def _at(self, position: int) -> int:
        """The generic chat at `position` of the stream: pass p is a shuffle seeded by (seed, p)."""
        p, i = divmod(position, len(self.examples))
        if p not in self._passes:
            self._passes[p] = random.Random(self._seed * 1_000_003 + p).sample(range(len(self.examples)),
                                                                            len(self.examples))
        return self._passes[p][i]

    def next_batch(self, size: int, step: int, device) -> dict[str, Tensor]:
        """`size` generic rows for the next micro-batch of optimizer step `step` (0-based)."""
        micro = self._micro[1] if self._micro[0] == step else 0
        self._micro = (step, micro + 1)
        start = (step * self._accum + micro) * self._stride
        picked = [self.examples[self._at(start + i)] for i in range(size)]
        batch = ChatCollator(pad_id=0)(picked)  # padding is masked out; its id does not matter
        return {k: v.to(device) for k, v in batch.items()}

    def extra_loss(self, model: nn.Module, batch: dict[str, Tensor], ctx: RunContext) -> Tensor | None:
        if not self.examples:
            return None
        # as many generic rows as the batch has rows: a padding-free batch is one row whose positions restart per row
        rows = (int((batch["position_ids"] == 0).sum()) if "attention_mask" not in batch and "position_ids" in batch
                else len(batch["input_ids"]))
        generic = self.next_batch(rows, ctx.step, batch["input_ids"].device)
        kl = kl_to_base(model, generic["input_ids"], generic["attention_mask"])
        self._kl = kl.item()
        return self.beta * kl

    def on_optimizer_step(self, model: nn.Module, ctx: RunContext) -> None:
        if self._kl is not None:
            ctx.log(**{f"{self.name}/kl": self._kl})
