# mie_lm: two commands do everything on a fresh clone.
#   make demo   set up .venv and run the demo (the project's main job)
#   make test   set up .venv and run the whole test suite (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The tested PyTorch: a CPU build. Installed only where torch is missing, so an existing build is kept.
TORCH_PIN := torch==2.13.0

.PHONY: demo test setup test-setup docs readme export clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null

# The docs site needs npm once (the ipywidgets embed manager and MathJax are served from the site, installed
# into docs/node_modules) and its check drives a headless Chromium. Debian/Ubuntu: apt-get installs what is
# missing (Debian's chromium, never a browser download). macOS: Homebrew installs them (`node`, the `chromium`
# cask); without Homebrew, make says what to install and stops (npm) or the browser checks are skipped with that
# message (Chromium; an installed Google Chrome is used too).
UNAME := $(shell uname -s)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) apt-get install -y -q
test-setup: setup
ifeq ($(UNAME),Darwin)
	@command -v npm >/dev/null || { command -v brew >/dev/null && brew install node; } || \
	  { echo "make: npm is needed for the docs site assets: install Node.js (https://nodejs.org or brew install node)"; exit 1; }
	@$(BIN)/python tests/find_browser.py >/dev/null || { command -v brew >/dev/null && brew install --cask chromium; } || \
	  echo "make: no Chromium or Google Chrome found: the docs site's browser checks will be skipped (brew install --cask chromium)"
else
	@command -v npm >/dev/null || { $(APT) npm >/dev/null 2>&1 || { $(SUDO) apt-get update -q >/dev/null && $(APT) npm >/dev/null; }; }
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  $(APT) chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q >/dev/null && $(APT) chromium >/dev/null; }; }
endif

demo: setup
	$(BIN)/mie_lm demo

# Two pytest-xdist workers; tests that share files or a session fixture stay on one worker (xdist_group marks,
# set in tests/conftest.py). `make test TEST_WORKERS=0` runs them all in one process.
TEST_WORKERS ?= 2
test: test-setup
	$(BIN)/python -m pytest tests/ -n $(TEST_WORKERS) --dist loadgroup --durations=12

docs: setup
	$(BIN)/python tools/build_docs.py

readme: setup
	$(BIN)/python tools/make_readme.py

export: setup
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python tools/make_readme.py

clean:
	rm -rf _docs _proc build dist *.egg-info .pytest_cache
