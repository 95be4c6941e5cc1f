# The two quick-start commands: `make demo` (install + main job) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# DDS stays on this machine whenever ROS starts (tests, benchmarks, CI).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_BUILTIN_TRANSPORTS := SHM

.PHONY: install install-dev demo test

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q -e .

install-dev: $(PY)
	$(PY) -m pip install -q -e '.[dev,backbones,vad,ros]'

demo: install
	$(VENV)/bin/physioser demo

test: install-dev
	$(PY) -m pytest -n 2 --durations=15
