# Two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/tiny.yaml

.PHONY: setup demo test test-fast bench clean check-java check-services

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

check-java:
	@command -v java >/dev/null || { echo "Spark needs Java 17+ on PATH (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }

# The scale-out test starts a throwaway Postgres cluster and opens the UIs in headless Chromium:
# Debian's packages, installed when missing (as root).
check-services:
	@{ ls /usr/lib/postgresql/*/bin/initdb && command -v chromium; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium >/dev/null; } || { echo "the scale-out test needs Postgres and Chromium (apt-get install postgresql chromium)"; exit 1; }

demo: $(STAMP) check-java
	$(BIN)/llmpipe demo --config $(CONFIG)

test: $(STAMP) check-java check-services
	$(BIN)/python -m pytest -ra --durations=30

test-fast: $(STAMP) check-java
	$(BIN)/python -m pytest -ra -m "not slow"

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench check-java check-services
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/filters.py
	$(BIN)/python benchmarks/dedup.py
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/crawl.py
	$(BIN)/python benchmarks/tokenizer.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/scaleout.py

clean:
	rm -rf data benchmarks/out
