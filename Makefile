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

# Headless Chromium for the docs site check (Debian's package; never a browser download).
test-setup: setup
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

demo: setup
	$(BIN)/mie_lm demo

test: test-setup
	$(BIN)/python -m pytest tests/ --durations=12

docs: setup
	$(BIN)/python tools/build_docs.py

readme: setup
	$(BIN)/python tools/make_readme.py

export: setup
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python tools/make_readme.py

clean:
	rm -rf _docs _proc build dist *.egg-info .pytest_cache
