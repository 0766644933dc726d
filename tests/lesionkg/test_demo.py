"""The demo's size query is chosen from the graph at hand, so that it shows lesions."""

from __future__ import annotations

from lesionkg.db.queries import QueryResult
from lesionkg.demo import _size_query

COLUMNS = ["code", "name", "lesions", "patients", "median_long_axis_mm"]


def test_the_most_frequent_labelled_type_from_its_median() -> None:
    # The type distribution of the SYNTHETIC demo cohort (make demo, 2026-12-03).
    types = QueryResult(
        COLUMNS,
        [
            [None, "unlabelled", 335, 47, 15.96],
            [6, "kidney", 28, 4, 18.8],
            [8, "pelvis", 20, 4, 26.33],
            [4, "liver", 8, 6, 14.5],
        ],
    )
    title, name, params = _size_query(types)
    assert name == "lesions_by_type_and_size"
    assert title == "Kidney lesions of 18 mm or more"
    assert params == {"coarse_type": "6", "min_mm": "18", "limit": "5"}


def test_nothing_labelled_asks_for_large_liver_lesions() -> None:
    title, _, params = _size_query(QueryResult(COLUMNS, [[None, "unlabelled", 12, 3, 20.0]]))
    assert title == "Liver lesions of 30 mm or more"
    assert params == {"coarse_type": "4", "min_mm": "30", "limit": "5"}
