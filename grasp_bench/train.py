"""The one training pipeline for every method: LoRA through peft, transformers `Trainer`, loss on the
final assistant turn only, the model's own chat template. Methods act only through their hooks
(`training` context, `on_optimizer_step` via a Trainer callback); the optimizer, schedule and data order
are identical for every method of a sweep.
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
from transformers import Trainer, TrainerCallback, TrainingArguments

from grasp_bench.data import ChatCollator, training_examples
from grasp_bench.method import Method, RunContext


class MethodCallback(TrainerCallback):
    """Calls the Method after every optimizer step and collects one log row per step."""

    def __init__(self, method: Method, ctx: RunContext, on_log: Callable[[dict], None] | None = None):
        self.method, self.ctx, self.forward_log = method, ctx, on_log
        self.rows: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ctx.step = state.global_step
        self.ctx.logs = {}
        self.method.on_optimizer_step(model, self.ctx)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            row = {"step": state.global_step, "train/loss": logs["loss"], "train/grad_norm": logs.get("grad_norm"),
                   "train/lr": logs.get("learning_rate"), **self.ctx.logs}
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
        bf16=train.precision == "bf16",  # autocast; the trainable LoRA weights stay fp32
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
    dataset = Dataset.from_list(examples)
    callback = MethodCallback(method, ctx, on_log)
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg.train, ctx.run_dir / "trainer", cfg.seed),
        train_dataset=dataset,
        data_collator=ChatCollator(tokenizer.pad_token_id),
        callbacks=[callback],
    )
    with method.training(model, ctx):
        trainer.train()
    losses = [r["train/loss"] for r in callback.rows]
    if losses and not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"training diverged (non-finite loss) in {ctx.run_dir}")
    return callback.rows
