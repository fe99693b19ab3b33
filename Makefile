# make venv       : set up .venv (tools/setup_env.sh); skipped when up to date
# make demo       : set up .venv if needed, then train the recognition demo
#                   for real (demo/run_demo.py)
# make test       : set up .venv if needed, then run the whole test suite
#                   (PYTEST_ARGS="-x -k docs" adds pytest arguments)
# make test NUMPY=2: the same with numpy 2, in .venv-numpy2
# make bench      : set up .venv if needed, then run the benchmarks
#                   (bench/run.py, figures written to bench/results.json)
# make bench-smoke: the benchmarks once at tiny sizes, to check that they run
#                   (figures to work_dirs/bench-smoke.json)
# make gpu-check  : on a GPU machine, set up .venv with CUDA ops, run the gpu
#                   tests and print a summary (tools/gpu_check.sh)
# make gpu-bundle : the wheels and mmcv-full sdist an offline GPU image lacks,
#                   into .gpu-bundle (tools/gpu_bundle.sh)
# make clean      : remove work_dirs and .pytest_cache (.venv stays)
#
# Variables (on the command line, make venv MAX_JOBS=2, or in the
# environment), read by tools/setup_env.sh:
#   VENV=.venv      the environment to set up and use (.venv-numpy2 with NUMPY=2)
#   PYTHON=python3  the interpreter that creates it (python3.12, ...)
#   NUMPY=1         1: numpy<2; 2: numpy 2 (tools/constraints-numpy2.txt)
#   TORCH_VERSION   a torch release to install instead of the pinned one
#                   (2.11.0: the torch of the GPU image)
#   MAX_JOBS=N      parallel compile jobs of the mmcv-full build (all cores)
#   DAVAR_CACHE, MMCV_SDIST, WHEELHOUSE, SYSTEM_TORCH, TORCH_CUDA_ARCH_LIST:
#                   see docs/installation.md
NUMPY ?= 1
VENV ?= $(if $(filter 2,$(NUMPY)),.venv-numpy2,.venv)
export VENV NUMPY
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv test demo bench bench-smoke gpu-check gpu-bundle clean

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

gpu-bundle: venv
	@PYTHON=$(PY) bash tools/gpu_bundle.sh

clean:
	rm -rf work_dirs .pytest_cache
