# `make run` and `make test` each set up what they need on a fresh machine first (skipped once it is there).
.PHONY: run test test-fast test-py310 lint docs setup setup-dev bench

run: setup
	.venv/bin/python app.py $(ARGS)

test: setup-dev
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The unit tests: no server, no browser, no subprocess app, nothing slow (under 2 minutes on 2 cores).
test-fast: setup-dev
	.venv/bin/python -m pytest -m "not server and not slow" $(PYTEST_ARGS)

# The unit tests on Python 3.10, as ZeroGPU Spaces run it (3.10.13), in a venv of their own (.venv310); a pyenv
# 3.10 is found where pyenv's shim would refuse it.
PYTHON310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10)
test-py310:
	VENV=.venv310 PYTHON=$(PYTHON310) scripts/setup.sh --dev
	.venv310/bin/python -m pytest -m "not server and not slow" $(PYTEST_ARGS)

lint: setup-dev
	.venv/bin/ruff check .

# docs/ as a site in site/ (mkdocs-material); `make docs ARGS=serve` serves it while you edit.
docs: setup-dev
	.venv/bin/mkdocs $(or $(ARGS),build --strict)

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

bench: setup
	.venv/bin/python -m bench.run_all
