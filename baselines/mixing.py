"""Data mixing: aligned chat trained on beside the task, as the positive-proxy baseline of the selective-
generalisation benchmark (arianaazarbal/selective-generalization, projects/trainers/positive_negative_proxy_trainer.py,
`PositiveNegativeProxyTrainer.train`: every step takes one task batch and one proxy batch, loss = task loss +
lambda_proxy * the proxy batch's cross-entropy, lambda_proxy = 1.0 in its configs).

`mode: add` (default): every task batch is kept, and one batch of aligned chat of the same size goes beside it
(`directions.ProxyBatches`: seeded, a function of the optimizer step, so a resumed run draws the same batches);
its cross-entropy on the assistant's reply, times lambda = strength * lambda_max (lambda_max 1.0: upstream's
lambda_proxy), is added through `Method.extra_loss`. The aligned chat is `directions.aligned_chats`: the task's
`aligned_chat` (the EM tasks: upstream's aligned safety chat, pinned in tasks/em_eval/manifest.yaml), else the base
model's own greedy replies to the task's generic prompts (the embedded organisms; cached per runs root).

`mode: replace` (the rule of runs made before the knob): before training, a seeded choice of exactly
round(strength * max_share * N) of the N training rows is replaced by the aligned chats (cycled when more rows
are replaced than there are chats); the number of rows, steps and the schedule are unchanged, but up to
`max_share` of the task is no longer seen.

strength 0 = naive SFT. Deviations from upstream: upstream cycles the proxy set in its own loader order and ends
the epoch with the task set; here the proxy stream is reshuffled per pass (the same in expectation); the embedded
organisms' aligned chat is the base model's replies to everyday prompts, not a curated aligned set.
"""

from __future__ import annotations

from torch import Tensor, nn

from grasp_bench.baselines.directions import ProxyBatches, aligned_chats, rows_in
from grasp_bench.baselines.inoculation import seeded_rows
from grasp_bench.data import tokenize_chat
from grasp_bench.method import Knob, Method, RunContext, configured

MODES = ("add", "replace")


class DataMixing(Method):
    task_inputs = ("generic_prompts", "aligned_chat")
    knobs_before = {"mode": "replace"}  # runs recorded before the knob replaced rows: they stop with one line
    knobs = {"mode": Knob(str, choices=MODES), "max_share": Knob(float, low=0, high=1),  # at share 1 no task row is left
             "lambda_max": Knob(float, low=0), "response_tokens": Knob(int, low=1)}

    def __init__(self, name: str = "mixing", **given):
        p = configured(name, given, home="mixing")  # conf/method/mixing.yaml: the one place the defaults live
        super().__init__(name, **p)  # checks the knobs and sets them
        self.proxy: ProxyBatches | None = None  # mode=add, set in prepare()
        self._loss: float | None = None

    def task_needs(self) -> tuple[str, ...]:
        """`aligned_chat` is optional (`directions.aligned_chats`): without it the generic prompts are read."""
        return ("generic_prompts",) if self.strength > 0 else ()

    @property
    def share(self) -> float:
        """mode=replace: the share of the training rows replaced."""
        return self.strength * self.max_share

    @property
    def weight(self) -> float:
        """mode=add: the weight of the aligned batch's loss."""
        return self.strength * self.lambda_max

    def prepare(self, ctx: RunContext) -> None:
        if self.mode == "add":
            if self.weight == 0:
                return
            chats = aligned_chats(ctx, self.name, self.response_tokens)
            examples = [tokenize_chat(ctx.tokenizer, c, ctx.cfg.train.max_length) for c in chats]
            self.proxy = ProxyBatches(examples, ctx.cfg.seed, ctx.cfg.train.batch_size, ctx.cfg.train.grad_accum)
            ctx.diagnostics.update({f"{self.name}/lambda": self.weight, f"{self.name}/proxy_chats": len(examples)})
            return
        chosen = seeded_rows(len(ctx.train_rows), self.share, ctx.cfg.seed)
        if not chosen:
            return
        chats = aligned_chats(ctx, self.name, self.response_tokens)
        for j, i in enumerate(chosen):
            ctx.train_rows[i] = {"messages": chats[j % len(chats)]}
        ctx.diagnostics.update({f"{self.name}/rows": len(chosen),
                                f"{self.name}/share": len(chosen) / len(ctx.train_rows)})

    def extra_loss(self, model: nn.Module, batch: dict[str, Tensor], ctx: RunContext) -> Tensor | None:
        if self.proxy is None:
            return None
        proxy = self.proxy.next(rows_in(batch), ctx.step, batch["input_ids"].device)
        loss = model(**proxy).loss  # mean cross-entropy over the aligned replies' tokens
        self._loss = loss.item()
        return self.weight * loss

    def on_optimizer_step(self, model: nn.Module, ctx: RunContext) -> None:
        if self._loss is not None:
            ctx.log(**{f"{self.name}/proxy_loss": self._loss})
