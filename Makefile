# `make demo` and `make test` set themselves up: .venv is (re)built when missing or when
# pyproject.toml or constraints.txt changed, from the versions pinned in constraints.txt;
# the test tools (Prism, Twilio's OpenAPI description) come from npm at pinned versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
PRISM := .cache/prism/.installed
TWILIO_SPEC := .cache/twilio-oai/twilio_api_v2010.json
# @twilio-alpha/mcp ships twilio-oai's spec; the tarball is checked before it is unpacked.
MCP_VERSION := 0.7.0
MCP_SHA256 := 7ff791d1023cad6372496d8aba1c49bc3ffbcf0989b9f96b3a83d2df9d6af755

.PHONY: demo test bench bench-quick constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[test]'
	touch $@ $(VENV)/.installed

$(PRISM): tests/support/npm/package.json tests/support/npm/package-lock.json
	@mkdir -p .cache/prism && cp tests/support/npm/package.json tests/support/npm/package-lock.json .cache/prism/
	@command -v npm >/dev/null && npm ci --silent --no-audit --no-fund --prefix .cache/prism && touch $@ \
	  || echo "Prism could not be installed: the Twilio contract tests will skip (CI requires them)"

$(TWILIO_SPEC):
	@mkdir -p .cache/twilio-oai
	@command -v npm >/dev/null && cd .cache/twilio-oai \
	  && npm pack --silent @twilio-alpha/mcp@$(MCP_VERSION) >/dev/null \
	  && echo "$(MCP_SHA256)  twilio-alpha-mcp-$(MCP_VERSION).tgz" | sha256sum -c --quiet \
	  && tar -xzf twilio-alpha-mcp-$(MCP_VERSION).tgz -O package/twilio-oai/spec/json/twilio_api_v2010.json \
	     > twilio_api_v2010.json.part && mv twilio_api_v2010.json.part twilio_api_v2010.json \
	  && rm -f twilio-alpha-mcp-$(MCP_VERSION).tgz \
	  || echo "Twilio's OpenAPI description could not be fetched: the contract tests will skip (CI requires them)"

demo: $(VENV)/.installed
	$(BIN)/dripcare demo

test: $(VENV)/.installed-test $(PRISM) $(TWILIO_SPEC)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python bench/run.py --quick
	$(BIN)/python -m pytest

# Every workload of bench/ at full size (tens of minutes on 2 cores, best on a quiet machine):
# bench/results/<date>.json and docs/benchmarks.md. `bench/run.py --help` for sizes and --only.
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

# The same code on tiny sizes, into a temporary folder: proves the benchmarks work, measures nothing.
bench-quick: $(VENV)/.installed-test
	$(BIN)/python bench/run.py --quick

# Regenerate the pins from a fresh resolution of pyproject.toml (then review the diff).
constraints:
	rm -rf .cache/constraints-venv && $(PYTHON) -m venv .cache/constraints-venv
	.cache/constraints-venv/bin/python -m pip install -q -e '.[test]'
	{ head -2 constraints.txt; .cache/constraints-venv/bin/python -m pip freeze | grep -v '^-e\|^dripcare'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .cache
