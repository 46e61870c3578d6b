# prescient: the two commands of the README, plus helpers.
#   make demo   set up (if needed) and run the main job
#   make test   set up (if needed) and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= cpu,dev,data,train,ros,fleet,foxglove
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache

.PHONY: setup test lint demo bench-bus clean

$(BIN)/prescient: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $@

setup: $(BIN)/prescient

lint: setup
	$(BIN)/ruff check bus sim_sensors service models benchmarks tests

test: setup
	$(BIN)/ruff check bus sim_sensors service models benchmarks tests
	$(BIN)/lint-imports
	$(BIN)/mypy | $(BIN)/mypy-baseline filter  # errors may only shrink: mypy-baseline.txt
	$(BIN)/pytest

demo: setup
	$(BIN)/prescient up --scenario intersection --seed 101 --agents 40 --duration 40 --out runs/demo

bench-bus: setup
	$(BIN)/python -m prescient.benchmarks.bench_bus

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache build *.egg-info

# Build the CPU image offline (local Debian base, host wheelhouse) and check that the compose stack
# predicts; needs root for apt/dockerd (.ci/docker/smoke.sh). Not part of `make test`. The venv
# (setup) fills the wheelhouse with its pip, so this works from a fresh clone.
# docker-gpu: the GPU image (Dockerfile.gpu: CUDA base, pinned onnxruntime-gpu; the base is pulled).
.PHONY: docker-smoke docker-gpu
docker-smoke: setup
	VENV=$(VENV) bash .ci/docker/smoke.sh

docker-gpu: setup
	PIP=$(BIN)/pip .ci/docker/make_wheelhouse.sh gpu
	docker build -f Dockerfile.gpu -t prescient:gpu .
