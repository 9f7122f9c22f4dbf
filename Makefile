# Two entry points for a fresh machine: `make demo` and `make test`. Both run `make setup` first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): setup.py requirements.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -r requirements.txt
	# fairseq-fixed without its deps: its torchaudio pin would replace torch.
	$(BIN)/python -c "import fairseq" 2>/dev/null || $(BIN)/pip install -q --no-deps --no-build-isolation fairseq-fixed==0.12.3.1
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m data2vec_plugin.cli.demo --out demo_out

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf demo_out .pytest_cache
