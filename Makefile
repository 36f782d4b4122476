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

.PHONY: help lab demo test lint lock release grade collect autograde feedback export bench bench-grading clean-env

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
	echo "resolving .[dev] in a throwaway venv ($$tmp/venv)"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install $(PIP_FLAGS) -e '.[dev]'; \
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

clean-env:  ## delete the virtual environment
	rm -rf $(VENV)
