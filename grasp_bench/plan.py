"""`grasp-bench-plan`: what a run or a sweep will cost and whether it is sound, in seconds and without weights.

    grasp-bench-plan task=insecure_code model=qwen2_5_coder_32b_instruct --tokenizer embedded
    grasp-bench-plan sweep=tradeoff task=toy_rude          # every job of the sweep
    grasp-bench-plan -m method=sft,grasp seed=0,1,2

It takes `grasp-bench`'s arguments (`--config-dir DIR` included) and expands them into jobs with Hydra's own
sweeper (the basic one or `method_grid`, as the config names), so it sees exactly the jobs a run would. Every
job's values are checked first, as `grasp-bench` checks them (grasp_bench.validate.check_config, and the method's,
generator's and judge's own knobs): a bad one is one line and exit code 2 before any job is planned. Nothing is
trained or generated and no weights are read: the task's files are built (as a run would build them), the
training set is tokenised with the model's tokenizer, and the run directories under `paths.runs` are read. For
each job it prints:

- training rows, tokens, answer tokens (the tokens with a loss), rows cut at `train.max_length`, rows left with
  no answer token, the share of answer tokens lost, optimizer steps;
- the useful-token share per batching mode (`train.batching`; the one this run resolves to is marked): the
  training set's tokens over the token positions computed for one epoch at `train.batch_size` (seed `seed`):
  `padded` (random order, each batch padded to its longest row), `length_grouped` (the Trainer's
  LengthGroupedSampler, padded), `padding_free` (rows concatenated: 1);
- evaluation: prompts x samples x max new tokens per split, and the judge requests (rows x scorers; a rule judge
  scores locally and sends none);
- a GPU-memory estimate for training (below);
- for each stage of the run (and of the naive SFT run it needs, if any): done (skipped), to run, or made with
  another config (the run would stop).

Tokenizers: `model.path` (a hub id is read from the local HF cache; HF_HUB_OFFLINE is set), or `--tokenizer`
(a directory, hub id, or `embedded` for the embedded SmolLM2 tokenizer) as a stand-in: counts then are the
stand-in's. The embedded and tiny models' tokenizer is read from the GGUF without converting any weights.

GPU memory estimate (bytes; one process, train.batch_size rows; no activation checkpointing, which the pipeline
does not enable), from the model's config.json (hidden size h, layers L, attention heads, key/value heads with
head dim d_h, intermediate size I, vocab V, tied embeddings, dtype) or `--model-config`:

    weights     = P x bytes(model.dtype)       P = V*h*(1 or 2 if untied) + L*(h*(q+2*kv) + q*h + 3*h*I + 2*h) + h,
                                               + L*(q+2*kv) with q/k/v biases (Qwen2),
                                               q = heads*d_h, kv = kv_heads*d_h
    lora        = 4 * P_lora                   P_lora = r * (in + out) summed over model.lora.target_modules
                                               in every layer (fp32 adapter weights)
    gradients   = 4 * P_lora
    optimizer   = 8 * P_lora                   AdamW, two fp32 moments (2 * P_lora for 8-bit AdamW)
    activations = b * T * L * (8*h + 2*kv + 4*I) * a  +  b * T * V * (a + 8)
                                               b = train.batch_size, T = the longest training row after the cut
                                               (the batch that holds it is padded to it), a = 2 bytes under bf16
                                               autocast (train.precision bf16, or auto: a GPU with bf16), 4 in
                                               fp32: per layer and token the saved inputs of the
                                               norms, q/k/v/o and the MLP (gate, up, their product), the
                                               attention output; the logits in a bytes plus their fp32 copy and
                                               gradient (8 bytes)

It leaves out the CUDA context, the allocator's fragmentation and temporary buffers: read it as a lower bound
good to about 20% on the activations.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from grasp_bench.artifacts import BadInput, check_json
from grasp_bench.jobs import expand, job_error, typed_overrides

EMBEDDED = "embedded:smollm2-135m-instruct"
MODES = ("padded", "length_grouped", "padding_free")  # the batching modes `auto` resolves among
GB = 1e9
ARCH_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "num_attention_heads")


# ---------------------------------------------------------------- tokenizer, model config


@cache
def tokenizer(spec: str, revision: str | None, cache_dir: str):
    """A tokenizer from a model path spec (hub id, directory, embedded:..., tiny:...), never loading weights."""
    from grasp_bench.models import load_tokenizer

    try:
        return load_tokenizer(OmegaConf.create({"path": spec, "revision": revision}), cache_dir)
    except (OSError, ValueError) as e:
        raise BadInput(f"tokenizer '{spec}': {str(e).splitlines()[0]} (offline: pass --tokenizer <directory> "
                       f"or --tokenizer embedded as a stand-in)") from None


def model_config(spec: str, revision: str | None, cache_dir: str, override: str | None) -> dict | None:
    """The model's config.json as a dict, from `override` (a file or directory), the path, or the HF cache."""
    if override:
        path = Path(override).expanduser()
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise BadInput(f"--model-config '{override}': no config.json there")
        arch = check_json(path)
        arch = arch.get("text_config", arch) if isinstance(arch, dict) else arch
        missing = [k for k in ARCH_KEYS if not isinstance(arch, dict) or not isinstance(arch.get(k), int)]
        if missing:
            raise BadInput(f"{path}: not a model's config.json (no integer {', '.join(missing)})")
        return arch
    from transformers import AutoConfig

    from grasp_bench.models import resolve_path, tokenizer_source

    # a tiny model's config exists once it is built (random weights, a second); the others' without their weights
    source, kwargs = (resolve_path(spec, cache_dir), {}) if spec.startswith("tiny:") else tokenizer_source(spec, cache_dir)
    try:
        return AutoConfig.from_pretrained(source, revision=revision, **kwargs).to_dict()
    except (OSError, ValueError):
        return None


def memory(arch: dict, model_cfg: DictConfig, train: DictConfig, longest_row: int) -> dict[str, float]:
    """The module docstring's GPU-memory estimate, in bytes per part."""
    arch = arch.get("text_config", arch)
    h, layers, inter, vocab = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"], arch["vocab_size"]
    heads = arch["num_attention_heads"]
    head_dim = arch.get("head_dim") or h // heads
    q, kv = heads * head_dim, arch.get("num_key_value_heads", heads) * head_dim
    tied = arch.get("tie_word_embeddings", False)
    bias = arch.get("attention_bias", arch.get("model_type") == "qwen2")  # Qwen2 has q/k/v biases
    params = vocab * h * (1 if tied else 2) + layers * (h * (q + 2 * kv) + q * h + 3 * h * inter + 2 * h) + h
    params += layers * (q + 2 * kv) * bias
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    unknown = set(model_cfg.lora.target_modules) - set(shapes)
    if unknown:
        raise BadInput(f"model.lora.target_modules {sorted(unknown)}: plan knows the shapes of {sorted(shapes)} only")
    lora = layers * sum(model_cfg.lora.r * sum(shapes[m]) for m in model_cfg.lora.target_modules)
    dtype_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}[model_cfg.dtype]
    act = 4 if train.precision == "fp32" else 2  # auto: bf16 on a GPU that has it
    from grasp_bench.train import BNB_8BIT

    tokens = train.batch_size * longest_row
    parts = {
        "weights": params * dtype_bytes, "lora": 4 * lora, "gradients": 4 * lora,
        "optimizer": (2 if train.optim in BNB_8BIT else 8) * lora,
        "activations": tokens * layers * (8 * h + 2 * kv + 4 * inter) * act + tokens * vocab * (act + 8),
    }
    return {"params": params, "lora_params": lora, **parts, "total": sum(parts.values())}


# ---------------------------------------------------------------- figures


def optimizer_steps(rows: int, train: DictConfig) -> int:
    """As transformers' Trainer counts them (one process)."""
    if train.max_steps > 0:
        return int(train.max_steps)
    batches = math.ceil(rows / train.batch_size)
    per_epoch = max(batches // train.grad_accum + int(batches % train.grad_accum > 0), 1)
    return math.ceil(train.epochs * per_epoch)


def useful_share(lengths: list[int], batch_size: int, seed: int, batching: str = "padded") -> float:
    """Real tokens over the token positions computed for one epoch of `lengths`, batched as a (resolved) batching
    mode batches them: `padded`: in a random order (seeded) and padded to each batch's longest row;
    `length_grouped`: in the order of the Trainer's LengthGroupedSampler, padded; `padding_free`: concatenated."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    if not lengths:
        return 0.0
    if batching == "padding_free":
        return 1.0
    g = torch.Generator().manual_seed(seed)
    order = (list(LengthGroupedSampler(batch_size, lengths=lengths, generator=g)) if batching == "length_grouped"
             else torch.randperm(len(lengths), generator=g).tolist())
    batches = [[lengths[j] for j in order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
    return sum(lengths) / sum(len(b) * max(b) for b in batches)


@cache
def _lengths(tok_key: tuple, path: str, limit: int | None) -> tuple[tuple[int, int], ...]:
    from grasp_bench.data import chat_ids, load_rows

    tok = tokenizer(*tok_key)
    return tuple((len(p), len(a)) for p, a in (chat_ids(tok, r["messages"]) for r in load_rows(path, limit, train=True)))


def stage_states(cfg: DictConfig, run=None) -> dict[str, str]:
    """Each stage of the run: done (a run skips it), to run, forced, or made with another config."""
    from grasp_bench.pipeline import Run

    run = run or Run(cfg)
    states = {}
    for name in cfg.stages:
        if name == "train" and run.method.starts_from == "untrained":
            states[name] = "none (evaluates the base model)"
            continue
        stage = run.stage(name)
        try:
            states[name] = "done, skipped" if stage.is_done() else ("forced" if stage.force else "to run")
        except BadInput as e:
            states[name] = f"CONFLICT: {e}"
    return states


def check_job(cfg: DictConfig):
    """grasp-bench's checks of a job's values, none that reads the model or a file: the core's knobs
    (grasp_bench.validate.check_config), and the method's, generator's and judge's own (checked as the run builds
    them). Returns the run, built."""
    from grasp_bench.pipeline import STAGES, Run
    from grasp_bench.validate import check_config

    check_config(cfg, STAGES)
    return Run(cfg)


def plan_job(cfg: DictConfig, tokenizer_spec: str | None = None, model_config_path: str | None = None,
             run=None) -> dict:
    """Every figure of one job (see the module docstring); `run`: the job's run as check_job built it."""
    from grasp_bench.data import Truncation, build_task_files, load_eval
    from grasp_bench.device import resolve_batching
    from grasp_bench.llm_judge import LLMJudge
    from grasp_bench.pipeline import Run, ensure_reference_cfg
    from grasp_bench.train import effective_optim

    run = check_job(cfg) if run is None else run
    cache_dir = str(Path(cfg.paths.cache).expanduser())
    build_task_files(cfg.task)
    spec = cfg.model.path if tokenizer_spec is None else (EMBEDDED if tokenizer_spec == "embedded" else tokenizer_spec)
    tok_key = (spec, cfg.model.get("revision") if tokenizer_spec is None else None, cache_dir)
    out: dict = {"run": str(run.dir), "tokenizer": spec, "starts_from": run.method.starts_from}
    train = cfg.train
    if run.method.starts_from == "base":
        batching = resolve_batching(train.batching)
        pairs = _lengths(tok_key, str(cfg.task.train.path), cfg.task.train.get("limit"))
        cut = Truncation.of(list(pairs), train.max_length)
        kept = [min(p + a, train.max_length) for p, a in pairs]
        steps = optimizer_steps(cut.rows, train)
        out["train"] = {
            "rows": cut.rows, "tokens": cut.tokens, "answer_tokens": cut.answer_tokens, "max_length": train.max_length,
            "truncated": cut.truncated, "no_answer": cut.no_answer, "answer_lost_share": cut.answer_lost_share,
            "longest_row": max(p + a for p, a in pairs) if pairs else 0, "steps": steps,
            "rows_per_step": train.batch_size * train.grad_accum, "optim": train.optim,
            "optim_here": effective_optim(train.optim),
            "batching": batching,
            "useful_share": {m: useful_share(kept, train.batch_size, cfg.seed, m) for m in MODES},
        }
        arch = model_config(cfg.model.path, cfg.model.get("revision"), cache_dir, model_config_path)
        out["memory"] = memory(arch, cfg.model, train, max(kept, default=0)) if arch else None
    splits, sampling = {}, cfg.task.sampling
    for name, rows in load_eval(cfg.task).items():
        samples = int(cfg.task.splits[name].get("samples") or sampling.samples)
        splits[name] = {"prompts": len(rows), "samples": samples, "max_new_tokens": int(sampling.max_new_tokens),
                        "scorers": len(cfg.task.splits[name].scorers)}
    remote = isinstance(run.judge, LLMJudge)  # an LLM judge sends one request per row and scorer; rules score locally
    out["eval"] = splits
    out["judge"] = {"name": cfg.judge.name, "requests": sum(s["prompts"] * s["samples"] * s["scorers"]
                                                             for s in splits.values()) if remote else 0}
    out["stages"] = stage_states(cfg, run)
    if run.method.needs_reference or run.method.starts_from == "reference":
        ref = ensure_reference_cfg(cfg)
        ref_run = Run(ref)
        out["reference"] = {"run": str(ref_run.dir), "train": stage_states(ref, ref_run)["train"]}
    return out


# ---------------------------------------------------------------- printing


def _n(x: float) -> str:
    return f"{x:,.0f}"


def format_job(i: int, job: DictConfig, p: dict) -> str:
    m = job.method
    lines = [f"job {i}: task={job.task.name} model={job.model.name} method={m.name} strength={float(m.strength):g} "
             f"seed={job.seed}", f"  run: {p['run']}"]
    t = p.get("train")
    if t:
        lines += [
            f"  train ({p['tokenizer']} tokenizer): {_n(t['rows'])} rows, {_n(t['tokens'])} tokens, "
            f"{_n(t['answer_tokens'])} answer tokens; longest row {_n(t['longest_row'])} tokens",
            f"    at max_length {t['max_length']}: {_n(t['truncated'])} rows truncated, {_n(t['no_answer'])} rows with no "
            f"answer token left, {t['answer_lost_share']:.1%} of answer tokens lost",
            f"    {_n(t['steps'])} optimizer steps of {t['rows_per_step']} rows, optim {t['optim']}"
            + (f" ({t['optim_here']} on this machine: no CUDA bitsandbytes)" if t["optim_here"] != t["optim"] else "")
            + "; useful tokens per batching: " + ", ".join(
                f"{m} {share:.1%}" + (" (this run)" if m == t["batching"] else "") for m, share in t["useful_share"].items()),
        ]
        mem = p.get("memory")
        if mem:
            parts = ", ".join(f"{k} {mem[k] / GB:.1f}" for k in ("weights", "lora", "gradients", "optimizer",
                                                                  "activations"))
            lines.append(f"    GPU memory ~{mem['total'] / GB:.1f} GB ({parts}; {mem['params'] / 1e9:.2f}B params, "
                         f"{mem['lora_params'] / 1e6:.1f}M LoRA)")
        else:
            lines.append("    GPU memory: unknown (no config.json for the model here; pass --model-config)")
    elif p["starts_from"] == "untrained":
        lines.append("  train: none (evaluates the base model)")
    else:
        lines.append("  train: none of its own (starts from the naive SFT run)")
    total = 0
    for name, s in p["eval"].items():
        gens = s["prompts"] * s["samples"]
        total += gens
        lines.append(f"  eval {name}: {s['prompts']} prompts x {s['samples']} samples x {s['max_new_tokens']} max new "
                     f"tokens = {_n(gens)} generations, <= {_n(gens * s['max_new_tokens'])} tokens")
    j = p["judge"]
    lines.append(f"  judge {j['name']}: {_n(j['requests'])} requests" + ("" if j["requests"] else " (scores locally)"))
    lines.append("  stages: " + "; ".join(f"{k} {v}" for k, v in p["stages"].items()))
    if "reference" in p:
        lines.append(f"  needs the naive SFT run {p['reference']['run']}: train {p['reference']['train']}")
    return "\n".join(lines)


def format_total(plans: list[dict]) -> str:
    """What the jobs still have to do: stages already done are not counted."""
    todo = lambda p, stage: not p["stages"].get(stage, "").startswith(("done", "none"))
    steps = sum(p["train"]["steps"] for p in plans if "train" in p and todo(p, "train"))
    trained = sum(1 for p in plans if "train" in p and todo(p, "train"))
    gens = sum(s["prompts"] * s["samples"] for p in plans if todo(p, "generate") for s in p["eval"].values())
    requests = sum(p["judge"]["requests"] for p in plans if todo(p, "judge"))
    runs = {p["run"] for p in plans}
    extra = {p["reference"]["run"] for p in plans if "reference" in p} - runs
    peak = max((p["memory"]["total"] for p in plans if p.get("memory")), default=0)
    return (f"total to do: {trained} training run(s), {_n(steps)} optimizer steps; {_n(gens)} generations; "
            f"{_n(requests)} judge requests" + (f"; peak GPU memory ~{peak / GB:.1f} GB" if peak else "")
            + (f"; plus {len(extra)} naive SFT run(s) outside the sweep, trained on demand" if extra else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="grasp-bench-plan", description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments: grasp-bench's Hydra overrides (key=value, sweep=...).")
    parser.add_argument("-m", "--multirun", action="store_true", help="expand sweeps, as grasp-bench -m")
    parser.add_argument("-cd", "--config-dir", help="a folder of the user's own configs, as grasp-bench --config-dir")
    parser.add_argument("--tokenizer", help="a stand-in tokenizer: a directory, hub id, or 'embedded'")
    parser.add_argument("--model-config", help="the model's config.json (file or directory) for the memory estimate")
    args, overrides = parser.parse_known_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        bad = [o for o in overrides if o.startswith("-")]
        if bad:
            raise BadInput(f"unknown option {bad[0]}; see grasp-bench-plan --help")
        jobs = expand(overrides, args.multirun, config_dir=args.config_dir)
        named, runs = typed_overrides(jobs), []
        for i, job in enumerate(jobs):  # every job's values, before any is planned (as grasp-bench validates)
            try:
                runs.append(check_job(job))
            except BadInput as e:
                raise job_error(i, named, e) from None
        print(f"{len(jobs)} job(s)", flush=True)
        plans = []
        for i, (job, built) in enumerate(zip(jobs, runs)):
            plans.append(plan_job(job, args.tokenizer, args.model_config, built))
            print(format_job(i, job, plans[-1]), flush=True)
        if len(plans) > 1:
            print(format_total(plans))
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
