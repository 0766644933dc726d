"""lesionkg.db.guard: ad-hoc Cypher runs read-only, with a timeout and a row cap, on the
explorer tests' graph (the real validation split and a SYNTHETIC cohort)."""

from __future__ import annotations

import pytest

from lesionkg.core.errors import QueryError
from lesionkg.db.guard import query_type, run_read_only
from lesionkg.db.schema import counts

pytestmark = pytest.mark.neo4j
DB = "neo4j"


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE (:Intruder)",
        "MATCH (l:Lesion) SET l.noisy = true",
        "MATCH (n) DETACH DELETE n",
        "MERGE (p:Patient {patient_id: 'x'}) RETURN p",
        "MATCH (l:Lesion) REMOVE l.location",
        "CREATE INDEX intruder IF NOT EXISTS FOR (n:Intruder) ON (n.x)",
        "DROP CONSTRAINT lesion_id_unique",
        "LOAD CSV FROM 'file:///etc/passwd' AS row CREATE (:Intruder {row: row})",
    ],
)
def test_writes_are_refused_before_they_run(explorer_graph, statement):
    before = counts(explorer_graph, DB)
    with pytest.raises(QueryError, match="refused"):
        run_read_only(explorer_graph, DB, statement)
    assert counts(explorer_graph, DB) == before


def test_reads_come_back_with_rows_nodes_and_a_cap(explorer_graph):
    assert query_type(explorer_graph, DB, "MATCH (n) RETURN count(n)", {}) == "r"
    result = run_read_only(
        explorer_graph,
        DB,
        "MATCH (p:Patient {patient_id: $id})-[r:HAS_STUDY]->(s) RETURN p, r, s",
        {"id": "000002"},
    )
    assert result.columns == ["p", "r", "s"] and not result.truncated
    assert len(result.rows) == len(result.relationships)
    assert len(result.nodes) == 1 + len(result.rows)
    capped = run_read_only(explorer_graph, DB, "MATCH (l:Lesion) RETURN l.lesion_id", max_rows=7)
    assert len(capped.rows) == 7 and capped.truncated
    every = run_read_only(explorer_graph, DB, "MATCH (l:Lesion) RETURN l.lesion_id", max_rows=None)
    assert len(every.rows) == counts(explorer_graph, DB)["Lesion"] and not every.truncated


def test_timeout_and_syntax_errors_are_query_errors(explorer_graph):
    with pytest.raises(QueryError, match="longer than"):
        run_read_only(
            explorer_graph,
            DB,
            "UNWIND range(1, 1000000000) AS x WITH x WHERE x % 7 = 99 RETURN count(x)",
            timeout_s=0.5,
        )
    with pytest.raises(QueryError, match="Syntax"):
        run_read_only(explorer_graph, DB, "MATCH (n RETURN n")
    with pytest.raises(QueryError, match="EXPLAIN and PROFILE"):
        run_read_only(explorer_graph, DB, "PROFILE MATCH (n) RETURN n")
