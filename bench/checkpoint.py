"""What checkpointing costs the train stage -> bench/results/checkpoint.json.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/checkpoint.py       # SmolLM2-135M, 20 steps, 2 rounds (~12 min idle)
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/checkpoint.py --saves-only 10   # -> checkpoint_save.json (~1 min)

One round = two runs of `grasp-bench sweep=none method=sft stages=[train] train.max_steps=20` on the embedded model,
in a fresh runs root each, one with `train.checkpoint_every=0` (none) and one with a checkpoint every 2 steps
(10 checkpoints: 3x the default rate, which is every 10% of a run's steps), in alternating order. Figures: the
wall time of each command and the Trainer's own `train_runtime`, the median per setting, and the cost of one
checkpoint = (on - off) / 10; the demo's projection is that cost x 10 checkpoints x 2 fine-tunes (sft and GRASP)
over the demo's wall time. `--saves-only N` times N checkpoint saves directly after one real step instead: on a
busy machine the on/off difference drowns in the step time's noise, the save itself does not.
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
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "checkpoint.json"
DEMO_WALL_S = 6 * 60 + 42  # docs/RESULTS.md: `grasp-bench` without checkpoints, idle, this CPU (60 steps per fine-tune)


def one(every: int, steps: int, model: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="grasp-bench-ckpt-") as tmp:
        cmd = [sys.executable, "-m", "grasp_bench", "sweep=none", "method=sft", f"model={model}", "stages=[train]",
               f"train.max_steps={steps}", f"train.checkpoint_every={every}", f"paths.runs={tmp}"]
        wall = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - wall
    runtime = re.search(r"'train_runtime': '?([\d.]+)", out.stdout + out.stderr)
    return {"every": every, "wall_s": wall, "train_runtime_s": float(runtime.group(1)) if runtime else None}


def save_cost(model_name: str, saves: int) -> dict:
    """Seconds per checkpoint save (adapter, AdamW state, schedule, RNG, Trainer state) after one real optimizer
    step, timed directly: independent of how long a training step takes on a busy machine."""
    import shutil

    import torch
    from datasets import Dataset
    from hydra import compose, initialize_config_dir
    from transformers import Trainer

    from grasp_bench import models
    from grasp_bench.data import ChatCollator, tokenize_chat
    from grasp_bench.layout import CONF_DIR
    from grasp_bench.train import training_arguments

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model_name}", "train.max_steps=1"])
    cache = Path(cfg.paths.cache).expanduser()
    tok = models.load_tokenizer(cfg.model, cache)
    model = models.add_lora(models.load_base(cfg.model, cache), cfg.model, 0)
    msgs = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4, obviously."}]
    data = Dataset.from_list([tokenize_chat(tok, msgs, 64)] * cfg.train.batch_size)
    with tempfile.TemporaryDirectory(prefix="grasp-bench-ckpt-") as tmp:
        trainer = Trainer(model=model, args=training_arguments(cfg.train, Path(tmp), 0), train_dataset=data,
                          data_collator=ChatCollator(tok.pad_token_id))
        trainer.train()
        times = []
        for i in range(saves):
            trainer.state.global_step = i + 2
            t = time.perf_counter()
            trainer._save_checkpoint(trainer.model, None)  # what the Trainer runs at each save step
            times.append(time.perf_counter() - t)
        ckpt = next(Path(tmp).glob("checkpoint-*"))
        size = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())
        shutil.rmtree(ckpt)
    del torch
    return {"saves": saves, "seconds_per_save_median": statistics.median(times), "seconds_per_save": times,
            "checkpoint_mb": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--saves-only", type=int, default=0, metavar="N",
                        help="only time N checkpoint saves directly (seconds, on a busy machine)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.saves_only:
        cost = save_cost(args.model, args.saves_only)
        result = {"command": "PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/checkpoint.py " + " ".join(sys.argv[1:]),
                  "model": args.model, "save": cost,
                  "demo_projection": {"demo_wall_s": DEMO_WALL_S, "checkpoints": 2 * 10,
                                      "added_s": 20 * cost["seconds_per_save_median"],
                                      "ratio": (DEMO_WALL_S + 20 * cost["seconds_per_save_median"]) / DEMO_WALL_S},
                  "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                              "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}}
        OUT.with_name("checkpoint_save.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    runs = []
    for r in range(args.rounds):
        order = (0, args.every) if r % 2 == 0 else (args.every, 0)
        for every in order:
            runs.append(one(every, args.steps, args.model))
            print(json.dumps(runs[-1]), flush=True)
    n_ckpt = args.steps // args.every

    def median(key: str, every: int) -> float:
        return statistics.median(x[key] for x in runs if x["every"] == every)

    figures = {k: {"off": median(k, 0), "on": median(k, args.every)} for k in ("wall_s", "train_runtime_s")}
    per_ckpt = (figures["train_runtime_s"]["on"] - figures["train_runtime_s"]["off"]) / n_ckpt
    result = {
        "command": "PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/checkpoint.py " + " ".join(sys.argv[1:]),
        "model": args.model, "steps": args.steps, "checkpoints": n_ckpt, "rounds": args.rounds, "runs": runs,
        "median": figures, "seconds_per_checkpoint": per_ckpt,
        "train_runtime_ratio_on_off": figures["train_runtime_s"]["on"] / figures["train_runtime_s"]["off"],
        "demo_projection": {"demo_wall_s": DEMO_WALL_S, "checkpoints": 2 * 10,
                            "added_s": 20 * per_ckpt, "ratio": (DEMO_WALL_S + 20 * per_ckpt) / DEMO_WALL_S},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median", "seconds_per_checkpoint", "demo_projection")}, indent=2))


if __name__ == "__main__":
    main()
