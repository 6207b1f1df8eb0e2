# Two entry points for a fresh machine: `make demo` (the main job on demo data) and `make test`.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= demo

.PHONY: install install-test demo test bench

install:
	$(PYTHON) -m pip install -q -e .

install-test:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)
	command -v npm >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm)
	command -v configurable-http-proxy >/dev/null || npm install -g configurable-http-proxy
	$(PYTHON) -m pip install -q -e '.[test]'

demo: install
	labkit demo-data --base-dir $(DEMO_DIR)
	labkit run --base-dir $(DEMO_DIR) --raw-file-path labkit-demo/demo_raw.fif --n-components 20 --method picard

test: install-test
	$(PYTHON) -m ruff check labkit tests benchmarks
	lint-imports
	$(PYTHON) -m pytest

bench: install
	$(PYTHON) benchmarks/bench_run.py
	$(PYTHON) benchmarks/bench_form.py
	PYTHONPATH=$(CURDIR) $(PYTHON) benchmarks/bench_hub.py
	PYTHONPATH=$(CURDIR) $(PYTHON) benchmarks/bench_soak.py --sets 100 --readme
