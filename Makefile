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

# The real proxy servers the proxy tests start on loopback (Debian packages).
SYSTEM_TOOLS := tinyproxy danted
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: system-deps
system-deps:  ## Install the Debian packages the tests use (tinyproxy, dante-server)
	@for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq tinyproxy dante-server >/dev/null; \
	fi

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

.PHONY: format
format: setup  ## Format Rust and Python code
	cargo fmt
	$(VENV)/bin/ruff format python tests examples docs
	$(VENV)/bin/ruff check --fix python tests examples docs

.PHONY: lint
lint: build-dev  ## Tidiness: rustfmt, clippy, ruff, and the stubs against the module
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests examples docs
	$(VENV)/bin/ruff format --check python tests examples docs
	$(PY) -m mypy.stubtest wsbind._wsbind
	$(PY) -m mypy python/wsbind

.PHONY: test
test: system-deps lint  ## Set up, build, check tidiness, run every test (what CI runs)
	cargo test -q
	$(PY) -m pytest

.PHONY: demo
demo: build-release  ## Set up, build and run the stock-ticker demo
	$(PY) examples/stock_ticker.py demo

.PHONY: clean
clean:  ## Remove build output and .venv
	cargo clean
	rm -rf $(VENV) python/wsbind/*.so
