# `make demo` and `make test` each create (or reuse) the local virtualenv .venv, then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/tiny_cpu.yaml

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vthink train $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest tests -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info engine/_native*.so runs data
