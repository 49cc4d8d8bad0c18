# Every target sets up what it needs: a fresh clone runs `make sample` or `make test` directly.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: sample test lint wheel clean

$(VENV)/installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

sample: $(VENV)/installed  ## 64 faces from the shipped dcgan_faces preset -> faces.png
	$(BIN)/keras-gen sample dcgan_faces -n 64 --seed 0 -o faces.png

test: $(VENV)/installed  ## the whole test suite
	$(BIN)/python -m pytest

lint: $(VENV)/installed
	$(BIN)/python -m ruff check keras_gen tests tools

wheel: $(VENV)/installed
	$(BIN)/python -m pip wheel --no-deps --wheel-dir dist .

clean:
	rm -rf $(VENV) dist build *.egg-info
