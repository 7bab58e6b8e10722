# vidtrack: `make run` runs the archive job on a local folder with an embedded Ray;
# `make test` runs lint, type checks and the test suite. Both set up .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
SHARED ?= ../shared
INPUT  ?= $(SHARED)/data/videos
OUTPUT ?= out
MODEL  ?= $(SHARED)/models/yolov8n.pt
BIN     = $(VENV)/bin

.PHONY: setup run test lint lock bench bench-gpu clean

$(BIN)/vidtrack: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(BIN)/vidtrack

run: setup
	VIDTRACK_MODELS=$(abspath $(SHARED)/models/reid) $(BIN)/vidtrack run --input $(INPUT) --output $(OUTPUT) \
	  --set detector.model=$(MODEL)

lint: setup
	$(BIN)/ruff check tracking jobs bench tests
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: setup
	VIDTRACK_MODELS=$(abspath $(SHARED)/models/reid) $(BIN)/vidtrack-bench --model $(abspath $(MODEL))

# The per-video library on NVIDIA GPUs (bench/gpu.py): one JSON file and one table in under 8 minutes;
# without CUDA it says so and exits 0. On a machine without this venv: /work/notes/gpu_readme.md.
bench-gpu:
	VIDTRACK_MODELS=$(abspath $(SHARED)/models/reid) $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) \
	  -m bench --gpu --model $(abspath $(MODEL))

# Resolve pyproject.toml afresh into requirements.lock (needs the package index).
lock:
	rm -rf /tmp/vidtrack-lock && $(PYTHON) -m venv /tmp/vidtrack-lock
	/tmp/vidtrack-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/vidtrack-lock/bin/pip uninstall --yes --quiet opencv-python
	{ sed -n '1,4p' requirements.lock; /tmp/vidtrack-lock/bin/pip freeze --all --exclude-editable \
	  | grep -v -i -E "^(opencv-python==|vidtrack|pip==)"; } > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) $(OUTPUT) .pytest_cache .mypy_cache .ruff_cache
