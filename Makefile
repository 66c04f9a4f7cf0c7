# `make run` and `make test` each set up what they need on a fresh machine first (skipped once it is there).
.PHONY: run test test-fast lint docs setup setup-dev bench

run: setup
	.venv/bin/python app.py $(ARGS)

test: setup-dev
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The unit tests: no server, no browser, no subprocess app, nothing slow (under 2 minutes on 2 cores).
test-fast: setup-dev
	.venv/bin/python -m pytest -m "not server and not slow" $(PYTEST_ARGS)

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
