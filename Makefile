# The two README commands: `make demo` and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo
# The UCI files: $SYNTH_UCI_DIR if set, else the offline copies beside this checkout
# when present, else synth downloads them into its cache (~/.cache/llm-pv/uci).
SYNTH_UCI_DIR ?= $(wildcard $(abspath ../shared/uci))
export SYNTH_UCI_DIR

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "llm-pv needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,baselines]'
	@touch $(STAMP)

# The main job on its embedded defaults: a small real grid with an offline proposer (no
# key, no network). `make demo DEMO_PROVIDER=openai` runs the same grid against OpenAI.
DEMO_PROVIDER ?= formula
demo: $(STAMP)
	$(BIN)/synth demo --out-dir $(DEMO_DIR) --provider $(DEMO_PROVIDER)

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) runs/demo .pytest_cache
