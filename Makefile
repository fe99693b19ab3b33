# make venv       : set up .venv (tools/setup_env.sh); skipped when up to date
# make demo       : set up .venv if needed, then train the recognition demo
#                   for real (demo/run_demo.py)
# make test       : set up .venv if needed, then run the whole test suite
#                   (PYTEST_ARGS="-x -k docs" adds pytest arguments)
# make bench      : set up .venv if needed, then run the benchmarks
#                   (bench/run.py, figures written to bench/results.json)
# make bench-smoke: the benchmarks once at tiny sizes, to check that they run
#                   (figures to work_dirs/bench-smoke.json)
# make gpu-check  : on a GPU machine, set up .venv with CUDA ops, run the gpu
#                   tests and print a summary (tools/gpu_check.sh)
# make clean      : remove work_dirs and .pytest_cache (.venv stays)
#
# Variables (on the command line, make venv MAX_JOBS=2, or in the
# environment), read by tools/setup_env.sh:
#   VENV=.venv      the environment to set up and use
#   PYTHON=python3  the interpreter that creates it
#   MAX_JOBS=N      parallel compile jobs of the mmcv-full build (all cores)
#   DAVAR_CACHE, MMCV_SDIST, WHEELHOUSE, SYSTEM_TORCH, TORCH_CUDA_ARCH_LIST:
#                   see docs/installation.md
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv test demo bench bench-smoke gpu-check clean

venv:
	@bash tools/setup_env.sh

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: venv
	$(PY) demo/run_demo.py

bench: venv
	$(PY) bench/run.py

bench-smoke: venv
	@mkdir -p work_dirs
	$(PY) bench/run.py --smoke --out work_dirs/bench-smoke.json

gpu-check:
	@bash tools/gpu_check.sh

clean:
	rm -rf work_dirs .pytest_cache
