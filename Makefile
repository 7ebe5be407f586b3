# Every developer command. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
# maturin installs into the environment it is told about.
MATURIN := VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin

.PHONY: help
help:  ## Show this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# The real proxy servers the proxy tests start on loopback, the browser the
# browser tests drive, and the Redis the broker tests start (Debian packages).
SYSTEM_TOOLS := tinyproxy danted chromium redis-server
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: system-deps
system-deps:  ## Install the Debian packages the tests use (tinyproxy, dante-server, chromium, redis-server)
	@for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq tinyproxy dante-server chromium redis-server >/dev/null; \
	fi

# The Autobahn|Testsuite, which judges conformance: it runs on the Python 2.7
# that this machine image ships under pyenv.
WSTEST := $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/2.7.18/bin/wstest

.PHONY: autobahn
autobahn:  ## Install the Autobahn|Testsuite (wstest) under pyenv's Python 2.7.18
	@test -x $(WSTEST) || PYENV_VERSION=2.7.18 python2.7 -m pip install -q autobahntestsuite

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.PHONY: setup
setup: $(VENV)/.installed  ## Make .venv with the build tool, test peers and linters

.PHONY: build-dev
build-dev: setup  ## Build the extension in debug mode into .venv
	$(MATURIN) develop -q

.PHONY: build-release
build-release: setup  ## Build the extension optimised into .venv
	$(MATURIN) develop -q --release

# The wheel users install: one abi3 wheel (CPython >= 3.11), optimised.
.PHONY: wheel
wheel: setup  ## Build the release abi3 wheel into dist/ (tests/test_wheel.py installs it in a clean venv)
	rm -f dist/wsbind-*.whl
	$(MATURIN) build -q --release -o dist

# The documentation site: tutorial, how-to, topics and reference, from docs/ and the docstrings.
.PHONY: docs
docs: build-dev  ## Build the documentation site into site/ (strict: any warning fails; -q would hide them)
	$(PY) docs/reference.py --check
	$(VENV)/bin/mkdocs build --strict

.PHONY: format
format: setup  ## Format Rust and Python code
	cargo fmt
	cargo fmt --manifest-path benches/peer/Cargo.toml
	$(VENV)/bin/ruff format python tests examples docs benches tools
	$(VENV)/bin/ruff check --fix python tests examples docs benches tools

.PHONY: lint
lint: build-dev  ## Tidiness: rustfmt, clippy, ruff, the stubs against the module, the layers of src/
	$(PY) tools/check_layers.py
	$(PY) tools/declarations.py --check
	cargo fmt --check
	cargo fmt --check --manifest-path benches/peer/Cargo.toml
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --manifest-path benches/peer/Cargo.toml -- -D warnings
	$(VENV)/bin/ruff check python tests examples docs benches tools
	$(VENV)/bin/ruff format --check python tests examples docs benches tools
	$(PY) -m mypy.stubtest wsbind._wsbind
	$(PY) -m mypy python/wsbind

.PHONY: test
test: system-deps autobahn lint docs  ## Set up, build, check tidiness and the docs site, run every test (what CI runs)
	cargo test -q
	cargo test -q --manifest-path benches/peer/Cargo.toml
	WSTEST=$(WSTEST) $(PY) -m pytest

.PHONY: demo
demo: build-release  ## Set up, build and run the stock-ticker demo
	$(PY) examples/stock_ticker.py demo

.PHONY: clean
clean:  ## Remove build output and .venv
	cargo clean
	rm -rf $(VENV) python/wsbind/*.so

# The benchmark suite has a venv of its own: it installs wsbind as a release
# wheel, which must not replace the editable debug build in .venv.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
# Passed to benches/run.py, e.g. BENCH_ARGS="--quick" or "--libs wsbind,picows --runs 5".
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: benches/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q -r benches/requirements.txt
	touch $@

.PHONY: bench
bench: $(BENCH_VENV)/.installed  ## Compare wsbind with picows, websockets... on a release wheel (BENCH_ARGS=--quick)
	cargo build -q --release --manifest-path benches/peer/Cargo.toml
	rm -rf benches/dist
	VIRTUAL_ENV=$(abspath $(BENCH_VENV)) $(BENCH_VENV)/bin/maturin build -q --release -o benches/dist
	$(BENCH_PY) -m pip install -q --force-reinstall --no-deps benches/dist/wsbind-*.whl
	$(BENCH_PY) benches/run.py $(BENCH_ARGS)
	@echo "Results: benches/results/results.md, plots: benches/results/*.png"

# Fuzzing (fuzz/run.sh says how): FUZZ_SECONDS per target, one core each.
FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz:  ## Fuzz every parser for FUZZ_SECONDS each (default 60); keeps new corpus inputs and crashes for cargo test
	FUZZ_SECONDS=$(FUZZ_SECONDS) nice fuzz/run.sh

# The soak run (benches/soak.py), not in CI: SOAK_SECONDS of mixed load.
SOAK_SECONDS ?= 600

.PHONY: soak
soak: build-release  ## Run a server under mixed and hostile load for SOAK_SECONDS (default 600), watching its RSS and fds
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) benches/soak.py
