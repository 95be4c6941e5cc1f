# The two quick-start commands: `make demo` (install + main job) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# DDS stays on this machine whenever ROS starts (tests, benchmarks, CI).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_BUILTIN_TRANSPORTS := SHM

.PHONY: install install-dev ros-interfaces demo test

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q -e .

install-dev: $(PY)
	$(PY) -m pip install -q -e '.[dev,backbones,vad,ros]'

# ROS 2 message packages (audio_common_msgs in both flavours, hri_msgs, physioser_msgs) built from
# ros/interfaces with the rosidl wheels, CMake and the C/C++ compilers; skipped when up to date.
ros-interfaces: install-dev
	$(PY) -m physioser.ros.interfaces build

demo: install
	$(VENV)/bin/physioser demo

test: ros-interfaces
	$(PY) -m pytest -n 2 --durations=15
