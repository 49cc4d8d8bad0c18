# Every target sets up what it needs: a fresh clone runs `make sample` or `make test` directly.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: sample test browser lint wheel clean

$(VENV)/installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

sample: $(VENV)/installed  ## 64 faces from the shipped dcgan_faces preset -> faces.png
	$(BIN)/keras-gen sample dcgan_faces -n 64 --seed 0 -o faces.png

# Test files run in parallel, one file per worker (its module fixtures built once):
# tracing tiny models is single-threaded Python, and workers also wait on subprocesses.
# tests/conftest.py sets how many workers `-n auto` starts (cores + 1, at most 4).
test: $(VENV)/installed browser  ## the whole test suite
	$(BIN)/python -m pytest -n auto --dist loadfile

# tests/test_web.py runs a real headless Chromium (Debian's package) on onnxruntime-web
# (npm, pinned and hash-checked, cached in ~/.cache/keras_gen). Both are fetched once.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: $(VENV)/installed
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; fi
	$(BIN)/python -c 'from keras_gen import web; web.runtime()'

lint: $(VENV)/installed
	$(BIN)/python -m ruff check keras_gen tests tools

wheel: $(VENV)/installed
	$(BIN)/python -m pip wheel --no-deps --wheel-dir dist .

clean:
	rm -rf $(VENV) dist build *.egg-info
