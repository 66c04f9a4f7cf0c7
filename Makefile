# `make run` and `make test` each set up what they need on a fresh machine first.
.PHONY: run test setup setup-dev bench

run: setup
	.venv/bin/python app.py $(ARGS)

test: setup-dev
	.venv/bin/python -m pytest $(PYTEST_ARGS)

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

bench: setup
	.venv/bin/python -m bench.run_all
