# Efficient LLM Inference: the two commands a fresh machine needs are `make lab` and `make test`.
# Both create a virtual environment in .venv (once) and install the course into it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader runs `alembic` and Jupyter launches `python`: both must come from the course environment.
export PATH := $(BIN):$(PATH)

COURSE_STAMP := $(VENV)/.course-installed
DEV_STAMP    := $(VENV)/.dev-installed
ASSIGNMENTS   = $(notdir $(patsubst %/,%,$(dir $(wildcard solutions/*/*.ipynb))))

.PHONY: help lab test release grade bench clean-env

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else \
	  "Python 3.10+ is needed (3.11 recommended); found " + sys.version.split()[0] + ". Run: make PYTHON=/path/to/python3.11 ...")'
	$(PYTHON) -m venv $(VENV)

$(COURSE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml $(COURSE_STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -e '.[dev]'
	@touch $@

# Jupyter refuses to run as root unless told; containers and some cloud machines run everything as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(COURSE_STAMP)  ## set up (once) and open the course in JupyterLab
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT)

test: $(DEV_STAMP)  ## set up (once) and run the whole test suite
	$(BIN)/python -m pytest

release: $(COURSE_STAMP)  ## regenerate notebooks/ (student versions) from solutions/ with nbgrader
	@for a in $(ASSIGNMENTS); do \
	  echo "nbgrader generate_assignment $$a"; \
	  $(BIN)/nbgrader generate_assignment "$$a" --force --log-level=WARN || exit 1; \
	done

grade: $(COURSE_STAMP)  ## grade your notebooks against the hidden tests (NB=path/to/notebook.ipynb for one)
	$(BIN)/python -m lessonlib.course.selfgrade $(NB)

bench: $(DEV_STAMP)  ## run the benchmarks (lessonlib decode vs Hugging Face generate)
	$(BIN)/python benchmarks/bench_decode_vs_hf.py

clean-env:  ## delete the virtual environment
	rm -rf $(VENV)
