# Two entry points for a fresh machine: `make demo` (the main job on demo data) and `make test`.
# labkit and its Python packages go into a virtualenv of its own ($(VENV)), so a system Python that
# refuses pip installs (Debian's "externally-managed-environment") is left untouched. System-wide,
# with sudo when not root: python3-venv when `$(PYTHON) -m venv` cannot make a virtualenv; for
# `make test` also chromium (the browser tests drive JupyterLab in it), nodejs/npm (they build labkit's
# JupyterLab frontend) and, through `npm install -g`, configurable-http-proxy (the proxy JupyterHub
# starts in the hub tests).
PYTHON ?= python3
VENV ?= .venv
DEMO_DIR ?= demo
# pytest's arguments for `make test`, e.g. PYTEST_ARGS='tests/test_cli.py -x' (default: the whole suite)
PYTEST_ARGS ?=
# the artifact store's client and a real S3 server on loopback for its tests (moto's S3, and flask and
# flask-cors for its server), installed after the test extra: see the `store` extra in pyproject.toml for why
STORE_TEST_PACKAGES := 'boto3>=1.35' 'moto[s3]>=5.1' 'flask>=2.3' 'flask-cors>=4'
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq
VBIN := $(abspath $(VENV))/bin
VPY := $(VBIN)/python
# the test suite starts `labkit`, `jupyter` and `jupyterhub` as commands: the virtualenv's come first
export PATH := $(VBIN):$(PATH)

.PHONY: venv install install-test demo test bench

# bin/pip exists only once the virtualenv is complete (without python3-venv, Debian's venv stops
# after bin/python, before pip), so a half-made one is made again
$(VBIN)/pip:
	$(PYTHON) -m venv --clear $(VENV) || { $(APT_INSTALL) python3-venv && $(PYTHON) -m venv --clear $(VENV); }

venv: $(VBIN)/pip

# installed again when pyproject.toml (the dependencies) changes; labkit's own code is an editable install
$(VENV)/.installed: pyproject.toml | $(VBIN)/pip
	$(VPY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VBIN)/pip
	command -v chromium >/dev/null || { $(APT_INSTALL) chromium; }
	command -v npm >/dev/null || { $(APT_INSTALL) nodejs npm; }
	command -v configurable-http-proxy >/dev/null || \
	  if [ -w "$$(npm prefix -g)" ]; then npm install -g configurable-http-proxy; \
	  else $(SUDO) npm install -g configurable-http-proxy; fi
	$(VPY) -m pip install -q -e '.[test]'
	$(VPY) -m pip install -q $(STORE_TEST_PACKAGES)
	touch $@ $(VENV)/.installed

# the JupyterLab frontend (extension/), built with jlpm (JupyterLab's yarn, in the virtualenv) and
# linked into the virtualenv's JupyterLab; built again when its sources change
EXTENSION_SOURCES := $(wildcard extension/package.json extension/yarn.lock extension/src/*.ts extension/style/*)
$(VENV)/.extension: $(EXTENSION_SOURCES) | $(VENV)/.installed-test
	cd extension && $(VBIN)/jlpm install && $(VBIN)/jlpm build:prod
	$(VBIN)/jupyter-builder develop --overwrite .
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test $(VENV)/.extension

demo: install
	$(VBIN)/labkit demo-data --base-dir $(DEMO_DIR)
	$(VBIN)/labkit run --base-dir $(DEMO_DIR) --raw-file-path labkit-demo/demo_raw.fif --n-components 20 --method picard

test: install-test
	$(VPY) -m ruff check labkit tests benchmarks
	$(VBIN)/lint-imports
	cd extension && $(VBIN)/jlpm test
	$(VPY) -m pytest $(PYTEST_ARGS)

bench: install-test
	$(VPY) benchmarks/bench_run.py
	$(VPY) benchmarks/bench_form.py
	PYTHONPATH=$(CURDIR) $(VPY) benchmarks/bench_hub.py
	PYTHONPATH=$(CURDIR) $(VPY) benchmarks/bench_soak.py --sets 100 --readme
	$(VPY) benchmarks/bench_lab.py
