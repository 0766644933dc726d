"""Cohort questions in Python: similar lesions and patients, a patient's tracks and response.

The caller owns the driver; every function reads in READ access mode and takes ``database``. The
Cypher lives in the library: the named queries ``similar_lesions``, ``similar_patients`` and
``patient_tracks`` (also ``lesionkg query NAME``) and the store statement ``track_measurements``.
An unknown lesion or patient raises :class:`~lesionkg.core.errors.QueryError` naming it; a known one
with nothing to show gives an empty list.

What the graph must hold: ``Lesion.track_id`` (tracks, responses), ``SIMILAR_TO {space, rank}``
edges (similar patients), and for similar lesions the space's vector property with its vector
index: ``Lesion.cues`` in ``lesion_cues``, ``Lesion.embedding`` in ``lesion_triplet``.
"""

from __future__ import annotations

from typing import Any

from lesionkg.core.errors import QueryError
from lesionkg.core.records import COARSE_TYPES
from lesionkg.core.response import ResponseReport, TrackMeasurement, assess_response
from lesionkg.db.driver import Driver
from lesionkg.db.queries import run_cypher
from lesionkg.db.statements import query, statement

#: embedding space -> the Lesion property holding its vectors
SPACES: dict[str, str] = {"cues": "cues", "triplet": "embedding"}
#: similar_lesions widens its index search up to this many candidates when filters leave < k
MAX_CANDIDATES = 10_000
_CANDIDATE_GROWTH = 5


def _run_named(driver: Driver, database: str, name: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a named query with typed parameters; undeclared ones fall back to the defaults."""
    spec = query(name)
    values = {p.name: p.default for p in spec.params if not p.required} | params
    return run_cypher(driver, database, spec.text, values).as_dicts()


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise QueryError(f"unknown embedding space {space!r}; expected one of {', '.join(SPACES)}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QueryError(f"{name} must be a positive integer, got {value!r}")


def _type_filter(coarse_type: int | str | None) -> str:
    """The ``type`` parameter of similar_lesions: a code or name checked against COARSE_TYPES."""
    if coarse_type is None:
        return "any"
    text = str(coarse_type).strip().lower()
    names = {name.lower() for name in COARSE_TYPES.values()}
    codes = {str(code) for code in COARSE_TYPES}
    if isinstance(coarse_type, bool) or text not in names | codes | {"any", "unlabelled"}:
        raise QueryError(
            f"unknown coarse type {coarse_type!r}; expected a code 1..8, a name "
            f"({', '.join(COARSE_TYPES.values())}), 'unlabelled' or None"
        )
    return text


def _patient_measurements(driver: Driver, patient_id: str, database: str) -> list[TrackMeasurement]:
    """The patient's tracked measurements; :class:`QueryError` when the patient is unknown."""
    rows = run_cypher(
        driver, database, statement("graph/track_measurements"), {"patient_id": patient_id}
    ).as_dicts()
    if not rows:
        raise QueryError(f"no patient {patient_id!r} in the graph")
    # A known patient without tracked lesions comes back as one row of nulls.
    return [
        TrackMeasurement(
            track_id=r["track_id"],
            lesion_id=r["lesion_id"],
            study_index=r["study_index"],
            series_id=r["series_id"],
            long_axis_mm=r["long_axis_mm"],
            coarse_type=r["coarse_type"],
        )
        for r in rows
        if r["track_id"] is not None
    ]


def _require_patient(driver: Driver, patient_id: str, database: str) -> None:
    _patient_measurements(driver, patient_id, database)


def similar_lesions(
    driver: Driver,
    lesion_id: str,
    *,
    k: int = 10,
    space: str = "cues",
    other_patients: bool = True,
    coarse_type: int | str | None = None,
    min_mm: float = 0.0,
    candidates: int = 200,
    database: str = "neo4j",
) -> list[dict[str, Any]]:
    """The ``k`` lesions nearest to ``lesion_id`` in ``space`` ("cues" or "triplet").

    Rows (closest first): ``lesion_id``, ``patient_id``, ``study_index``, ``type``,
    ``type_predicted``, ``long_axis_mm`` (mm) and ``similarity`` (the vector index's score in 0..1,
    higher is closer). ``coarse_type`` keeps lesions of that code (1..8) or name ("liver"), by
    label or else predicted type; "unlabelled" keeps lesions with neither. ``min_mm`` is the
    smallest long axis in mm. The index is asked for ``candidates`` lesions before the filters;
    when they leave fewer than ``k``, the search widens (x5 each time) up to
    :data:`MAX_CANDIDATES`, so the answer is exact unless the filters are stricter than that.
    Raises :class:`QueryError` for an unknown lesion, one without the space's vector, an unknown
    space or type, or a missing vector index.
    """
    _check_space(space)
    _check_count("k", k)
    _check_count("candidates", candidates)
    params = {
        "lesion_id": lesion_id,
        "space": space,
        "k": k,
        "other_patients": bool(other_patients),
        "type": _type_filter(coarse_type),
        "min_mm": float(min_mm),
    }
    fetch = max(candidates, k + 1)
    while True:
        rows = _run_named(driver, database, "similar_lesions", candidates=fetch, **params)
        if len(rows) >= k or fetch >= MAX_CANDIDATES:
            break
        fetch = min(fetch * _CANDIDATE_GROWTH, MAX_CANDIDATES)
    if not rows:
        # Empty is a fine answer for strict filters, not for a lesion that cannot be searched.
        found = _run_named(driver, database, "lesion", lesion_id=lesion_id)
        if not found:
            raise QueryError(f"no lesion {lesion_id!r} in the graph")
        if found[0]["lesion"].get(SPACES[space]) is None:
            raise QueryError(
                f"lesion {lesion_id!r} has no {space} vector (Lesion.{SPACES[space]}) "
                "to search with"
            )
    return rows


def similar_patients(
    driver: Driver,
    patient_id: str,
    *,
    k: int = 10,
    space: str = "cues",
    database: str = "neo4j",
) -> list[dict[str, Any]]:
    """The ``k`` patients best linked to ``patient_id`` by SIMILAR_TO edges of ``space``.

    Rows (best first): ``patient_id``, ``score`` (sum over the patient's tracks of the best
    reciprocal rank 1/rank into the other patient), ``matched_tracks``, ``matched_lesions``,
    ``edges`` and ``best_rank``; see ``cypher/queries/similar_patients.cypher``. Raises
    :class:`QueryError` for an unknown patient or space.
    """
    _check_space(space)
    _check_count("k", k)
    rows = _run_named(driver, database, "similar_patients", patient_id=patient_id, space=space, k=k)
    if not rows:
        _require_patient(driver, patient_id, database)
    return rows


def patient_tracks(driver: Driver, patient_id: str, *, database: str = "neo4j") -> list[dict]:
    """The patient's lesion tracks, first seen first.

    Rows: ``track_id``, ``type``, ``type_predicted``, ``measurements``, ``studies``,
    ``first_study_index``, ``last_study_index``, ``first_long_axis_mm``, ``last_long_axis_mm``,
    ``change_mm`` (mm), ``change_pct`` (% of the first; ``None`` when that is 0 mm) and
    ``lesion_ids`` in time order. Raises :class:`QueryError` for an unknown patient.
    """
    rows = _run_named(driver, database, "patient_tracks", patient_id=patient_id)
    if not rows:
        _require_patient(driver, patient_id, database)
    return rows


def patient_response(driver: Driver, patient_id: str, *, database: str = "neo4j") -> ResponseReport:
    """The RECIST 1.1-style response of each follow-up study (see :mod:`lesionkg.core.response`).

    Raises :class:`QueryError` for an unknown patient; a patient without tracked lesions gets a
    report with no baseline and no studies.
    """
    return assess_response(patient_id, _patient_measurements(driver, patient_id, database))
