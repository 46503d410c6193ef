"""A quantised base (`model.quantization=nf4|int8`, bitsandbytes) and 8-bit AdamW: what this CPU machine can check.
The quantisation runs on CUDA only: here a run that asks for it stops with one line and exit code 2 before any
weights load; the BitsAndBytesConfig it would load with is transformers' real object; an 8-bit optimizer falls back
to AdamW without CUDA and is refused on CUDA without bitsandbytes (never a silent 32-bit run on a GPU)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from transformers import BitsAndBytesConfig

from grasp_bench import models
from grasp_bench.artifacts import BadInput
from grasp_bench.pipeline import validate
from grasp_bench.train import effective_optim
from tests.conftest import REPO, TINY

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@cpu_only
def test_quantised_base_is_refused_by_validation(tiny_cfg, runs):
    cfg = tiny_cfg("model.quantization=int8")
    with pytest.raises(BadInput, match=r"^model.quantization=int8: bitsandbytes quantisation needs a CUDA GPU"):
        validate(cfg)
    assert not runs.exists()


@cpu_only
@pytest.mark.slow  # a process of its own: ~15-40 s here
def test_quantised_base_is_refused_on_cpu_before_anything_loads(tmp_path):
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "grasp_bench", *TINY, "model.quantization=nf4", f"paths.runs={runs}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == ("error: model.quantization=nf4: bitsandbytes quantisation needs a CUDA GPU and this machine "
                         "has none (use model.quantization=none)"), done.stderr[-2000:]
    assert not runs.exists()  # nothing was built, loaded or written


def test_unknown_quantization_is_refused():
    with pytest.raises(BadInput, match=r"model.quantization='fp8': expected one of none, nf4, int8"):
        models.check_quantization(OmegaConf.create({"quantization": "fp8"}))


def test_nf4_is_qloras_config():
    cfg = models.quantization_config(OmegaConf.create({"quantization": "nf4", "dtype": "bfloat16"}))
    assert isinstance(cfg, BitsAndBytesConfig)
    assert cfg.load_in_4bit and not cfg.load_in_8bit
    assert cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    assert cfg.bnb_4bit_compute_dtype == torch.bfloat16  # matmuls in the model's dtype
    assert cfg.quantization_method() == "nf4"


def test_int8_and_none():
    cfg = models.quantization_config(OmegaConf.create({"quantization": "int8", "dtype": "bfloat16"}))
    assert isinstance(cfg, BitsAndBytesConfig) and cfg.load_in_8bit and cfg.quantization_method() == "llm_int8"
    assert models.quantization_config(OmegaConf.create({"quantization": "none", "dtype": "float32"})) is None
    assert models.quantization_config(OmegaConf.create({"dtype": "float32"})) is None  # a config made before the key


def test_eight_bit_adam_falls_back_only_without_cuda():
    assert effective_optim("adamw_8bit", cuda=False) == "adamw_torch"
    assert effective_optim("adamw_torch", cuda=True) == "adamw_torch"


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_eight_bit_adam_on_cuda_without_bitsandbytes_is_refused():
    with pytest.raises(BadInput, match=r'train.optim=adamw_8bit needs bitsandbytes .*pip install "grasp-bench\[gpu\]"'):
        effective_optim("adamw_8bit", cuda=True)


def test_gpu_extra_carries_bitsandbytes_and_no_torch():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("bitsandbytes") for r in extras["gpu"])
    assert not any(r.startswith("torch") for r in extras["gpu"])  # torch stays the one `make` pins
