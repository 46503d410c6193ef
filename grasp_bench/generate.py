"""Generators sample completions for evaluation rows; they never score. Output: generations.jsonl.

`HFGenerator` runs transformers `generate` on the in-process model, so eval-time Method hooks apply.
Rows are processed in fixed batches (sorted by prompt length to limit padding); each finished batch is
appended to `generations.jsonl.partial`, so a killed run resumes after its last finished batch.

A generator with `runs_hooks = False` runs out of process (`VLLMGenerator` in grasp_bench.vllm_generate):
its `run` gets `WeightPaths` instead of a model, and the pipeline never loads the weights itself.

Sampling is the task's `sampling` block and nothing else: temperature (0 = greedy), top_p, max_new_tokens,
samples, and at least one new token (an end-of-sequence token first is not sampled: min_new_tokens=1, as the
EM papers' vLLM sampling sets min_tokens=1). No top-k cut and no repetition penalty, whatever the model's
generation_config.json says, so that every generator samples from the same distribution, unless
`sampling.from_generation_config: true` takes the model's top_k and repetition_penalty from it (as
model-organisms-for-EM samples: `model_generation_config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from grasp_bench.artifacts import PartialJsonl, int_at_least
from grasp_bench.data import plain, render_prompt


@dataclass(frozen=True)
class WeightPaths:
    """What an out-of-process generator loads: a model (hub id or directory), maybe a LoRA adapter on it."""

    model: str
    revision: str | None = None
    adapter: str | None = None  # a peft adapter directory, served on top of `model`
    dtype: str = "float32"


def model_sampling(generation_config) -> tuple[int, float]:
    """(top_k, repetition_penalty): a model's generation_config's (none set: no cut, no penalty), or (0, 1.0)."""
    if generation_config is None:
        return 0, 1.0
    return int(getattr(generation_config, "top_k", None) or 0), float(
        getattr(generation_config, "repetition_penalty", None) or 1.0)


class HFGenerator:
    runs_hooks = True  # eval-time Method hooks work with this generator

    def __init__(self, name: str = "hf", *, batch_size: int):  # the default: conf/generator/hf.yaml
        self.name, self.batch_size = name, int_at_least("generator.batch_size", batch_size, 1)

    @torch.no_grad()
    def run(self, model, tokenizer, rows: list[dict], sampling: Mapping, out: Path, seed: int) -> None:
        samples = int(sampling.get("samples", 1))
        greedy = float(sampling.get("temperature", 0.0)) == 0.0
        jobs = [(r, s) for r in rows for s in range(r.get("_samples", samples))]  # a split may set its own
        prompts = {r["id"]: render_prompt(tokenizer, r["messages"]) for r in rows}
        jobs.sort(key=lambda job: len(prompts[job[0]["id"]]))
        batches = [jobs[i:i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]

        sink = PartialJsonl(out)
        done = {(r["id"], r["sample"]) for r in sink.done()}
        model.eval()
        device = next(model.parameters()).device
        model_top_k, penalty = model_sampling(model.generation_config if sampling.get("from_generation_config")
                                              else None)
        for b, batch in enumerate(tqdm(batches, desc=f"generate:{self.name}", unit="batch")):
            if all((r["id"], s) in done for r, s in batch):
                continue
            enc = tokenizer([prompts[r["id"]] for r, _ in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            torch.manual_seed(seed * 100_003 + b)  # per batch, so a resumed run samples the same
            # top_k=0 and repetition_penalty=1: transformers would otherwise fill them from its defaults
            # (top-50) or the model's generation_config; the task's sampling block is the whole rule
            kwargs = dict(do_sample=False) if greedy else dict(
                do_sample=True, temperature=float(sampling["temperature"]), top_p=float(sampling.get("top_p", 1.0)),
                top_k=model_top_k)
            out_ids = model.generate(**enc, max_new_tokens=int(sampling["max_new_tokens"]), min_new_tokens=1,
                                     pad_token_id=tokenizer.pad_token_id, repetition_penalty=penalty, **kwargs)
            texts = tokenizer.batch_decode(out_ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            sink.append(  # a batch cut off by a kill is generated again whole (same seed), its kept rows not again
                {**plain(r), "sample": s, "completion": text, "generator": self.name, "seed": seed}
                for (r, s), text in zip(batch, texts) if (r["id"], s) not in done
            )
        sink.finish()
