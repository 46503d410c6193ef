"""What the training device does natively: the precision and batching mode that `auto` resolves to.

`train.precision: auto` is bf16 autocast on GPUs with bf16 and on CPUs with native bf16 instructions
(AVX512-BF16 or AMX; ARM's BF16 extension), else fp32. Emulated bf16 on a CPU without them is one to two
orders of magnitude slower than fp32 (a 1024x576 @ 576x1536 matmul: 26 ms fp32, 1.5 s bf16 on AVX2),
so forcing bf16 there warns once.

`train.batching: auto` is `padding_free` on CUDA (no pad tokens; the attention kernels' variable-length path)
and `padded` on CPU. The modes:
- `padded`: rows in random order, each batch right-padded to its longest row (the original behaviour);
- `padding_free`: the same rows per batch, concatenated into one row with position ids that restart per
  sequence (transformers' DataCollatorWithFlattening); the loss equals the padded one up to rounding;
- `length_grouped`: the Trainer's LengthGroupedSampler, so rows of similar length share a batch (other
  batches than `padded`: results differ), padded like `padded`.

Both are resolved before a run's config slice is recorded, so a stage record names what was used.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "bf16", "fp32")
BATCHING = ("auto", "padded", "padding_free", "length_grouped")


@cache
def native_bf16() -> bool:
    """True when bf16 matmuls run natively on the device training uses."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
            return True
    except AttributeError:  # a torch without these probes: read the flags
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: assume emulated (fp32 is never the slow choice)
        return False
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))  # x86 flags; "bf16" is arm64's Features field


_warned: set[str] = set()


def resolve_precision(requested: str) -> str:
    if requested not in PRECISIONS:
        from grasp_bench.artifacts import BadInput

        raise BadInput(f"train.precision '{requested}': expected one of {list(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if native_bf16() else "fp32"
    if requested == "bf16" and not native_bf16() and "bf16" not in _warned:
        _warned.add("bf16")
        print("[grasp-bench] warning: train.precision=bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): "
              "emulated, far slower than fp32; train.precision=auto picks fp32 here", file=sys.stderr)
    return requested


def resolve_batching(requested: str) -> str:
    if requested not in BATCHING:
        from grasp_bench.artifacts import BadInput

        raise BadInput(f"train.batching '{requested}': expected one of {list(BATCHING)}")
    if requested == "auto":
        return "padding_free" if torch.cuda.is_available() else "padded"
    return requested


def resolved_train(train: dict) -> dict:
    """The train config with `precision` and `batching` as this device runs them (how a stage record keeps them:
    grasp_bench.identity's rule `resolved_device`)."""
    return {**train, "precision": resolve_precision(train["precision"]), "batching": resolve_batching(train["batching"])}
