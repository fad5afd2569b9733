# Two entry points a fresh clone needs: `make demo` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-tools lint typecheck unit bench soak clean

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

# Three workers on two cores: most of the suite's wall time is waiting on real time (agents, emulators,
# ptys), not CPU (about 1.5 cores busy on average); worksteal evens out the few long end-to-end tests.
unit: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist worksteal $(ARGS)

# The suite starts promtool, Prometheus and headless Chromium: installed first where missing.
test-tools:
	scripts/test-tools

test: test-tools lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
