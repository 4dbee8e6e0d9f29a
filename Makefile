# `make run` and `make test` work on a fresh clone: each creates .venv when missing
# and installs the pinned dependencies (requirements.lock) plus this package.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run release docs talker talker-ablations test browser ui bench ablations infra-up infra-down lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing dependencies into $(VENV) (first time: several minutes)"
	@start=$$(date +%s); \
	$(BIN)/python -m pip install -q --upgrade "pip>=24" && \
	$(BIN)/python -m pip install -q -r requirements.lock && \
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . && \
	echo "install took $$(( $$(date +%s) - start )) s"
	@touch $(STAMP)

run: $(STAMP)  ## the whole pipeline through Prefect + DVC, logged to MLflow
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd pipeline

release: $(STAMP)  ## the shipped models, trained long in release/ (release.yaml; hours on 2 cores, resumable) -> weights/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd release

talker: $(STAMP)  ## the talking face after `make run` (flow sclmd-talker: synth_video, train_talker, evaluate_talker) -> reports/talker/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd talker

talker-ablations: $(STAMP)  ## the talker's ablations on the val speakers (after `make talker`) -> reports/talker_ablations/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd talker-ablations

test: $(STAMP) browser  ## the test suite
	@# two xdist workers: much of a test is process start-up, imports and servers coming up, which the
	@# second core overlaps; the tests of the session's pipeline run share one worker (tests/conftest.py)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2

browser:  ## Debian's chromium + chromium-driver for the demo page's browser test (apt, never a browser download)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver for the browser test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "could not install chromium (needs apt and root): the browser test will say so"; }

docs: $(STAMP)  ## the documentation site, offline: generated reference and results pages, then mkdocs build --strict -> site/
	$(BIN)/python -m sclmd.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

ablations: $(STAMP)  ## Table 4 ablations + prior-weight sweep (after `make run`; 53 min on 2 cores) -> reports/ablations/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd ablations

ui: $(STAMP)  ## the MLflow UI on http://127.0.0.1:5000
	$(BIN)/sclmd ui

infra-up: $(STAMP)  ## Prefect server + worker (pool `local`) and MLflow server on 127.0.0.1; state in .infra/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd infra up

infra-down: $(STAMP)  ## stop what infra-up started
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sclmd infra down

bench: $(STAMP)  ## benchmarks (pretrain, ldm and precision need `make run` first); results land in benchmarks/results/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/dataloader.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/pretrain.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/ldm.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/precision.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/first_stage.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/face_decode.py

lock:  ## re-pin requirements.lock from pyproject.toml (needs the registry)
	rm -rf /tmp/sclmd-lock && $(PYTHON) -m venv /tmp/sclmd-lock
	/tmp/sclmd-lock/bin/pip install -q --upgrade "pip>=24" && /tmp/sclmd-lock/bin/pip install -q '.[dev]'
	/tmp/sclmd-lock/bin/pip freeze --exclude sclmd > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
