# `make demo` and `make test` set themselves up: .venv is (re)built when missing or
# when pyproject.toml changed, and the Prism mock of Twilio's API is installed for tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PRISM := .cache/prism/node_modules/.bin/prism

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

$(PRISM):
	@command -v npm >/dev/null && npm install --silent --no-audit --no-fund --prefix .cache/prism @stoplight/prism-cli@5 \
	  || echo "Prism could not be installed: the Twilio contract tests will skip (CI requires them)"

demo: $(VENV)/.installed
	$(BIN)/dripcare demo

test: $(VENV)/.installed-test $(PRISM)
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .cache
