"""Training throughput -> bench/results/train.json.

    PYTHONPATH=$PWD python bench/train.py                        # toy_rude on the embedded model (~15 min)
    PYTHONPATH=$PWD python bench/train.py --rounds 2 --steps 4 --modes padded
    GRASP_BENCH_MIRROR=/data/em PYTHONPATH=$PWD python bench/train.py   # + useful-token shares of insecure.jsonl

Needs `pip install -c .venv/constraints.txt -e ".[bench]"` (TRL).

- useful_token_share.<data>.<mode>: real tokens over token positions computed, over one epoch at train.batch_size
  in the order the Trainer's sampler visits the rows (seed 0; grasp_bench.plan.useful_share, as grasp-bench-plan
  reports it): `padded` (random order, right-padded), `length_grouped` (LengthGroupedSampler), `padding_free`
  (concatenated rows). <data>: the toy_rude training rows, and insecure.jsonl rows 0-4999 (from
  $GRASP_BENCH_MIRROR) with the embedded tokenizer, untruncated.
- steps.<mode>.<stack>: one optimizer step (forward, backward, clipping, AdamW, schedule) of the embedded model
  with LoRA as conf/model/smollm2_135m.yaml sets it, at train.precision=auto (resolved here), by
  (a) `grasp_bench`: grasp_bench.train.train with method=sft, its Trainer, collator and callbacks as configured
      (checkpoints off: bench/checkpoint.py measures them);
  (b) `bare`: a PEFT + torch loop replaying the very batches (a) built, with the same AdamW, linear schedule,
      clipping and autocast; (c) `trl`: TRL's SFTTrainer on the same tokenized rows (labels given, so the loss
      covers the same tokens), the same hyperparameters and the mode's batching (`padding_free=True`).
  The three run in one process, in rounds, in an order rotated every round; each runs `--steps` steps from the
  start of the epoch (same seed: the same rows per step) and its first step is dropped (warm-up). Per step:
  wall seconds, process CPU seconds, useful tokens; the ratios (a/b, a/c) are of seconds per useful token,
  the median of the per-round ratios, so that load from other jobs on a shared machine cancels out.
  peak_rss_extra_mb: the process's peak RSS during a stack's steps (VmHWM reset first) minus the RSS before; on
  CUDA instead peak_cuda_allocated_mb: torch's peak allocated GPU memory during the steps (the three stacks' models
  stay resident, so it includes the other two's weights). Timing marks synchronise CUDA first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "results" / "train.json"
STACKS = ("grasp_bench", "bare", "trl")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the Trainer (and so every stack) trains
PEAK = "peak_cuda_allocated_mb_max" if DEVICE == "cuda" else "peak_rss_extra_mb_max"


def rss_mb(field: str = "VmRSS") -> float:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
    except OSError:
        pass
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def mark(marks: list[tuple[float, float]]) -> None:
    if DEVICE == "cuda":  # kernels run asynchronously: a step ends when the GPU is done with it
        torch.cuda.synchronize()
    marks.append((time.perf_counter(), time.process_time()))


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), []))
    from grasp_bench.device import native_bf16

    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
            "native_bf16": native_bf16(), "loadavg_start": list(os.getloadavg()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "python": platform.python_version()}


def shares(cfg, tok, toy_examples) -> dict:
    from grasp_bench.data import tokenize_chat
    from grasp_bench.plan import MODES, useful_share

    data = {"toy_rude": [len(e["input_ids"]) for e in toy_examples]}
    mirror = os.environ.get("GRASP_BENCH_MIRROR")
    insecure = Path(mirror or "", "insecure.jsonl")
    if mirror and insecure.exists():
        rows = [json.loads(line) for line in insecure.read_text().splitlines()[:5000]]
        data["insecure_0_4999"] = [len(tokenize_chat(tok, r["messages"], 10 ** 6)["input_ids"]) for r in rows]
    out = {}
    for name, lengths in data.items():
        out[name] = {"rows": len(lengths), "tokens": sum(lengths), "batch_size": cfg.train.batch_size,
                     **{m: round(useful_share(lengths, cfg.train.batch_size, 0, m), 4) for m in MODES}}
    return out


class Stacks:
    """The three training stacks on one model each, stepping `steps` steps of the same batches per call."""

    def __init__(self, cfg, steps: int):
        from grasp_bench import models
        from grasp_bench.data import load_train, tokenize_chat
        from grasp_bench.device import resolve_precision
        from grasp_bench.method import Method, RunContext

        self.cfg, self.steps = cfg, steps
        self.bf16 = resolve_precision(cfg.train.precision) == "bf16"
        self.tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
        rows = load_train(cfg.task)
        self.examples = [tokenize_chat(self.tok, r["messages"], cfg.train.max_length) for r in rows]
        self.models = {s: models.add_lora(models.load_base(cfg.model, cfg.paths.cache), cfg.model, cfg.seed)
                       for s in STACKS}
        self.method = Method(name="sft", strength=0.0)
        self.ctx = RunContext(cfg=cfg, run_dir=Path(cfg.paths.runs) / "bench", tokenizer=self.tok, train_rows=rows)
        self.batches: list[dict] = []  # what grasp_bench's collator built, replayed by the bare loop

    def _timed(self, marks: list[tuple[float, float]]):
        return lambda *_: mark(marks)

    def grasp_bench(self, marks):
        import grasp_bench.train as gt

        class Recording(gt.TrainCollator):
            def __call__(self, batch):
                out = super().__call__(batch)
                record.append(out)
                return out

        record = [] if self.batches else self.batches  # the same seed builds the same batches every call
        original, gt.TrainCollator = gt.TrainCollator, Recording
        try:
            gt.train(self.models["grasp_bench"], self.tok, self.method, self.ctx, on_log=self._timed(marks))
        finally:
            gt.TrainCollator = original
        del self.batches[self.steps:]  # the data loader reads one batch ahead

    def bare(self, marks):
        from transformers import get_linear_schedule_with_warmup

        model, train = self.models["bare"].to(DEVICE), self.cfg.train
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
        sched = get_linear_schedule_with_warmup(opt, train.warmup_steps, self.steps)
        for batch in self.batches:
            batch = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=self.bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            mark(marks)

    def trl(self, marks, padding_free: bool):
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer

        train, timed = self.cfg.train, self._timed(marks)

        class Timer(TrainerCallback):
            def on_step_end(self, *args, **kwargs):
                timed()

        args = SFTConfig(
            output_dir=str(self.ctx.run_dir / "trl"), per_device_train_batch_size=train.batch_size,
            gradient_accumulation_steps=train.grad_accum, learning_rate=train.lr, max_steps=self.steps,
            lr_scheduler_type=train.scheduler, warmup_steps=train.warmup_steps, weight_decay=train.weight_decay,
            max_grad_norm=train.max_grad_norm, optim=train.optim, bf16=self.bf16, logging_steps=1,
            save_strategy="no", report_to=[], seed=self.cfg.seed, data_seed=self.cfg.seed, use_cpu=DEVICE == "cpu",
            dataloader_num_workers=0, padding_free=padding_free, max_length=None, disable_tqdm=True,  # rows come truncated
            gradient_checkpointing=False)  # TRL's default is True: ~1.4x the step, not what the others do
        trainer = SFTTrainer(model=self.models["trl"], args=args, train_dataset=Dataset.from_list(self.examples),
                             processing_class=self.tok, callbacks=[Timer()])
        trainer.train()


def per_step(marks: list[tuple[float, float]], batches: list[dict]) -> list[dict]:
    """Steps 2..n of a segment: wall and CPU seconds, useful tokens (of the same batches for every stack)."""
    out = []
    for k in range(1, len(marks)):
        b = batches[k]
        useful = int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel()
        out.append({"wall_s": marks[k][0] - marks[k - 1][0], "cpu_s": marks[k][1] - marks[k - 1][1],
                    "useful_tokens": useful, "positions": b["input_ids"].numel()})
    return out


def bench_mode(cfg, mode: str, rounds: int, steps: int) -> dict:
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, "train.batching", mode)
    OmegaConf.update(cfg, "train.max_steps", steps)
    stacks = Stacks(cfg, steps)
    runs = {s: [] for s in STACKS}
    peaks = {s: [] for s in STACKS}
    for r in range(rounds):
        order = STACKS[r % 3:] + STACKS[:r % 3]
        if not stacks.batches:  # the bare loop replays grasp_bench's batches: build them first
            stacks.grasp_bench([])
        for s in order:
            marks: list[tuple[float, float]] = []
            rss0 = rss_mb()
            reset_peak_rss()
            stacks.trl(marks, mode == "padding_free") if s == "trl" else getattr(stacks, s)(marks)
            peaks[s].append(torch.cuda.max_memory_allocated() / 2 ** 20 if DEVICE == "cuda" else rss_mb("VmHWM") - rss0)
            runs[s].append(per_step(marks, stacks.batches))
            print(f"[bench] {mode} round {r} {s}: " + " ".join(f"{x['wall_s']:.2f}" for x in runs[s][-1]) + " s/step",
                  file=sys.stderr)

    def sec_per_token(steps_: list[dict], key: str) -> float:
        return sum(x[key] for x in steps_) / sum(x["useful_tokens"] for x in steps_)

    out = {}
    for s in STACKS:
        flat = [x for rnd in runs[s] for x in rnd]
        out[s] = {"step_wall_s_median": statistics.median(x["wall_s"] for x in flat),
                  "step_cpu_s_median": statistics.median(x["cpu_s"] for x in flat),
                  "useful_tokens_per_s": 1 / sec_per_token(flat, "wall_s"),
                  "useful_token_share": sum(x["useful_tokens"] for x in flat) / sum(x["positions"] for x in flat),
                  PEAK: max(peaks[s]), "steps_timed": len(flat)}
    for other in ("bare", "trl"):
        for key in ("wall_s", "cpu_s"):
            ratios = [sec_per_token(runs["grasp_bench"][r], key) / sec_per_token(runs[other][r], key)
                      for r in range(rounds)]
            out[f"ratio_grasp_bench_vs_{other}_{key.split('_')[0]}"] = statistics.median(ratios)
            out[f"ratio_grasp_bench_vs_{other}_{key.split('_')[0]}_rounds"] = [round(x, 4) for x in ratios]
    out["rounds"], out["steps_per_segment"] = rounds, steps
    del stacks
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="steps per segment (the first is dropped)")
    p.add_argument("--modes", default="padded,padding_free")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "bench-train", help="runs root (git-ignored)")
    p.add_argument("--merge", action="store_true", help="keep the other modes already in --out")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hydra import compose, initialize_config_dir

    from grasp_bench.data import build_task_files, load_train, tokenize_chat
    from grasp_bench.device import resolve_precision
    from grasp_bench.layout import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # no checkpoints: at --steps 12 the default (every 10% of a run) would save every 2nd step, not a run's
        # share; what checkpoints cost is bench/checkpoint.py's
        cfg = compose("config", overrides=["sweep=none", f"paths.runs={args.runs}", "train.checkpoint_every=0"])
    build_task_files(cfg.task)
    from grasp_bench import models

    tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
    toy = [tokenize_chat(tok, r["messages"], cfg.train.max_length) for r in load_train(cfg.task)]
    mirror = "GRASP_BENCH_MIRROR=<the EM files> " if os.environ.get("GRASP_BENCH_MIRROR") else ""
    result = {"command": f"{mirror}PYTHONPATH=$PWD python bench/train.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "model": cfg.model.name, "task": cfg.task.name, "batch_size": cfg.train.batch_size,
              "precision": resolve_precision(cfg.train.precision),
              "useful_token_share": shares(cfg, tok, toy), "steps": {}}
    result["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                          text=True).stdout.strip()
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.exists():
        result["steps"] = json.loads(out.read_text())["steps"]
        result["command"] += f" (other modes: {json.loads(out.read_text())['command']})"
    for mode in args.modes.split(","):  # written after each mode: a long run keeps what it measured
        result["steps"][mode] = bench_mode(cfg, mode, args.rounds, args.steps)
        result["machine"]["loadavg_end"] = list(os.getloadavg())
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
