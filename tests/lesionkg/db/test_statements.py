import re

import pytest

from lesionkg.core.errors import QueryError
from lesionkg.db.statements import (
    bind_params,
    queries,
    query,
    schema_statements,
    split_statements,
    statement,
)

REQUIRED_QUERIES = {
    "patient_timeline",
    "lesions_by_type_and_size",
    "lesions_in_box",
    "largest_lesions_per_patient",
    "type_distribution",
    "studies_with_most_lesions",
}


def test_schema_is_idempotent_and_covers_the_three_ids():
    stmts = schema_statements()
    assert all(re.search(r"\bIF NOT EXISTS\b", s) for s in stmts)
    text = " ".join(stmts)
    for label, prop in (("Patient", "patient_id"), ("Study", "study_id"), ("Lesion", "lesion_id")):
        assert re.search(rf"\(\w+:{label}\) REQUIRE \w+\.{prop} IS UNIQUE", text)


def test_split_statements_drops_comments_and_blank_parts():
    script = "// header\nCREATE INDEX a IF NOT EXISTS FOR (n:X) ON (n.a);\n\n// c\nRETURN 1;\n"
    assert split_statements(script) == [
        "CREATE INDEX a IF NOT EXISTS FOR (n:X) ON (n.a)",
        "RETURN 1",
    ]


def test_store_statements_take_parameters_not_formatted_values():
    for name in ("db/upsert_patients", "db/upsert_studies", "db/upsert_lesions", "db/lesion_types"):
        text = statement(name)
        assert "UNWIND $rows AS row" in text
        assert "{}" not in text and "%s" not in text


def test_unknown_statement_names_the_file():
    with pytest.raises(QueryError, match=r"store/nope\.cypher"):
        statement("nope")


def test_every_query_has_a_header_with_description_and_example():
    found = queries()
    assert set(found) >= REQUIRED_QUERIES
    for spec in found.values():
        assert spec.description, spec.name
        assert spec.example.startswith(f"lesionkg query {spec.name}"), spec.name
        # every declared parameter is used, every used parameter is declared
        used = set(re.findall(r"\$(\w+)", re.sub(r"^//.*$", "", spec.text, flags=re.M)))
        assert used == {p.name for p in spec.params}, spec.name


def test_bind_params_converts_types_and_fills_defaults():
    spec = query("lesions_by_type_and_size")
    bound = bind_params(spec, {"coarse_type": "4", "min_mm": "12.5"})
    assert bound == {"coarse_type": 4, "min_mm": 12.5, "max_mm": 10000.0, "limit": 100}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "needs --param coarse_type=<INTEGER>"),
        ({"coarse_type": "liver"}, "coarse_type: expected INTEGER, got 'liver'"),
        ({"coarse_type": "4", "min_mm": "nan"}, "min_mm: expected FLOAT"),
        ({"coarse_type": "4", "colour": "red"}, "has no parameter colour"),
    ],
)
def test_bind_params_rejects_bad_values_clearly(raw, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        bind_params(query("lesions_by_type_and_size"), raw)


def test_unknown_query_lists_the_known_ones():
    with pytest.raises(QueryError, match="patient_timeline"):
        query("no_such_query")
