# Opspawn developer commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Each pytest worker starts a stack of its own (control plane, kubelet, NATS, Postgres).
TEST_WORKERS ?= 2

.PHONY: install lint test manifests demo dev-up dev-down binaries image bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP) ## Create .venv and install opspawn with its test extras

binaries: $(STAMP) ## Find, download or build the control-plane binaries, helm, kubeconform, weaviate-server (cached)
	$(BIN)/python -c "from opspawn.dev.binaries import control_plane_binaries as c; [print(p) for p in c().values()]"
	$(BIN)/python -m opspawn.dev.tools

image: $(STAMP) ## Build the image with buildah on a Debian base made with mmdebstrap; docker-archive in ~/.cache/opspawn/images (cached by source hash)
	$(BIN)/python -m opspawn.dev.image

lint: $(STAMP) ## ruff, mypy --strict, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) binaries ## The whole test suite, on the real local stack
	$(BIN)/pytest -n $(TEST_WORKERS)

manifests: $(STAMP) ## Regenerate crds/ (and the chart's copy) from the API models, manifests/ from the chart, the reference docs
	$(BIN)/opspawn crds generate --output-dir crds --output-dir charts/opspawn/crds
	$(BIN)/python -m opspawn.dev.manifests
	$(BIN)/python -m opspawn.dev.reference_docs

bench: $(STAMP) binaries ## Run every benchmark on the local stack; results, table and chart in bench/results
	$(BIN)/pip install --quiet -e '.[bench]'
	for script in launch ingest runner scale; do $(BIN)/python bench/$$script.py || exit 1; done
	$(BIN)/python bench/report.py

dev-up: $(STAMP) ## Start the local stack in the background
	$(BIN)/opspawn dev up

dev-down: $(STAMP) ## Stop the local stack
	$(BIN)/opspawn dev down

demo: $(STAMP) ## Bring the stack up and run an example AgentTask to its end (a real provider when its key is exported)
	$(BIN)/opspawn dev demo

clean:
	rm -rf $(VENV) .opspawn .mypy_cache .ruff_cache .pytest_cache
