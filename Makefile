# Efficient LLM Inference: the two commands a fresh machine needs are `make lab` and `make test`.
# Both create a virtual environment in .venv (once) and install the course into it, every package at the version
# constraints.txt pins (`make lock` refreshes that file).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader runs `alembic` and Jupyter launches `python`: both must come from the course environment.
export PATH := $(BIN):$(PATH)

# The whole resolved set of packages, pinned: pyproject.toml pins the direct dependencies, this pins the rest.
LOCK := constraints.txt

# TORCH_INDEX=cpu (`make lab TORCH_INDEX=cpu`) also searches PyTorch's own index of CPU-only wheels. On Linux
# x86_64, PyPI's torch is a CUDA build of several GB; the CPU index's 2.13.0+cpu satisfies the ==2.13.0 pin (a
# local label is ignored by ==) and sorts above the bare 2.13.0, so pip takes it. Other PyTorch wheel variants
# (cu126, rocm6.4, ...) work the same way. Choose it on the first install, or after `make clean-env`: pip keeps
# a torch that is already installed. Empty by default: pip's own indexes only.
TORCH_INDEX ?=
ifneq ($(filter-out cpu cu% rocm% xpu,$(TORCH_INDEX)),)
  $(error TORCH_INDEX=$(TORCH_INDEX) is not a PyTorch wheel index; use TORCH_INDEX=cpu (or cu126, rocm6.4, ...))
endif
TORCH_INDEX_URL := $(if $(TORCH_INDEX),https://download.pytorch.org/whl/$(TORCH_INDEX))
PIP_FLAGS := $(strip --disable-pip-version-check --quiet $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)))

# The Python floor, as in pyproject.toml's requires-python and the README (tests/test_packaging.py checks).
CHECK_PYTHON = @$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else \
	  "Python 3.11+ is needed; found " + sys.version.split()[0] + ". Run: make PYTHON=/path/to/python3.11 ...")'

COURSE_STAMP := $(VENV)/.course-installed
DEV_STAMP    := $(VENV)/.dev-installed
ASSIGNMENTS   = $(notdir $(patsubst %/,%,$(dir $(wildcard solutions/*/*.ipynb))))

.PHONY: help lab demo test lint lock release grade collect autograde feedback export bench bench-grading clean-env \
	hub hub-setup hub-instructor hub-student hub-root check-python clean-hub-env

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(BIN)/python:
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)

# A changed pyproject.toml or a refreshed lock reinstalls (pip changes only what differs).
$(COURSE_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -c $(LOCK) -e .
	@touch $@

$(DEV_STAMP): pyproject.toml $(LOCK) $(COURSE_STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) -c $(LOCK) -e '.[dev]'
	@touch $@

# Jupyter refuses to run as root unless told; containers and some cloud machines run everything as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(COURSE_STAMP)  ## set up (once) and open the course in JupyterLab
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT)

# Presenter mode: every lesson's dashboards without code, large type, on 127.0.0.1 (no internet needed). The pages
# come from lessonlib/dashboards/registry.py; PORT=0 takes any free port.
PORT ?= 8866
demo: $(COURSE_STAMP)  ## serve the dashboards for a projector (presenter mode) and print the address to open
	$(BIN)/python -m lessonlib.dashboards.presenter --port $(PORT)

test: lint  ## set up (once), lint, and run the whole test suite
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)  ## check the Python code with ruff (configured in pyproject.toml; make test runs it first)
	$(BIN)/ruff check .

# The one way to refresh constraints.txt: resolve pyproject.toml's pins afresh, without the old lock, in a
# throwaway venv, and pin every distribution that landed there (scripts/write_constraints.py says how).
lock:  ## refresh constraints.txt from pyproject.toml (a fresh resolve in a throwaway venv)
	$(CHECK_PYTHON)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "resolving .[dev,hub] (the course, its test tools and the hub) in a throwaway venv ($$tmp/venv)"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install $(PIP_FLAGS) -e '.[dev,hub]'; \
	"$$tmp/venv/bin/python" scripts/write_constraints.py $(LOCK) $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX))

# Both folders are then written in the form JupyterLab saves them (its kernel metadata), so that opening a
# notebook does not mark it modified (lessonlib/course/notebook_form.py says why).
release: $(COURSE_STAMP)  ## regenerate notebooks/ (student versions) from solutions/ with nbgrader
	@$(BIN)/python -m lessonlib.course.notebook_form solutions
	@for a in $(ASSIGNMENTS); do \
	  echo "nbgrader generate_assignment $$a"; \
	  $(BIN)/nbgrader generate_assignment "$$a" --force --log-level=WARN || exit 1; \
	done
	@$(BIN)/python -m lessonlib.course.notebook_form notebooks

grade: $(COURSE_STAMP)  ## grade your notebooks against the hidden tests (NB=path/to/notebook.ipynb for one)
	$(BIN)/coursegrade selfgrade $(NB)

# Class grading (README: instructor guide). Each target is one `coursegrade` command; LESSON names the assignment
# and ARGS passes options on (make autograde LESSON=01_inference_costs ARGS="--student alice --force").
NEED_LESSON = $(if $(LESSON),,$(error say which lesson: LESSON=01_inference_costs))

collect: $(COURSE_STAMP)  ## import an LMS download: make collect LESSON=... DOWNLOAD=path/to/download.zip
	$(NEED_LESSON)$(if $(DOWNLOAD),,$(error say where the LMS download is: DOWNLOAD=path/to/download.zip))
	$(BIN)/coursegrade collect $(LESSON) "$(DOWNLOAD)" $(ARGS)

autograde: $(COURSE_STAMP)  ## grade every submission of a lesson, isolated and in parallel: make autograde LESSON=...
	$(NEED_LESSON)
	$(BIN)/coursegrade autograde $(LESSON) $(ARGS)

feedback: $(COURSE_STAMP)  ## write per-student feedback pages: make feedback LESSON=...
	$(NEED_LESSON)
	$(BIN)/coursegrade feedback $(LESSON) $(ARGS)

export: $(COURSE_STAMP)  ## grades to grades/grades.csv, one row per student
	$(BIN)/coursegrade export $(ARGS)

bench: $(DEV_STAMP)  ## run the benchmarks (decode vs HF generate, MoE vs Mixtral's, dashboards) into benchmarks/RESULTS.md
	$(BIN)/python benchmarks/run_all.py

bench-grading: $(DEV_STAMP)  ## measure class grading: seconds per submission per lesson, 1 vs 2 workers
	$(BIN)/python benchmarks/bench_grading.py $(ARGS)

# A class on JupyterHub (README: "A class on JupyterHub"), on this machine, run as root. HUB_ROOT holds the hub's
# own course environment (installed, not editable: no user's server reads this checkout, solutions/ included), the
# nbgrader exchange and the hub's state; hub/setup_hub.py says what goes where.
HUB_ROOT  ?= /srv/efficient-llm-inference
HUB_ENV   := $(HUB_ROOT)/env
HUB_STAMP := $(HUB_ENV)/.hub-installed
HUB_PROXY := hub/node_modules/.package-lock.json
HUB_SETUP  = $(HUB_ENV)/bin/python hub/setup_hub.py --root "$(HUB_ROOT)"
# Every user runs the hub's environment, so its base Python must be one every user can read: the system's
# (Debian: apt-get install python3-venv), not one under root's home (pyenv). Checked after the install.
HUB_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11 /usr/bin/python3.12 /usr/bin/python3.13) $(PYTHON))
COURSE_SOURCES := $(shell find lessonlib -name '*.py' -o -name '*.json' -o -name '*.pt' 2>/dev/null)

hub-root:
	@[ "$$(id -u)" = 0 ] || { echo "the hub runs as root (it starts each user's server as that user): sudo make $(MAKECMDGOALS)" >&2; exit 1; }

$(HUB_STAMP): pyproject.toml $(LOCK) $(COURSE_SOURCES) | hub-root
	@$(MAKE) --no-print-directory PYTHON=$(HUB_PYTHON) check-python
	$(HUB_PYTHON) -m venv "$(HUB_ENV)"
	"$(HUB_ENV)/bin/python" -m pip install $(PIP_FLAGS) -c $(LOCK) '.[hub]'
	@runuser -u nobody -- "$(HUB_ENV)/bin/python" -c 'import lessonlib, jupyterhub, nbgrader' || { \
	  echo "other users cannot run $(HUB_ENV)/bin/python (is its base Python under a private folder?): make clean-hub-env, then choose HUB_PYTHON=/usr/bin/python3.11" >&2; exit 1; }
	@touch $@

# configurable-http-proxy, the hub's proxy, from npm at the version hub/package-lock.json pins (needs node >= 18).
$(HUB_PROXY): hub/package.json hub/package-lock.json
	npm ci --prefix hub --no-audit --no-fund --loglevel=error

hub-setup: $(HUB_STAMP) $(HUB_PROXY) | hub-root  ## install (once) the hub, its proxy and the course into HUB_ROOT
	$(HUB_SETUP) prepare

hub-instructor: hub-setup  ## an instructor with their copy of the course: make hub-instructor NAME=... [ARGS=--create]
	$(if $(NAME),,$(error say who: NAME=login))$(HUB_SETUP) add-instructor "$(NAME)" $(ARGS)

hub-student: hub-setup  ## a student who may log in: make hub-student NAME=... [ARGS=--create]
	$(if $(NAME),,$(error say who: NAME=login))$(HUB_SETUP) add-student "$(NAME)" $(ARGS)

hub: hub-setup  ## run the class's JupyterHub on port 8000 (as root; HUB_ROOT=/srv/efficient-llm-inference)
	cd "$(HUB_ROOT)/state" && COURSE_HUB_ROOT="$(HUB_ROOT)" "$(HUB_ENV)/bin/jupyterhub" -f "$(CURDIR)/hub/jupyterhub_config.py"

check-python:
	$(CHECK_PYTHON)

clean-hub-env:  ## delete the hub's course environment (HUB_ROOT/env)
	rm -rf "$(HUB_ENV)"

clean-env:  ## delete the virtual environment
	rm -rf $(VENV)
