# make demo : set up .venv if needed, then train the recognition demo for real
# make test : set up .venv if needed, then run the whole test suite
# make bench: set up .venv if needed, then run the benchmarks
# make gpu-check: on a GPU machine, set up .venv (CUDA ops), run the gpu tests, summarize
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
	$(PY) bench/run.py --smoke

gpu-check:
	@bash tools/gpu_check.sh

clean:
	rm -rf work_dirs .pytest_cache
