# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
PORT ?= 3000

# .env (copy .env.example) is read when present; its values win over the shell's, as in `dagster dev`.
ifneq (,$(wildcard .env))
include .env
export $(shell sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*=.*/\1/p' .env)
endif

# The Dagster instance, chosen once: local (dagster.yaml here, SQLite under .dagster/) or
# production (deploy/production/dagster.yaml: PostgreSQL, queued runs, run retries).
DAGSTER_DEPLOYMENT ?= local
ifeq ($(DAGSTER_DEPLOYMENT),local)
export DAGSTER_HOME := $(CURDIR)
else ifeq ($(DAGSTER_DEPLOYMENT),production)
export DAGSTER_HOME := $(CURDIR)/deploy/production
else
$(error DAGSTER_DEPLOYMENT=$(DAGSTER_DEPLOYMENT): expected local or production)
endif
export DAGSTER_DEPLOYMENT
CELERY_CONCURRENCY ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export JAMMI_PROJECT := $(CURDIR)/jammi.yaml

.PHONY: install demo demo-data test test-fast ui validate validate-production instance celery-worker lint \
	bench bench-refresh clean

# CPU torch first, from its exact pin, so no CUDA build is ever downloaded.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,production]'
	touch $@

install: $(BIN)/.installed

demo-data: install
	$(BIN)/python -m jammi.demo.generate --out data/demo

demo: demo-data
	$(BIN)/jammi materialize
	@echo; echo "== files under artifacts/jammi_db"; ls -1 artifacts/jammi_db
	@echo; echo "== jammi status"; $(BIN)/jammi status
	@echo; echo "== DuckDB: products per category, joined with their embeddings"
	$(BIN)/jammi sql "SELECT v.category, count(*) AS products, round(avg(v.price), 2) AS avg_price, \
	  count(e._row_id) AS embedded FROM jammi.validated_products v \
	  LEFT JOIN jammi.products_embeddings e ON CAST(v.product_id AS VARCHAR) = e._row_id \
	  GROUP BY ALL ORDER BY products DESC"
	@echo; echo "== semantic search: 'waterproof jacket for rainy hikes'"
	$(BIN)/jammi search products "waterproof jacket for rainy hikes" -k 5 --select title,category,price
	@echo; echo "== fused products: how many entities each combination of sources describes"
	$(BIN)/jammi sql "SELECT _sources, count(*) AS entities FROM jammi.fused_product GROUP BY 1 ORDER BY 2 DESC"
	@echo; echo "== provenance of one entity known to all three sources"
	$(BIN)/jammi sql "SELECT p.field, p.value, p.source, p.rule, p.conflict FROM jammi.fused_product_provenance p \
	  WHERE p.product_key = (SELECT min(product_key) FROM jammi.fused_product WHERE _record_count = 3) ORDER BY 1"
	@echo; echo "== semantic search over fused products: 'ergonomic office chair'"
	$(BIN)/jammi search product_entities "ergonomic office chair" -k 3 --select title,brand,price,on_hand
	@echo; echo "== document search over the chunked reports: 'apple harvest and cider'"
	$(BIN)/jammi search reports "apple harvest and cider" --documents -k 3

# Tests make their own instances and choose executors themselves, whatever .env says. Two
# pytest-xdist workers, a test file each at a time (module fixtures such as an S3 server are
# shared within a file): many tests wait on subprocesses and servers, so two CPUs do twice the work.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile
test: install
	env -u JAMMI_EXECUTOR -u DAGSTER_DEPLOYMENT DAGSTER_HOME=$(CURDIR) $(PYTEST)

# The fast loop while changing the engine: every test but those marked slow (model-heavy,
# end-to-end, subprocess or benchmark-like ones); under 3 minutes on 2 CPUs. `make test` runs all.
test-fast: install
	env -u JAMMI_EXECUTOR -u DAGSTER_DEPLOYMENT DAGSTER_HOME=$(CURDIR) $(PYTEST) -m "not slow"

ui: install
	@test -f data/demo/products.csv || $(BIN)/python -m jammi.demo.generate --out data/demo
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

# The deployment files, without a cluster, broker or database: both instance files against the
# schemas of Dagster, dagster-postgres and dagster-k8s, and the code location loaded with the
# celery and the Kubernetes executor (deploy/k8s/executor.yaml checked against its schema).
validate-production: install
	$(BIN)/python -m jammi_assets.deployment check deploy/production deploy/k8s
	JAMMI_EXECUTOR=celery $(BIN)/dagster definitions validate -w workspace.yaml
	JAMMI_EXECUTOR=k8s $(BIN)/dagster definitions validate -w workspace.yaml

# Create or upgrade the instance's tables (once, before the first webserver, daemon or worker).
instance: install
	$(BIN)/dagster instance migrate

# One Celery worker (run several) for runs with JAMMI_EXECUTOR=celery; same broker, backend and
# queue variables as the executor. CELERY_CONCURRENCY steps at once, each with its own model.
celery-worker: install
	$(BIN)/python -m jammi_assets.executors celery-worker --concurrency $(CELERY_CONCURRENCY)

# ruff, then mypy over jammi, jammi_assets, resources and sensors ([tool.mypy] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/embed_overhead.py

bench-refresh: install
	$(BIN)/python bench/refresh.py

clean:
	rm -rf artifacts data/demo .dagster

# The documentation site (mkdocs.yml, docs/). docs/gen.py writes the generated pages: the CLI
# reference from the click commands, the benchmark tables from bench/results/*.json, the layout
# from the tree. docs-build is what CI runs: it fails when a generated page is stale, a link or
# anchor is broken or a page is missing from the nav.
.PHONY: docs docs-build docs-gen
DOCS_PORT ?= 8000
export NO_MKDOCS_2_WARNING := 1

docs-gen: install
	$(BIN)/python docs/gen.py

docs: docs-gen
	$(BIN)/mkdocs serve -a 127.0.0.1:$(DOCS_PORT)

# Silent when all is well, so pytest's summary stays the last line of .ci/run's output (mkdocs's
# --quiet would also hide the warnings --strict counts, so its output is shown only on failure).
docs-build: install
	@$(BIN)/python docs/gen.py --check
	@out=$$($(BIN)/mkdocs build --strict 2>&1) || { echo "$$out"; exit 1; }
