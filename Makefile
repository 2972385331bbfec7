# Set-up and everyday commands. Each target creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench lint clean browser

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'
	# The CPU wheel of torch, pinned first so no multi-GB CUDA build is pulled in.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,export,view]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sim demo --out demo_output

test: $(STAMP)
	$(PY) -m pytest -q

# The viewer's browser tests need Chromium (Debian's package) and Playwright's Python package; without
# them those tests are skipped with a message. Needs root (or sudo) for apt-get.
browser: $(STAMP)
	$(PY) -m pip install --quiet -e '.[browser]'
	test -x /usr/bin/chromium || (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium))

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
