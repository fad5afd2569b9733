# Two entry points a fresh clone needs: `make demo` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-agent demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check edge_agent tests bench
	$(BIN)/ruff format --check edge_agent tests bench

typecheck: $(STAMP)
	$(BIN)/mypy edge_agent

# Two workers: most of the suite's wall time is waiting on real time (agents, emulators, ptys), so two
# processes on two cores halve it; worksteal evens out the few long end-to-end tests.
unit: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist worksteal $(ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
