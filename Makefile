# The two commands of the README:
#   make serve   start kerve on the embedded default (SQLite + ./kerve-data), demo model uploaded
#   make test    install everything into .venv and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install protos clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

serve: install
	$(BIN)/kerve serve --demo

test: install
	$(BIN)/python protos/generate.py --check
	$(BIN)/python -m pytest -q -rs

protos: install
	$(BIN)/python protos/generate.py

clean:
	rm -rf $(VENV) kerve-data .pytest_cache
