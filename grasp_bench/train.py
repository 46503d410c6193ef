"""The one training pipeline for every method: LoRA through peft, transformers `Trainer`, loss on the
final assistant turn only, the model's own chat template. Methods act only through their hooks
(`training` context, `on_optimizer_step` via a Trainer callback); the optimizer, schedule and data order
are identical for every method of a sweep; a method may add a loss term (`extra_loss`).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments

from grasp_bench.data import ChatCollator, training_examples
from grasp_bench.device import resolve_batching, resolve_precision
from grasp_bench.method import Method, RunContext


class MethodTrainer(Trainer):
    """The Trainer, plus the method's `extra_loss` term (if any) on every training batch."""

    def __init__(self, *args, method: Method, ctx: RunContext, **kwargs):
        super().__init__(*args, **kwargs)
        self.method, self.ctx = method, ctx

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        extra = self.method.extra_loss(model, inputs, self.ctx) if model.training else None
        if extra is None:
            return out
        scaled = self.loss_is_scaled_for_ga  # as training_step decides whether the task loss is already per
        if scaled is None:                   # accumulation window (then it divides no more, so we do)
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None
        if scaled:
            extra = extra / self.current_gradient_accumulation_steps
        return (out[0] + extra, *out[1:]) if return_outputs else out + extra


class TrainCollator:
    """The training batches of a (resolved) batching mode, without a KV cache, counting useful tokens.

    `padding_free`: the rows of a batch concatenated into one, position ids restarting per row and no
    attention mask (transformers' DataCollatorWithFlattening); transformers builds the block-diagonal mask
    from the position ids (flash-attention uses its varlen path) only when no cache is passed, and a cache is
    wasted work in training anyway, so every mode sets use_cache=False."""

    def __init__(self, batching: str, pad_id: int):
        self.collate = DataCollatorWithFlattening() if batching == "padding_free" else ChatCollator(pad_id)
        self.real = self.positions = 0

    def __call__(self, batch: list[dict]) -> dict:
        out = self.collate(batch)
        self.real += sum(len(b["input_ids"]) for b in batch)
        self.positions += out["input_ids"].numel()
        return {**out, "use_cache": False}

    def share(self) -> float | None:
        """Real tokens over token positions computed since the last call."""
        share = self.real / self.positions if self.positions else None
        self.real = self.positions = 0
        return share


class MethodCallback(TrainerCallback):
    """Calls the Method after every optimizer step and collects one log row per step."""

    def __init__(self, method: Method, ctx: RunContext, on_log: Callable[[dict], None] | None = None,
                 tokens: TrainCollator | None = None):
        self.method, self.ctx, self.forward_log, self.tokens = method, ctx, on_log, tokens
        self.rows: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ctx.step = state.global_step
        self.ctx.logs = {}
        self.method.on_optimizer_step(model, self.ctx)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            row = {"step": state.global_step, "train/loss": logs["loss"], "train/grad_norm": logs.get("grad_norm"),
                   "train/lr": logs.get("learning_rate"), **self.ctx.logs}
            if self.tokens is not None:  # the batches' real tokens over the positions computed
                row["train/useful_token_share"] = self.tokens.share()
            self.rows.append(row)
            if self.forward_log:
                self.forward_log(row)


BNB_8BIT = {"adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"}  # bitsandbytes optimizers: CUDA only


def effective_optim(optim: str) -> str:
    """`train.optim`, or `adamw_torch` for a bitsandbytes 8-bit AdamW where it cannot run (no CUDA or no
    bitsandbytes): the same AdamW update with 32-bit moments instead of block-wise 8-bit ones (6 more bytes of
    optimizer state per trainable parameter; see docs/reproduce.md)."""
    if optim in BNB_8BIT and not (torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes")):
        return "adamw_torch"
    return optim


def training_arguments(train: DictConfig, out_dir: Path, seed: int) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    optim = effective_optim(train.optim)
    if optim != train.optim:
        print(f"warning: train.optim={train.optim} needs bitsandbytes on CUDA; training with {optim}", file=sys.stderr,
              flush=True)
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        lr_scheduler_type=train.scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        optim=optim,
        bf16=resolve_precision(train.precision) == "bf16",  # autocast; the trainable LoRA weights stay fp32
        train_sampling_strategy="group_by_length" if resolve_batching(train.batching) == "length_grouped" else "random",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
    )


def train(model: nn.Module, tokenizer, method: Method, ctx: RunContext,
          on_log: Callable[[dict], None] | None = None, examples: list[dict] | None = None) -> list[dict]:
    """Fine-tune `model` (a PeftModel) in place; returns the per-step log (the pipeline then calls post_train).
    `examples`: ctx.train_rows already tokenised (`grasp_bench.data.training_examples`)."""
    from datasets import Dataset

    cfg = ctx.cfg
    if examples is None:
        examples = training_examples(tokenizer, ctx.train_rows, cfg.train)
    dataset = Dataset.from_list([{**e, "length": len(e["input_ids"])} for e in examples])
    tokens = TrainCollator(resolve_batching(cfg.train.batching), tokenizer.pad_token_id)
    callback = MethodCallback(method, ctx, on_log, tokens)
    trainer = MethodTrainer(
        method=method,
        ctx=ctx,
        model=model,
        args=training_arguments(cfg.train, ctx.run_dir / "trainer", cfg.seed),
        train_dataset=dataset,
        data_collator=tokens,
        callbacks=[callback],
    )
    with method.training(model, ctx):
        trainer.train()
    losses = [r["train/loss"] for r in callback.rows]
    if losses and not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"training diverged (non-finite loss) in {ctx.run_dir}")
    return callback.rows
