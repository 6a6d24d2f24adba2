# The two commands of the README. Each bootstraps .venv on a fresh machine (and is a
# no-op when the installed environment is newer than pyproject.toml), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow

.PHONY: demo test test-fast install clean check-clients

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# Style first (ruff: format and lint, configured in pyproject.toml), then the whole suite.
test: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=25

# The suite without the tests marked slow (see pyproject.toml): for the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The checks by clients that bring PyTorch (BoxMOT 25.0.0 with its ONNX and TFLite backends, torchvision
# for the resnet50_v1.5 backbone): a venv of their own (~6.5 GB, no TensorFlow), built once; by hand,
# not in `make test`. Results: benchmarks/README.md. MODEL=run/best.keras checks a trained checkpoint.
CLIENTS_VENV ?= .venv-clients
CLIENTS_OUT ?= build/clients
$(CLIENTS_VENV)/.installed:
	$(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet boxmot==25.0.0 onnxruntime ai-edge-litert torchvision safetensors
	touch $@

check-clients: $(STAMP) $(CLIENTS_VENV)/.installed
	mkdir -p $(CLIENTS_OUT)
	$(PY) -m pip download --quiet --no-deps --dest $(CLIENTS_OUT) ultralytics
	$(PY) benchmarks/extract_photos.py "$$(ls $(CLIENTS_OUT)/ultralytics-*.whl | tail -n 1)" $(CLIENTS_OUT)
	$(PY) benchmarks/prepare_boxmot_check.py --out $(CLIENTS_OUT)/boxmot \
	    --frames $(CLIENTS_OUT)/bus.jpg $(CLIENTS_OUT)/zidane.jpg $(if $(MODEL),--model $(MODEL))
	$(CLIENTS_VENV)/bin/python benchmarks/check_boxmot.py --dir $(CLIENTS_OUT)/boxmot
	$(PY) benchmarks/bench_litert.py --dir $(CLIENTS_OUT)/boxmot
	$(CLIENTS_VENV)/bin/python benchmarks/check_torchvision_backbone.py torch --out $(CLIENTS_OUT)/torchvision
	$(PY) benchmarks/check_torchvision_backbone.py keras --out $(CLIENTS_OUT)/torchvision

clean:
	rm -rf $(VENV) demo_output .pytest_cache
