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
- GPU memory per GPU for training and for generation, whether the job fits its GPU (a WARNING line if not),
  the judge's tokens and dollars, and the wall time per stage with the GPU-hours (below);
- for each stage of the run (and of the naive SFT run it needs, if any): done (skipped), to run, or made with
  another config (the run would stop).

Tokenizers: `model.path` (a hub id is read from the local HF cache; HF_HUB_OFFLINE is set), or `--tokenizer`
(a directory, hub id, or `embedded` for the embedded SmolLM2 tokenizer) as a stand-in: counts then are the
stand-in's. The embedded and tiny models' tokenizer is read from the GGUF without converting any weights.

Architecture figures (hidden size h, layers L, attention heads and key/value heads of head dim d_h, intermediate
size I, vocab V, tied embeddings): `--model-config`, else the model config's pinned `arch` block (the shipped
hub models carry one, from their config.json), else the config.json in the HF cache.

Training memory (bytes, one process of train.batch_size rows; world size W = --world-size, $WORLD_SIZE or 1):

    weights     = P x bytes(model.dtype)       P = V*h*(1 or 2 if untied) + L*(h*(q+2*kv) + q*h + 3*h*I + 2*h) + h,
                                               + L*(q+2*kv) with q/k/v biases (Qwen2), q = heads*d_h, kv = kv_heads*d_h
                  model.quantization nf4: the decoder matrices at 0.5 B + an fp32 absmax per 64 weights;
                  int8: 1 B + an fp32 scale per output row; embeddings, lm_head, norms, biases in model.dtype
    lora        = 4 * P_lora                   P_lora = r * (in + out) summed over model.lora.target_modules
                                               in every layer (fp32 adapter weights)
    gradients   = 4 * P_lora
    optimizer   = 8 * P_lora                   AdamW, two fp32 moments (2 * P_lora for 8-bit AdamW)
    train.sharding fsdp: weights / W, plus two gathered decoder layers (the one computed and the prefetched next)
                  and the output head (kept gathered through the step) in model.dtype; the adapter, its gradients
                  and optimizer state are whole on every process (transformers shards the base as it loads, the
                  LoRA weights added after stay replicated)
    activations = L * A_layer  +  b * T * V * (a + 8)         A_layer = b * T * (8*h + 2*kv + 4*I) * a
                  train.gradient_checkpointing: b * T * L * h * a (each layer's input) + A_layer (one layer
                  recomputed at a time) + the same logits term
                                               b = train.batch_size, T = the longest training row after the cut
                                               (the batch that holds it is padded to it), a = 2 bytes under bf16
                                               autocast (train.precision bf16, or auto: a GPU with bf16), 4 in
                                               fp32: per layer and token the saved inputs of the
                                               norms, q/k/v/o and the MLP (gate, up, their product), the
                                               attention output; the logits in a bytes plus their fp32 copy and
                                               gradient (8 bytes)

Generation memory: generator=hf: weights + LoRA (model.dtype) + the KV cache of generator.batch_size rows of
S tokens (S = the longest prompt + max_new_tokens; 2*L*kv*bytes(model.dtype) a token) + the last logits.
generator=vllm: its budget, gpu_memory_utilization x the GPU's memory, less the weights, the LoRA, its profiling
activations and CUDA graphs (conf/throughput.yaml), is the KV cache; the plan prints the sequences of S tokens
it holds at once beside those one llm.generate call asks for (batch_size prompts x samples).

The GPU: gpu.name / gpu.memory_gb (a SLURM profile sets them), else this machine's CUDA device. A job fits when
each estimate is under 95% of the GPU's memory less 1 GB (the CUDA context, cuBLAS workspaces, fragmentation);
where the GPU is known, `grasp-bench` refuses a job that does not (cli.validate_jobs -> check_fits).

Judge: requests = generations x LLM scorers (rule scorers score locally); input tokens between the filled
prompts with empty answers and with every answer at max_new_tokens (in the plan's tokenizer, not the judge
model's), one output token a request; dollars at judge.price_per_mtok.

Wall time on the GPU (conf/throughput.yaml: datasheet peaks, and figures marked measured or projected):
training 4*P FLOPs per token position computed (forward, and the backward through the frozen weights; the
checkpointing recompute is not model FLOPs) at the training MFU (bench/results/memory_<gpu>.json's measured
median where it exists); generation reads the weights and half the KV cache once per decoding step at a share
of the GPU's bandwidth, every sample running to max_new_tokens (an upper bound); judging at `concurrency`
requests of the table's latency, or the `tpm` budget if slower. GPU-hours: training and generation x W.
Without a GPU (none named, no CUDA device, no SLURM constraint naming one), the wall time here: the embedded
model's training and generation rates measured on this project's 2-core CPU machine at one torch thread
(bench/results/train.json, generate.json), scaled by parameter count, every sample running to max_new_tokens.

The memory estimate leaves out the CUDA context, the allocator's fragmentation and temporary buffers: read it as
good to about 20% on the activations (bench/memory.py measures it against a real step).
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
from grasp_bench.jobs import expand, job_error, launcher_setting, typed_overrides
from grasp_bench.layout import CONF_DIR

EMBEDDED = "embedded:smollm2-135m-instruct"
MODES = ("padded", "length_grouped", "padding_free")  # the batching modes `auto` resolves among
GB = 1e9
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
USABLE_SHARE, RESERVE_GB = 0.95, 1.0  # a job fits a GPU when its estimate is under 95% of it less 1 GB
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


def shape(arch: dict) -> dict:
    """The figures the estimates use, from a config.json-shaped dict (the model's, `--model-config`, or the model
    config's pinned `arch` block)."""
    arch = arch.get("text_config", arch)
    h, layers, inter, vocab = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"], arch["vocab_size"]
    heads = arch["num_attention_heads"]
    head_dim = arch.get("head_dim") or h // heads
    q, kv = heads * head_dim, arch.get("num_key_value_heads") or heads
    kv *= head_dim
    tied = bool(arch.get("tie_word_embeddings", False))
    bias = bool(arch.get("attention_bias", arch.get("model_type") == "qwen2"))  # Qwen2 has q/k/v biases
    linear = layers * (h * (q + 2 * kv) + q * h + 3 * h * inter)  # the decoder's matrices: what quantisation packs
    params = vocab * h * (1 if tied else 2) + linear + layers * 2 * h + h + layers * (q + 2 * kv) * bias
    return {"h": h, "layers": layers, "inter": inter, "vocab": vocab, "q": q, "kv": kv, "params": params,
            "linear": linear, "layer_params": linear // layers,
            "shapes": {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                       "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}}


def lora_params(s: dict, model_cfg: DictConfig) -> int:
    unknown = set(model_cfg.lora.target_modules) - set(s["shapes"])
    if unknown:
        raise BadInput(f"model.lora.target_modules {sorted(unknown)}: plan knows the shapes of {sorted(s['shapes'])} "
                       f"only")
    return s["layers"] * sum(model_cfg.lora.r * sum(s["shapes"][m]) for m in model_cfg.lora.target_modules)


def weight_bytes(s: dict, model_cfg: DictConfig) -> float:
    """The base model's weights on the GPU: model.dtype, or its decoder matrices packed by bitsandbytes."""
    dtype_bytes = DTYPE_BYTES[model_cfg.dtype]
    quant = model_cfg.get("quantization") or "none"
    if quant == "none":
        return s["params"] * dtype_bytes
    rest = (s["params"] - s["linear"]) * dtype_bytes  # embeddings, lm_head, norms, biases stay in model.dtype
    if quant == "nf4":  # 4 bits a weight and one fp32 absmax per block of 64 (no double quantisation)
        return rest + s["linear"] * (0.5 + 4 / 64)
    if quant == "int8":  # LLM.int8: one byte a weight and one fp32 scale per output row
        rows = s["layers"] * sum(out for _, out in s["shapes"].values())
        return rest + s["linear"] + 4 * rows
    raise BadInput(f"model.quantization={quant}: expected none, nf4 or int8")


def job_arch(cfg: DictConfig, model_config_path: str | None = None) -> dict | None:
    """The model's architecture figures: `--model-config`, else the model config's pinned `arch` block, else the
    config.json in the HF cache (a tiny model's once built); None where none is at hand."""
    if model_config_path is None and cfg.model.get("arch") is not None:
        arch = OmegaConf.to_container(cfg.model.arch)
        missing = [k for k in ARCH_KEYS if not isinstance(arch.get(k), int)]
        if missing:
            raise BadInput(f"model.arch: no integer {', '.join(missing)} (the figures of the model's config.json)")
        return arch
    cache_dir = str(Path(cfg.paths.cache).expanduser())
    return model_config(cfg.model.path, cfg.model.get("revision"), cache_dir, model_config_path)


def memory(arch: dict, model_cfg: DictConfig, train: DictConfig, longest_row: int, world_size: int = 1
           ) -> dict[str, float]:
    """The module docstring's GPU-memory estimate for one training process, in bytes per part."""
    s = shape(arch)
    h, layers, inter, vocab, kv = s["h"], s["layers"], s["inter"], s["vocab"], s["kv"]
    lora = lora_params(s, model_cfg)
    act = 4 if train.precision == "fp32" else 2  # auto: bf16 on a GPU that has it
    from grasp_bench.distributed import sharding
    from grasp_bench.train import BNB_8BIT

    sharded = sharding(train) != "none"
    shards = max(world_size, 1) if sharded else 1
    weights = weight_bytes(s, model_cfg) / shards
    if sharded and shards > 1:  # FSDP gathers one decoder layer to compute it, prefetches the next, keeps the head
        weights += (2 * s["layer_params"] + vocab * h) * DTYPE_BYTES[model_cfg.dtype] * (shards - 1) / shards
    tokens = train.batch_size * longest_row
    per_layer = tokens * (8 * h + 2 * kv + 4 * inter) * act  # every saved input of one decoder layer
    if train.get("gradient_checkpointing"):  # the layer inputs are kept; one layer is recomputed at a time
        activations = tokens * layers * h * act + per_layer
    else:
        activations = layers * per_layer
    activations += tokens * vocab * (act + 8)  # the logits, their fp32 copy and its gradient
    parts = {
        "weights": weights, "lora": 4 * lora, "gradients": 4 * lora,
        "optimizer": (2 if train.optim in BNB_8BIT else 8) * lora, "activations": activations,
    }
    return {"params": s["params"], "lora_params": lora, **parts, "total": sum(parts.values())}


def generation_memory(arch: dict, model_cfg: DictConfig, generator: DictConfig, sequence: int, requested: int,
                      gpu_bytes: float | None) -> dict:
    """GPU memory of the generate stage (module docstring): `sequence` tokens per row (the longest prompt plus
    max_new_tokens), `requested` sequences per generate call (the generator's batch; vLLM: times the samples)."""
    s = shape(arch)
    dtype_bytes = DTYPE_BYTES[model_cfg.dtype]
    kv_token = 2 * s["layers"] * s["kv"] * dtype_bytes  # keys and values of every layer, per token
    weights = weight_bytes(s, model_cfg)
    lora = lora_params(s, model_cfg) * dtype_bytes
    out = {"generator": generator.name, "weights": weights, "lora": lora, "sequence": sequence,
           "kv_per_token": kv_token}
    if generator.name != "vllm":
        batch = int(generator.batch_size)
        out.update(batch=batch, kv=batch * sequence * kv_token, logits=batch * s["vocab"] * (dtype_bytes + 8))
        out["total"] = weights + lora + out["kv"] + out["logits"]
        return out
    figures = throughput()["generate"]["vllm"]
    util = float(generator.gpu_memory_utilization)
    act = figures["activation_tokens"] * (2 * s["inter"] + 4 * s["h"]) * dtype_bytes
    graphs = 0.0 if generator.get("enforce_eager") else figures["cuda_graphs_gb"] * GB
    out.update(utilization=util, activations=act, graphs=graphs, requested=requested)
    if gpu_bytes:
        budget = util * gpu_bytes
        kv = budget - weights - lora - act - graphs
        out.update(budget=budget, kv=kv, kv_tokens=max(int(kv // kv_token), 0),
                   sequences=max(int(kv // (kv_token * sequence)), 0))
    out["total"] = out.get("budget")
    return out


def judge_cost(requests: int, prompt_tokens: int, answer_tokens: int, judge: DictConfig) -> dict:
    """Input tokens between empty answers and answers of max_new_tokens; one output token a request; dollars at
    the judge config's `price_per_mtok` (none: no price, e.g. a local `vllm serve`)."""
    price = judge.get("price_per_mtok")
    out = {"requests": requests, "input_min": prompt_tokens, "input_max": prompt_tokens + answer_tokens,
           "output": requests}
    if price:
        usd = lambda tokens_in: (tokens_in * float(price.input) + requests * float(price.output)) / 1e6
        out.update(usd_min=usd(out["input_min"]), usd_max=usd(out["input_max"]), price=dict(price))
    return out


@cache
def throughput() -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "throughput.yaml"))


def gpu_spec(cfg: DictConfig) -> dict:
    """The GPU a job runs on: `gpu.name` / `gpu.memory_gb` as configured, else this machine's CUDA device, else
    the GPU types a SLURM profile's `constraint` names (the smallest); name and memory None where nothing says."""
    gpus = throughput()["gpus"]
    name = OmegaConf.select(cfg, "gpu.name", default=None)
    memory_gb = OmegaConf.select(cfg, "gpu.memory_gb", default=None)
    if name is None and memory_gb is None:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            name = next((k for k in gpus if k in props.name.lower()), props.name)
            memory_gb = props.total_memory / GB
    if name is None and memory_gb is None:
        named = [k for k in gpus if k in str(launcher_setting(cfg, "constraint") or "").lower()]
        name = min(named, key=lambda k: gpus[k]["memory_gb"], default=None)
    if name is not None and name not in gpus and memory_gb is None:
        raise BadInput(f"gpu.name={name}: not in conf/throughput.yaml ({', '.join(gpus)}); set gpu.memory_gb too")
    if memory_gb is None and name in gpus:
        memory_gb = gpus[name]["memory_gb"]
    return {"name": name, "memory_gb": None if memory_gb is None else float(memory_gb), **gpus.get(name, {})}


def usable_bytes(memory_gb: float) -> float:
    """What a job may plan to use of a GPU: the CUDA context, cuBLAS workspaces and the allocator's fragmentation
    are outside the estimate."""
    return memory_gb * GB * USABLE_SHARE - RESERVE_GB * GB


BENCH_RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"


def measured_mfu(gpu: str | None) -> float | None:
    """The median training MFU bench/memory.py measured on this GPU (bench/results/memory_<gpu>.json), if any."""
    path = BENCH_RESULTS / f"memory_{gpu}.json"
    if gpu is None or not path.is_file() or "tiny" in path.name:
        return None
    shapes = check_json(path).get("shapes", {})
    values = sorted(r["mfu"] for r in shapes.values() if isinstance(r, dict) and r.get("mfu"))
    return values[len(values) // 2] if values else None



def cpu_rates() -> dict | None:
    """The embedded model's rates measured on this project's CPU machine: training useful tokens/s
    (bench/results/train.json, grasp-bench's loop, padded) and HF generation new tokens/s (generate.json), with the
    torch threads each used; None where a file is missing."""
    train, generate = BENCH_RESULTS / "train.json", BENCH_RESULTS / "generate.json"
    if not (train.is_file() and generate.is_file()):
        return None
    t, g = check_json(train), check_json(generate)
    try:
        measured = OmegaConf.load(CONF_DIR / "model" / f"{t['model']}.yaml")  # the model both files measured
        hf = g["results"]["hf"]
        return {"params": int(measured.arch.params),
                "train_tokens_s": float(t["steps"]["padded"]["grasp_bench"]["useful_tokens_per_s"]),
                "train_threads": t["machine"]["torch_threads"], "generate_tokens_s": float(hf["tokens_per_s"]),
                "generate_batch": hf["batch_size"], "generate_threads": hf["torch_threads"]}
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise BadInput(f"{train} / {generate}: not the benchmark's results (no {e}); rerun bench/train.py and "
                       "bench/generate.py") from None


def epochs_run(t: dict, cfg: DictConfig) -> float:
    """Passes over the training rows: train.epochs, or what train.max_steps makes of them."""
    return t["steps"] * t["rows_per_step"] / max(t["rows"], 1) if cfg.train.max_steps > 0 else float(cfg.train.epochs)


def cpu_wall_time(plan: dict, params: int, cfg: DictConfig) -> dict | None:
    """Hours per stage on a CPU: the embedded model's measured rates (cpu_rates) scaled by parameter count; every
    sample runs to max_new_tokens (an upper bound)."""
    rates = cpu_rates()
    if rates is None:
        return None
    scale = params / rates["params"]
    out: dict = {"gpu": "cpu", "rates": rates}
    t = plan.get("train")
    if t:
        out["train_h"] = t["tokens"] * epochs_run(t, cfg) * scale / rates["train_tokens_s"] / 3600
    if plan.get("generations"):
        out["generate_h"] = plan["generations"] * plan["max_new_tokens"] * scale / rates["generate_tokens_s"] / 3600
    out["gpu_hours"] = 0.0
    return out


def wall_time(plan: dict, arch: dict, cfg: DictConfig, gpu: dict, world_size: int) -> dict | None:
    """Hours per stage on `gpu` (conf/throughput.yaml; module docstring); without a GPU (gpu_spec names none) the
    CPU estimate; None for a GPU without figures."""
    if "peak_tflops" not in gpu:
        if gpu.get("name") is None and gpu.get("memory_gb") is None:
            return cpu_wall_time(plan, shape(arch)["params"], cfg)
        return None
    table, s = throughput(), shape(arch)
    out: dict = {"gpu": gpu["name"]}
    t = plan.get("train")
    if t:
        mfu = measured_mfu(gpu["name"])
        out["mfu"], out["mfu_status"] = (mfu, "measured") if mfu else (table["train"]["mfu"], "projected")
        per_epoch = t["tokens"] / max(t["useful_share"][t["batching"]], 1e-9)  # token positions computed
        flops = 4 * s["params"] * per_epoch * epochs_run(t, cfg)
        out["train_h"] = flops / (out["mfu"] * gpu["peak_tflops"] * 1e12 * world_size) / 3600
    g = plan.get("generation")
    if g:
        share = table["generate"]["vllm" if g["generator"] == "vllm" else "hf"]["bandwidth_share"]
        batch = g.get("sequences", g.get("batch")) if g["generator"] == "vllm" else g["batch"]
        batch = max(min(batch or 1, plan["generations"]), 1)
        kv_read = batch * g["sequence"] / 2 * g["kv_per_token"]  # on average half the sequence is in the cache
        step_s = (g["weights"] + g["lora"] + kv_read) / (gpu["bandwidth_tbs"] * 1e12 * share)
        out["generate_h"] = math.ceil(plan["generations"] / batch) * plan["max_new_tokens"] * step_s / 3600
    j = plan["judge"]
    if j["requests"] and j.get("concurrency"):
        latency = table["judge"]["latency_s"] * j["requests"] / j["concurrency"]
        tokens = j["cost"]["input_max"] / j["tpm"] * 60 if j.get("tpm") else 0
        out["judge_h"] = max(latency, tokens) / 3600
    out["gpu_hours"] = (out.get("train_h", 0) + out.get("generate_h", 0)) * world_size
    return out


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
             run=None, world_size: int | None = None) -> dict:
    """Every figure of one job (see the module docstring); `run`: the job's run as check_job built it."""
    from grasp_bench.data import Truncation, build_task_files, load_eval, render_prompt
    from grasp_bench.device import resolve_batching
    from grasp_bench.distributed import processes
    from grasp_bench.llm_judge import LLMJudge, OpenAIJudge, fill_prompt
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
    world = world_size or processes(cfg)  # a SLURM profile's processes per run, else this process's world
    arch = job_arch(cfg, model_config_path)
    gpu = gpu_spec(cfg)
    out["gpu"], out["world_size"] = gpu, world
    if "train" in out and arch:
        out["memory"] = memory(arch, cfg.model, train, max(kept, default=0), world)
    elif "train" in out:
        out["memory"] = None
    splits, sampling = {}, cfg.task.sampling
    tok = tokenizer(*tok_key)
    judge_prompt_tokens = longest_prompt = 0
    for name, rows in load_eval(cfg.task).items():
        default = int(cfg.task.splits[name].get("samples") or sampling.samples)
        counts = [int(r.get("_samples", default)) for r in rows]
        scorers = cfg.task.splits[name].scorers
        splits[name] = {"prompts": len(rows), "samples": max(counts, default=default), "generations": sum(counts),
                        "max_new_tokens": int(sampling.max_new_tokens), "scorers": len(scorers),
                        "llm_scorers": sum("rule" not in spec for spec in scorers.values())}
        for r, n in zip(rows, counts):
            longest_prompt = max(longest_prompt, len(tok(render_prompt(tok, r["messages"]),
                                                         add_special_tokens=False)["input_ids"]))
            for spec in scorers.values():
                if "rule" not in spec:  # what the judge reads besides the answer
                    prompt = fill_prompt(OmegaConf.to_container(spec), {**r, "completion": ""})
                    judge_prompt_tokens += n * len(tok(prompt, add_special_tokens=False)["input_ids"])
    remote = isinstance(run.judge, LLMJudge)  # an LLM judge sends one request per row and scorer; rules score locally
    out["eval"] = splits
    out["generations"] = sum(s["generations"] for s in splits.values())
    out["max_new_tokens"] = int(sampling.max_new_tokens)
    requests = sum(s["generations"] * s["llm_scorers"] for s in splits.values()) if remote else 0
    answers = requests * int(sampling.max_new_tokens)
    out["judge"] = {"name": cfg.judge.name, "requests": requests, "concurrency": cfg.judge.get("concurrency"),
                    "tpm": cfg.judge.get("tpm"), "api": isinstance(run.judge, OpenAIJudge)}
    if requests:
        out["judge"]["cost"] = judge_cost(requests, judge_prompt_tokens, answers, cfg.judge)
    if arch and out["generations"]:
        samples = max((s["samples"] for s in splits.values()), default=1)
        requested = int(cfg.generator.batch_size) * (samples if cfg.generator.name == "vllm" else 1)
        gpu_bytes = gpu["memory_gb"] * GB if gpu.get("memory_gb") else None
        out["generation"] = generation_memory(arch, cfg.model, cfg.generator, longest_prompt + out["max_new_tokens"],
                                              requested, gpu_bytes)
    out["time"] = wall_time(out, arch, cfg, gpu, world) if arch else None
    out["stages"] = stage_states(cfg, run)
    if run.method.needs_reference or run.method.starts_from == "reference":
        ref = ensure_reference_cfg(cfg)
        ref_run = Run(ref)
        out["reference"] = {"run": str(ref_run.dir), "train": stage_states(ref, ref_run)["train"]}
    return out


def fit_problems(p: dict, stages: set[str] | None = None) -> list[str]:
    """Why a planned job will not fit its GPU (empty: it fits, or the GPU's memory is not known), for the stages
    in `stages` (default: those still to run)."""
    gpu = p.get("gpu") or {}
    if not gpu.get("memory_gb"):
        return []
    todo = stages if stages is not None else {k for k, v in p["stages"].items() if v in ("to run", "forced")}
    usable, size = usable_bytes(gpu["memory_gb"]), f"{gpu['memory_gb']:.1f} GB"
    problems = []
    mem = p.get("memory")
    if "train" in todo and mem and mem["total"] > usable:
        problems.append(f"training needs ~{mem['total'] / GB:.1f} GB per GPU by the plan's estimate, more than the "
                        f"{usable / GB:.1f} GB a {size} GPU leaves (gpu.memory_gb); set train.gradient_checkpointing="
                        f"true, model.quantization=nf4, or train.sharding=fsdp over more GPUs")
    g = p.get("generation")
    if "generate" in todo and g:
        if g["generator"] != "vllm" and g["total"] > usable:
            problems.append(f"generation (generator=hf, batch {g['batch']}) needs ~{g['total'] / GB:.1f} GB by the "
                            f"plan's estimate, more than the {usable / GB:.1f} GB a {size} GPU leaves; lower "
                            f"generator.batch_size or use generator=vllm")
        elif g["generator"] == "vllm" and g.get("budget") and g["sequences"] < 1:
            problems.append(f"generation (generator=vllm) leaves {max(g['kv'], 0) / GB:.1f} GB for the KV cache at "
                            f"gpu_memory_utilization {g['utilization']:g} of a {size} GPU, less than one sequence of "
                            f"{g['sequence']:,} tokens; raise generator.gpu_memory_utilization or quantise the model")
    return problems


def check_fits(run, todo: set[str]) -> None:
    """grasp-bench's refusal of a job the plan says will not fit its GPU (one line, exit 2, before anything runs);
    nothing is checked where the GPU's memory is not known (no CUDA device, no gpu.memory_gb)."""
    if not gpu_spec(run.cfg)["memory_gb"] or not todo & {"train", "generate"}:
        return
    problems = fit_problems(plan_job(run.cfg, run=run), todo)
    if problems:
        raise BadInput(problems[0] + " (grasp-bench-plan shows each part)")


# ---------------------------------------------------------------- printing


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _regime(job: DictConfig, world_size: int) -> str:
    t = job.train
    sharding = t.get("sharding") or "none"
    return (f"checkpointing {'on' if t.get('gradient_checkpointing') else 'off'}, quantization "
            f"{job.model.get('quantization') or 'none'}, sharding {sharding}"
            + (f" over {world_size} GPUs" if sharding != "none" else ""))


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
            lines.append(f"    GPU memory ~{mem['total'] / GB:.1f} GB per GPU ({parts}; {mem['params'] / 1e9:.2f}B "
                         f"params, {mem['lora_params'] / 1e6:.1f}M LoRA; {_regime(job, p['world_size'])})")
        else:
            lines.append("    GPU memory: unknown (no model.arch and no config.json for the model here; pass "
                         "--model-config)")
    elif p["starts_from"] == "untrained":
        lines.append("  train: none (evaluates the base model)")
    else:
        lines.append("  train: none of its own (starts from the naive SFT run)")
    for name, s in p["eval"].items():
        lines.append(f"  eval {name}: {s['prompts']} prompts x {s['samples']} samples x {s['max_new_tokens']} max new "
                     f"tokens = {_n(s['generations'])} generations, <= {_n(s['generations'] * s['max_new_tokens'])} "
                     f"tokens")
    g = p.get("generation")
    if g and g["generator"] != "vllm":
        lines.append(f"  generate (hf, batch {g['batch']}): GPU memory ~{g['total'] / GB:.1f} GB (weights "
                     f"{g['weights'] / GB:.1f}, lora {g['lora'] / GB:.1f}, KV cache {g['kv'] / GB:.1f} at {g['batch']} "
                     f"x {_n(g['sequence'])} tokens, logits {g['logits'] / GB:.1f})")
    elif g:
        head = (f"  generate (vllm): gpu_memory_utilization {g['utilization']:g}; weights {g['weights'] / GB:.1f} GB, "
                f"lora {g['lora'] / GB:.1f}, activations {g['activations'] / GB:.1f}, CUDA graphs {g['graphs'] / GB:.1f}")
        if g.get("budget"):
            head += (f" of a {g['budget'] / GB:.1f} GB budget: KV cache {max(g['kv'], 0) / GB:.1f} GB = "
                     f"{_n(g['kv_tokens'])} tokens, {_n(g['sequences'])} sequences of {_n(g['sequence'])} tokens at "
                     f"once ({_n(g['requested'])} asked per llm.generate call)")
        else:
            head += " (the KV cache is what the GPU's budget leaves: set gpu.name or gpu.memory_gb)"
        lines.append(head)
    j = p["judge"]
    line = f"  judge {j['name']}: {_n(j['requests'])} requests" + ("" if j["requests"] else " (scores locally)")
    c = j.get("cost")
    if c:
        line += (f"; {c['input_min'] / 1e6:.1f}M-{c['input_max'] / 1e6:.1f}M input tokens (answers from empty to "
                 f"max_new_tokens tokens; {p['tokenizer']} tokenizer), {c['output'] / 1e6:.2f}M output")
        if "usd_min" in c:
            line += (f"; ${c['usd_min']:,.2f}-${c['usd_max']:,.2f} at ${c['price']['input']:g}/"
                     f"${c['price']['output']:g} per 1M (judge.price_per_mtok)")
    lines.append(line)
    w = p.get("time")
    if w and w["gpu"] == "cpu":
        r = w["rates"]
        parts = [f"{k} {w[k + '_h']:.2f} h" for k in ("train", "generate") if k + "_h" in w]
        lines.append("  wall time here, on CPU: " + ", ".join(parts) + f" (measured {r['train_tokens_s']:.0f} training, "
                     f"{r['generate_tokens_s']:.0f} generated tokens/s, bench/results/train.json, generate.json, "
                     "scaled by parameters)")
    elif w:
        parts = [f"{k} {w[k + '_h']:.1f} h" for k in ("train", "generate", "judge") if k + "_h" in w]
        lines.append(f"  wall time on {w['gpu']} x{p['world_size']} ({w.get('mfu_status', 'projected')} figures, "
                     f"conf/throughput.yaml): " + ", ".join(parts) + f"; {w['gpu_hours']:.1f} GPU-hours")
    elif p.get("gpu", {}).get("name") is None:
        lines.append("  wall time: set gpu.name (h100, h200, a100: conf/throughput.yaml) for an estimate")
    gpu = p.get("gpu") or {}
    if gpu.get("memory_gb"):
        problems = fit_problems(p, {"train", "generate"})
        lines += [f"  WARNING: will not fit: {x}" for x in problems] or [
            f"  fits a {gpu['memory_gb']:.1f} GB GPU ({gpu['name'] or 'gpu.memory_gb'}): training and generation "
            f"under {usable_bytes(gpu['memory_gb']) / GB:.1f} GB"]
    lines.append("  stages: " + "; ".join(f"{k} {v}" for k, v in p["stages"].items()))
    if "reference" in p:
        lines.append(f"  needs the naive SFT run {p['reference']['run']}: train {p['reference']['train']}")
    return "\n".join(lines)


def format_total(plans: list[dict]) -> str:
    """What the jobs still have to do: stages already done are not counted."""
    todo = lambda p, stage: not p["stages"].get(stage, "").startswith(("done", "none"))
    steps = sum(p["train"]["steps"] for p in plans if "train" in p and todo(p, "train"))
    trained = sum(1 for p in plans if "train" in p and todo(p, "train"))
    gens = sum(s["generations"] for p in plans if todo(p, "generate") for s in p["eval"].values())
    requests = sum(p["judge"]["requests"] for p in plans if todo(p, "judge"))
    runs = {p["run"] for p in plans}
    extra = {p["reference"]["run"] for p in plans if "reference" in p} - runs
    peak = max((p["memory"]["total"] for p in plans if p.get("memory")), default=0)
    costs = [p["judge"]["cost"] for p in plans if todo(p, "judge") and "usd_max" in p["judge"].get("cost", {})]
    hours = sum((p["time"] or {}).get("train_h", 0) for p in plans if todo(p, "train")) + sum(
        (p["time"] or {}).get("generate_h", 0) for p in plans if todo(p, "generate"))
    gpus = max((p["world_size"] for p in plans), default=1)
    on_cpu = any((p["time"] or {}).get("gpu") == "cpu" for p in plans)
    return (f"total to do: {trained} training run(s), {_n(steps)} optimizer steps; {_n(gens)} generations; "
            f"{_n(requests)} judge requests" + (f"; peak GPU memory ~{peak / GB:.1f} GB" if peak else "")
            + (f"; judge ${sum(c['usd_min'] for c in costs):,.2f}-${sum(c['usd_max'] for c in costs):,.2f}"
               if costs else "")
            + ((f"; ~{hours:.1f} hours here on CPU, one job at a time" if on_cpu else f"; ~{hours * gpus:.1f} GPU-hours")
               if hours else "")
            + (f"; plus {len(extra)} naive SFT run(s) outside the sweep, trained on demand" if extra else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="grasp-bench-plan", description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments: grasp-bench's Hydra overrides (key=value, sweep=...).")
    parser.add_argument("-m", "--multirun", action="store_true", help="expand sweeps, as grasp-bench -m")
    parser.add_argument("-cd", "--config-dir", help="a folder of the user's own configs, as grasp-bench --config-dir")
    parser.add_argument("--tokenizer", help="a stand-in tokenizer: a directory, hub id, or 'embedded'")
    parser.add_argument("--model-config", help="the model's config.json (file or directory) for the memory estimate")
    parser.add_argument("--world-size", type=int, help="GPUs (processes) per run for sharding and wall time "
                        "(default: $WORLD_SIZE, else 1)")
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
            plans.append(plan_job(job, args.tokenizer, args.model_config, built, args.world_size))
            print(format_job(i, job, plans[-1]), flush=True)
        if len(plans) > 1:
            print(format_total(plans))
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
