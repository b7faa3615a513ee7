# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   set up, then generate a small crawl and run the default recipe on it
#   make test   set up, then run the tests (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement can pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,train]"
	# A venv made before fasttext-numpy2-wheel was dropped: it wrote the same `fasttext/` files as
	# fasttext-predict, so remove it and lay fasttext-predict's files again (.ci/run checks the result).
	if $(BIN)/pip show -q fasttext-numpy2-wheel 2>/dev/null; then \
	  $(BIN)/pip uninstall -y -q fasttext-numpy2-wheel && $(BIN)/pip install --quiet --force-reinstall --no-deps fasttext-predict; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenmill demo --out runs/demo

test: $(STAMP)
	$(BIN)/pytest

test-all: $(STAMP)
	$(BIN)/pytest -m ""

clean:
	rm -rf runs .pytest_cache
