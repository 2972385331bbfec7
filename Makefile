# Set-up and everyday commands. Each target creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	# The CPU wheel of torch, pinned first so no multi-GB CUDA build is pulled in.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,export]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sim demo --out demo_output

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/lint-imports

clean:
	rm -rf demo_output .pytest_cache

bench: $(STAMP)
	mkdir -p bench_results
	for f in scripts/bench/[a-z]*.py; do \
	  $(PY) $$f --quick --json bench_results/$$(basename $$f .py).json || exit 1; done
	$(PY) scripts/bench_summary.py bench_results > bench_results/SUMMARY.md
	cat bench_results/SUMMARY.md
