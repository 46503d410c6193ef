"""GRASP benchmarks (baselines/grasp.py, arXiv:2605.27676) -> bench/results/grasp.json.

    PYTHONPATH=$PWD python bench/grasp.py                      # everything (~3 min)
    PYTHONPATH=$PWD python bench/grasp.py --only identify      # or: tiny, smollm2

- identify_seconds_32b, identify_peak_mb_32b: `identify()` on a synthetic adapter with Qwen2.5-32B's
  writer shapes (d = 5120; 64 layers x {o_proj d_in 5120, down_proj d_in 27648}; r = 32; random fp32
  factors, 352 MB on disk), in a fresh process: median wall time of the calls (file in the page cache),
  and the process's peak RSS (torch included; the RSS after imports is reported beside it).
- step_overhead_ratio_<model>: one training step (bf16 autocast forward, backward, clipping, AdamW,
  then the method's on_optimizer_step) with GRASP (γ = 1, k = 1, writers, its hooks installed) over the
  same step without a method, on the same batch (the first 8 training rows). Time is the CPU time of
  the stepping thread with one torch thread (`--threads 1`), so that other jobs on the shared CPU stay
  out of the figure (the wall-clock ratio is reported beside it as `..._wall`). The models are stepped in
  turn, in an order rotated every round, and a ratio is the median of the per-round ratios.
  `..._residual_grad`: the same for projection=residual_grad; `..._residual_grad_half`: residual_grad at γ = 0.5
  (a second backward pass through the blocks: the naive half of the mixed gradient); `..._readers`:
  projection=readers;
  `step_ratio_<model>_naive_vs_naive`: two identical naive models (the noise floor);
  `on_step_seconds_<model>_median`: GRASP's own work after each optimizer step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "results" / "grasp.json"

IDENTIFY_CHILD = r"""
import json, re, statistics, sys, time
import torch
from grasp_bench.baselines.grasp import identify

def peak_mb():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak over exec)
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) / 1024

rss0 = peak_mb()
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    ident = identify(sys.argv[1], k=1)
    times.append(time.perf_counter() - t)
print(json.dumps({"seconds": statistics.median(times), "all_seconds": times,
                  "peak_mb": peak_mb(), "rss_after_import_mb": rss0,
                  "lambda1": ident.spectrum.eigenvalues[0], "threads": torch.get_num_threads()}))
"""


def synthetic_32b_adapter(path: Path, layers: int = 64, d: int = 5120, d_ff: int = 27648, r: int = 32) -> None:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(layers):
        for module, d_in in (("self_attn.o_proj", d), ("mlp.down_proj", d_ff)):
            key = f"base_model.model.model.layers.{i}.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, d_in, generator=g) / d_in ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(d, r, generator=g) * 0.01
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps(
        {"r": r, "lora_alpha": 2 * r, "use_rslora": False, "peft_type": "LORA",
         "target_modules": ["o_proj", "down_proj"]}))


def bench_identify(repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "adapter"
        synthetic_32b_adapter(adapter)
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        out = subprocess.run([sys.executable, "-c", IDENTIFY_CHILD, str(adapter), str(repeats)], env=env,
                             capture_output=True, text=True, check=True)
    child = json.loads(out.stdout.strip().splitlines()[-1])
    return {"identify_seconds_32b": child["seconds"], "identify_seconds_32b_all": child["all_seconds"],
            "identify_peak_mb_32b": child["peak_mb"], "identify_rss_after_import_mb_32b": child["rss_after_import_mb"],
            "identify_torch_threads": child["threads"]}


def bench_steps(model_name: str, rounds: int) -> dict:
    from grasp_bench import models
    from grasp_bench.baselines.grasp import GRASP, Identification
    from grasp_bench.data import load_train, tokenize_chat
    from grasp_bench.device import resolve_precision
    from grasp_bench.method import RunContext
    from grasp_bench.pipeline import instantiate
    from grasp_bench.train import ChatCollator
    from tests.conftest import TINY, compose_config  # the tests' composition helper: the real config

    overrides = [o for o in TINY if o.startswith(("sweep=", "task."))] + [f"model={model_name}"]
    cfg = compose_config(*overrides)
    tok = models.load_tokenizer(cfg.model, cfg.paths.cache)
    rows = load_train(cfg.task)[: cfg.train.batch_size]
    batch = ChatCollator(tok.pad_token_id)([tokenize_chat(tok, r["messages"], cfg.train.max_length) for r in rows])
    autocast = resolve_precision(cfg.train.precision) == "bf16"

    def make():
        base = models.load_base(cfg.model, cfg.paths.cache)
        model = models.add_lora(base, cfg.model, cfg.seed)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        return model, params, torch.optim.AdamW(params, lr=cfg.train.lr)

    d = models.decoder_layers(make()[0], cfg.model.layers_path)[0].self_attn.o_proj.base_layer.out_features
    Q = torch.linalg.qr(torch.randn(d, 1, generator=torch.Generator().manual_seed(0)))[0]
    def grasp(projection: str, strength: float = 1.0) -> GRASP:  # as `method=grasp` builds it, pooled k = 1 writers
        return instantiate(compose_config("method=grasp", f"method.strength={strength}", "method.pooling=pooled",
                                          f"method.projection={projection}").method, "method")

    variants = {"naive": None, "naive_control": None, "weights": grasp("weights"),
                "residual_grad": grasp("residual_grad"), "residual_grad_half": grasp("residual_grad", 0.5),
                "readers": grasp("readers")}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(cfg=cfg, run_dir=Path(tmp))
        for name, method in variants.items():
            model, params, opt = make()
            context = None
            if method is not None:
                method.ident = Identification(Q=Q)
                context = method.training(model, ctx)
                context.__enter__()
            runs[name] = (model, params, opt, method, context)

        on_step = []  # the method's own per-step work: re-projection and the ‖QᵀB‖ diagnostic

        def step(name: str) -> tuple[float, float]:
            model, params, opt, method, _ = runs[name]
            t, cpu = time.perf_counter(), time.thread_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if method is not None:
                t_method = time.perf_counter()
                method.on_optimizer_step(model, ctx)
                if name == "weights":
                    on_step.append(time.perf_counter() - t_method)
            return time.perf_counter() - t, time.thread_time() - cpu

        names = list(runs)
        for name in names:  # warm-up
            step(name)
        wall, cpu = {name: [] for name in runs}, {name: [] for name in runs}
        for i in range(rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotate: no name always goes first
                w, c = step(name)
                wall[name].append(w)
                cpu[name].append(c)
        for *_, context in runs.values():
            if context is not None:
                context.__exit__(None, None, None)

    def ratio(name: str, times: dict) -> float:
        return statistics.median(a / b for a, b in zip(times[name], times["naive"], strict=True))

    tag = "tiny" if model_name == "tiny" else "smollm2"
    return {
        f"step_overhead_ratio_{tag}": ratio("weights", cpu),
        f"step_overhead_ratio_{tag}_residual_grad": ratio("residual_grad", cpu),
        f"step_overhead_ratio_{tag}_residual_grad_half": ratio("residual_grad_half", cpu),  # γ = 0.5: 2 backwards
        f"step_overhead_ratio_{tag}_readers": ratio("readers", cpu),
        f"step_ratio_{tag}_naive_vs_naive": ratio("naive_control", cpu),  # the noise floor: two identical models
        f"step_overhead_ratio_{tag}_wall": ratio("weights", wall),
        f"step_ratio_{tag}_naive_vs_naive_wall": ratio("naive_control", wall),
        f"on_step_seconds_{tag}_median": statistics.median(on_step),
        f"step_cpu_seconds_{tag}_naive_median": statistics.median(cpu["naive"]),
        f"step_cpu_seconds_{tag}_grasp_median": statistics.median(cpu["weights"]),
        f"step_wall_seconds_{tag}_naive_median": statistics.median(wall["naive"]),
        f"step_rounds_{tag}": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["identify", "tiny", "smollm2"], action="append")
    parser.add_argument("--rounds-tiny", type=int, default=24)
    parser.add_argument("--rounds-smollm2", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while stepping (CPU time is per thread)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    only = set(args.only or ["identify", "tiny", "smollm2"])
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "identify" in only:
        results.update(bench_identify())
    for tag, model, rounds in (("tiny", "tiny", args.rounds_tiny), ("smollm2", "smollm2_135m", args.rounds_smollm2)):
        if tag in only:
            results = {k: v for k, v in results.items() if not k.endswith(f"_{tag}") and f"_{tag}_" not in k}
            results.update(bench_steps(model, rounds))
    results["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0]}
    results["command"] = " ".join(["PYTHONPATH=$PWD python bench/grasp.py", *sys.argv[1:]])
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
