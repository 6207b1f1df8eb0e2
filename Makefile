# Two entry points for a fresh machine: `make demo` (the main job on demo data) and `make test`.
# Both work in a virtualenv of their own ($(VENV)), so a system Python that refuses pip installs
# (Debian's "externally-managed-environment") is left untouched.
PYTHON ?= python3
VENV ?= .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= demo
VPY := $(VENV)/bin/python
# labkit, lint-imports and pytest resolve in the virtualenv first
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv install install-test demo test bench

venv: $(VPY)

$(VPY):
	$(PYTHON) -m venv $(VENV) || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV))

install: venv
	$(VPY) -m pip install -q -e .

# System-wide (needs sudo when not root): chromium (the browser tests drive the JupyterHub form in it),
# nodejs/npm and configurable-http-proxy (the proxy JupyterHub itself starts). Python packages go into $(VENV).
install-test: venv
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)
	command -v npm >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm)
	command -v configurable-http-proxy >/dev/null || $(SUDO) npm install -g configurable-http-proxy
	$(VPY) -m pip install -q -e '.[test]'

demo: install
	labkit demo-data --base-dir $(DEMO_DIR)
	labkit run --base-dir $(DEMO_DIR) --raw-file-path labkit-demo/demo_raw.fif --n-components 20 --method picard

test: install-test
	$(VPY) -m ruff check labkit tests benchmarks
	lint-imports
	$(VPY) -m pytest

bench: install
	$(VPY) benchmarks/bench_run.py
	$(VPY) benchmarks/bench_form.py
	PYTHONPATH=$(CURDIR) $(VPY) benchmarks/bench_hub.py
	PYTHONPATH=$(CURDIR) $(VPY) benchmarks/bench_soak.py --sets 100 --readme
