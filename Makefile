# Two entry points: `make book` (the main job) and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test chromium train train-language bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[book,test]"
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/python -m ihlib.book $(BOOK_ARGS)

chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) chromium
	$(BIN)/ruff check ihlib tests benchmarks book
	$(BIN)/ruff format --check ihlib tests benchmarks book
	$(BIN)/python -m pytest $(TEST_ARGS)

train: $(STAMP)
	$(BIN)/python -m ihlib.training.copy_trainer

train-language: $(STAMP)
	$(BIN)/python -m ihlib.training.language_trainer

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_subspace.py
	$(BIN)/python benchmarks/bench_shuffle.py
	$(BIN)/python benchmarks/bench_pairs.py
