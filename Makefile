# LesionKG: `make demo` builds and queries a demo knowledge base; `make test` runs the tests.
# Both set everything up on first use (a virtual environment in .venv, Neo4j from Maven Central).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The local Neo4j lives in $LESIONKG_HOME/neo4j (default ~/.lesionkg/neo4j), the same place the
# lesionkg command looks for it when run by hand after `make demo`.

.PHONY: setup system-packages typecheck architecture demo test test-fast lint bench bench-model bench-graph bench-etl bench-web explore neo4j-start neo4j-stop clean

setup: $(VENV)/.installed system-packages

# Java, Orthanc (+ DICOMweb) and Chromium from Debian, where missing (.ci/system-packages).
system-packages:
	bash .ci/system-packages

# --system-site-packages: torch is several GB; a machine that has it already installs it once.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

neo4j-start: setup
	@if [ -z "$$NEO4J_URI" ]; then $(BIN)/lesionkg neo4j start; fi

neo4j-stop: setup
	$(BIN)/lesionkg neo4j stop

demo: neo4j-start
	$(BIN)/lesionkg demo

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not neo4j and not slow"

# ruff (style, complexity cap, neo4j only in lesionkg/db), mypy over the whole package, and the
# layers and import cycles of the house.
lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	bash .ci/typecheck
	bash .ci/architecture

typecheck: setup
	bash .ci/typecheck

architecture: setup
	bash .ci/architecture

bench: setup
	$(BIN)/python bench/load_deeplesion.py

# The model side: embedding throughput beside a bare VGG-16 forward pass, then retrieval quality
# of a trained embedding beside the location-only baseline (trains for minutes on a CPU).
bench-model: setup
	$(BIN)/python bench/embed_throughput.py
	$(BIN)/python bench/embedding_quality.py

# The lesion graph on the real validation split (matching, linking, retrieval, in a fresh Neo4j),
# then hnswlib against exact search and Neo4j's vector index (SYNTHETIC vectors, 32k and 1M).
bench-graph: setup
	$(BIN)/python bench/graph_links.py
	$(BIN)/python bench/similarity_index.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache

# The PACS import: bookmarks/s with and without embedding (10,000 SYNTHETIC bookmarks each) and the
# inbox-to-track latency of --watch, in a fresh Neo4j.
bench-etl: setup
	$(BIN)/python bench/etl_throughput.py

# The lesion explorer on the configured Neo4j (after make demo: the demo's), http://127.0.0.1:8000.
explore: neo4j-start
	$(BIN)/lesionkg serve

# The lesion explorer under 8 concurrent clients on >= 32,000 lesions, in a fresh Neo4j.
bench-web: setup
	$(BIN)/python bench/web_explorer.py
