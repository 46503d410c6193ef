"""Peak GPU memory, step time and model-FLOPs utilisation of a LoRA training step, next to grasp-bench-plan's
memory estimate, for models shaped as the shipped configs (issue 26, item 5). Results: bench/results/memory_<gpu>.json.

    python bench/memory.py                       # on a GPU: the 7B and 32B shapes, 2 steps of 2 x 2,048 tokens
    python bench/memory.py --shape tiny --out /tmp/m.json   # a 2-layer shape on CPU: checks the script runs

Each shape is built from the model config's pinned `arch` figures (conf/model/<name>.yaml) with random weights
in model.dtype on the device (no hub access, nothing written to disk: a 32B checkpoint would not fit the lent
machine's disk, so the project's train stage, which loads a checkpoint, is not used), then trained as the train
stage trains it: the model config's LoRA (grasp_bench.models.lora_config: rsLoRA r 32 on every linear layer),
bf16 autocast, non-reentrant gradient checkpointing with inputs that require grad, 8-bit AdamW where
bitsandbytes has CUDA (else AdamW, recorded), the loss on every token of random rows of --tokens tokens.

Per shape: peak memory (torch.cuda.max_memory_allocated: what the plan estimates; CUDA context and the
allocator's cache excluded), the second step's wall time (the first pays for cuBLAS set-up), model-FLOPs
utilisation = 4 x params x tokens / (step time x the GPU's dense bf16 peak, conf/throughput.yaml), and the plan's
estimate (grasp_bench.plan.memory) with its ratio to the measured peak. Goals (issue 26): the plan within 15% of
the measured peak, the 32B step within 80 GB, MFU >= 40% at 7B. A shape that runs out of memory is recorded as
such, with the peak reached.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from grasp_bench.layout import CONF_DIR  # noqa: E402
from grasp_bench.models import lora_config  # noqa: E402
from grasp_bench.plan import GB, memory, throughput  # noqa: E402

SHAPES = {"7b": "qwen2_5_7b_instruct", "32b": "qwen2_5_coder_32b_instruct"}
TINY = {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000, "tie_word_embeddings": False}


def model_config(shape: str):
    """The model config (LoRA, dtype, arch) of a shape; `tiny` borrows the 7B's LoRA on a 2-layer Qwen2."""
    if shape == "tiny":
        cfg = OmegaConf.load(CONF_DIR / "model" / f"{SHAPES['7b']}.yaml")
        cfg.arch, cfg.dtype = TINY, "float32"
        return cfg
    return OmegaConf.load(CONF_DIR / "model" / f"{SHAPES[shape]}.yaml")


def optimizer(params, device: str):
    if device == "cuda":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=1e-5, weight_decay=0.01), "adamw_8bit"
        except (ImportError, RuntimeError):
            pass
    return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01), "adamw_torch"


def measure(shape: str, batch: int, tokens: int, steps: int, device: str, peak_tflops: float | None) -> dict:
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = model_config(shape)
    arch = OmegaConf.to_container(cfg.arch)
    dtype = getattr(torch, cfg.dtype)
    hf_config = AutoConfig.for_model(**{k: v for k, v in arch.items() if k != "params"})
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()  # what PEFT needs under checkpointing: the embeddings' output keeps a graph
    model.config.use_cache = False
    model = get_peft_model(model, lora_config(cfg))
    opt, optim_name = optimizer([p for p in model.parameters() if p.requires_grad], device)
    rows = torch.randint(0, arch["vocab_size"], (batch, tokens), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    times, out = [], {"params": params, "optim": optim_name, "batch": batch, "tokens": tokens}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        for _ in range(steps):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast:
                loss = model(input_ids=rows, labels=rows).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        out["status"] = "ok"
    except torch.OutOfMemoryError:
        out["status"] = "out of memory"
    out["step_s"] = [round(t, 4) for t in times]
    if device == "cuda":
        out["peak_gb"] = torch.cuda.max_memory_allocated() / GB
        out["peak_reserved_gb"] = torch.cuda.max_memory_reserved() / GB
    else:  # on CPU the process's peak resident memory grew by this much (a stand-in: the test only checks it runs)
        out["peak_rss_growth_gb"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before, 0) / GB
    train = OmegaConf.create({"precision": "bf16" if device == "cuda" else "fp32", "batch_size": batch,
                              "optim": optim_name, "gradient_checkpointing": True, "sharding": "none"})
    est = memory(arch, cfg, train, tokens)
    out["plan"] = {k: round(v / GB, 3) for k, v in est.items() if k not in ("params", "lora_params")}
    out["lora_params"], out["plan_params"] = est["lora_params"], est["params"]  # the plan counts the built model
    if out.get("peak_gb"):
        out["plan_over_measured"] = round(est["total"] / GB / out["peak_gb"], 4)
    if len(times) > 1 and peak_tflops:
        out["mfu"] = round(4 * params * batch * tokens / (times[-1] * peak_tflops * 1e12), 4)
    del model, opt, rows
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="7b,32b", help="comma-separated: 7b, 32b, tiny")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", help="default: bench/results/memory_<gpu>.json")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpus = throughput()["gpus"]
    name = torch.cuda.get_device_name(0) if device == "cuda" else None
    gpu = next((k for k in gpus if name and k in name.lower()), (name or "cpu").lower().replace(" ", "_"))
    shapes = args.shape.split(",")
    if device == "cpu" and set(shapes) - {"tiny"}:
        sys.exit("bench/memory.py: the 7B and 32B shapes need a CUDA GPU; --shape tiny runs on CPU")
    tokens = args.tokens if device == "cuda" or args.tokens != 2048 else 128  # tiny on CPU: seconds
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    result = {
        "benchmark": "memory", "command": "python bench/memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": commit, "gpu": gpu, "device_name": name or platform.processor() or "cpu",
        "peak_tflops": gpus.get(gpu, {}).get("peak_tflops"), "torch": torch.__version__,
        "shapes": {},
    }
    for shape in shapes:
        result["shapes"][shape] = measure(shape, args.batch, tokens, args.steps, device, result["peak_tflops"])
        print(json.dumps({shape: result["shapes"][shape]}), flush=True)
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"memory_{gpu}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
