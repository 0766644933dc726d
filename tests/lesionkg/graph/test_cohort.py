"""lesionkg.graph.cohort and its named queries on a small hand-made graph, against hand-computed
answers.

Three patients with tracks (FOLLOWED_BY), SIMILAR_TO edges and 4-D ``cues`` vectors in a
``lesion_cues`` vector index the test creates itself (the real schema's has another dimension, so
the fixture drops it before and after), plus a fourth patient without tracked lesions.
"""

from __future__ import annotations

import itertools

import pytest

from lesionkg.core.errors import QueryError
from lesionkg.core.records import COARSE_TYPES
from lesionkg.db.queries import run_named
from lesionkg.graph import cohort

pytestmark = pytest.mark.neo4j
DB = "neo4j"
P1, P2, P3, P4 = "000001", "000002", "000003", "000004"

# lesion_id: (patient, study_index, series, track, coarse_type, predicted_type, long axis mm, cues)
LESIONS = {
    "P1-T1-1": (P1, 1, 1, "T1", 4, None, 50.0, [0.0, 0.0, 0.0, 0.0]),
    "P1-T2-1b": (P1, 1, 1, "T2", 5, None, 30.0, None),
    "P1-T2-1a": (P1, 1, 2, "T2", 5, None, 32.0, None),  # a second series measured T2 larger
    "P1-T4-1": (P1, 1, 1, "T4", None, 4, 40.0, None),  # unlabelled, predicted liver
    "P1-T5-1": (P1, 1, 1, "T5", 4, None, 20.0, None),  # third liver lesion: not a target
    "P1-T1-2": (P1, 2, 1, "T1", 4, None, 35.0, [0.5, 0.0, 0.0, 0.0]),
    "P1-T2-2": (P1, 2, 1, "T2", 5, None, 21.0, None),
    "P1-T4-2": (P1, 2, 1, "T4", None, 4, 28.0, None),
    "P1-T5-2": (P1, 2, 1, "T5", 4, None, 25.0, None),
    "P1-T1-3": (P1, 3, 1, "T1", 4, None, 45.0, None),
    "P1-T3-3": (P1, 3, 1, "T3", None, 7, 15.0, [0.0, 0.0, 0.0, 1.2]),  # new, predicted soft tissue
    "P2-U1-1": (P2, 1, 1, "U1", 4, None, 30.0, [1.0, 0.0, 0.0, 0.0]),
    "P2-U1-2": (P2, 2, 1, "U1", 4, None, 33.0, [0.0, 0.0, 2.0, 0.0]),
    "P3-V1-1": (P3, 1, 1, "V1", 5, None, 25.0, [0.0, 0.0, 0.0, 3.0]),
    "P3-V2-1": (P3, 1, 1, "V2", 4, None, 8.0, [0.0, 1.5, 0.0, 0.0]),
    "P3-V3-1": (P3, 1, 1, "V3", None, None, 12.0, [2.5, 0.0, 0.0, 0.0]),  # no type at all
    "P4-X-1": (P4, 1, 1, None, 4, None, 18.0, None),  # not matched into a track
}

# (from, to, space, rank)
SIMILAR = [
    ("P1-T1-1", "P2-U1-1", "cues", 1),
    ("P1-T1-1", "P3-V2-1", "cues", 2),
    ("P1-T1-1", "P2-U1-2", "cues", 3),
    ("P1-T1-2", "P2-U1-2", "cues", 1),
    ("P1-T1-2", "P3-V1-1", "cues", 3),
    ("P1-T2-1b", "P3-V1-1", "cues", 1),
    ("P1-T4-1", "P2-U1-1", "cues", 4),
    ("P1-T1-3", "P1-T1-1", "cues", 1),  # same patient: never counts
    ("P1-T2-1b", "P2-U1-1", "triplet", 1),
    ("P2-U1-1", "P1-T1-1", "cues", 1),  # into P1: counts for P2's neighbours only
]

BUILD_PATIENTS = """
UNWIND $patients AS pid
CREATE (:Patient {patient_id: pid, dataset: 'synthetic'})
"""
BUILD_STUDIES = """
UNWIND $studies AS s
MATCH (p:Patient {patient_id: s.patient_id})
CREATE (p)-[:HAS_STUDY]->(:Study {study_id: s.study_id, patient_id: s.patient_id,
                                  study_index: s.study_index, patient_age: 60.0})
"""
BUILD_LESIONS = """
UNWIND $lesions AS r
MATCH (s:Study {study_id: r.props.study_id})
CREATE (s)-[:HAS_LESION]->(l:Lesion)
SET l = r.props
WITH l, r
MATCH (t:LesionType {code: r.props.coarse_type})
CREATE (l)-[:OF_TYPE]->(t)
"""
BUILD_FOLLOWED_BY = """
UNWIND $pairs AS pair
MATCH (a:Lesion {lesion_id: pair[0]}), (b:Lesion {lesion_id: pair[1]})
CREATE (a)-[:FOLLOWED_BY {score: 1.0, same_study: a.study_index = b.study_index}]->(b)
"""
BUILD_SIMILAR = """
UNWIND $edges AS e
MATCH (a:Lesion {lesion_id: e.a}), (b:Lesion {lesion_id: e.b})
CREATE (a)-[:SIMILAR_TO {space: e.space, rank: e.rank, distance: toFloat(e.rank)}]->(b)
"""
CUES_INDEX = """
CREATE VECTOR INDEX lesion_cues IF NOT EXISTS FOR (l:Lesion) ON l.cues
OPTIONS {indexConfig: {`vector.dimensions`: 4, `vector.similarity_function`: 'euclidean',
                       `vector.quantization.enabled`: false}}
"""


def _props(lesion_id: str) -> dict:
    patient, study, series, track, coarse, predicted, mm, cues = LESIONS[lesion_id]
    props = {
        "lesion_id": lesion_id,
        "patient_id": patient,
        "study_id": f"{patient}_{study:02d}",
        "study_index": study,
        "series_id": series,
        "file_name": f"{patient}_{study:02d}_{series:02d}_100.png",
        "key_slice": 100,
        "long_axis_mm": mm,
        "short_axis_mm": mm / 2,
        "location": [0.5, 0.5, 0.5],
        "coarse_type": coarse,
        "coarse_type_name": COARSE_TYPES.get(coarse),
        "predicted_type": predicted,
        "predicted_type_confidence": 0.9 if predicted else None,
        "track_id": track,
        "cues": cues,
    }
    return {k: v for k, v in props.items() if v is not None}


@pytest.fixture
def graph(empty_graph):
    """The hand-made graph with its own 4-D ``lesion_cues`` index, dropped again at the end."""
    drv = empty_graph
    drv.execute_query("DROP INDEX lesion_cues IF EXISTS", database_=DB)
    drv.execute_query(CUES_INDEX, database_=DB)
    studies = sorted({(v[0], v[1]) for v in LESIONS.values()})
    drv.execute_query(BUILD_PATIENTS, patients=sorted({p for p, _ in studies}), database_=DB)
    drv.execute_query(
        BUILD_STUDIES,
        studies=[
            {"patient_id": p, "study_id": f"{p}_{s:02d}", "study_index": s} for p, s in studies
        ],
        database_=DB,
    )
    lesions = [{"props": _props(lid)} for lid in LESIONS]
    drv.execute_query(BUILD_LESIONS, lesions=lesions, database_=DB)
    tracks: dict[str, list[tuple[int, int, str]]] = {}
    for lid, (_, study, series, track, *_) in LESIONS.items():
        if track is not None:
            tracks.setdefault(track, []).append((study, series, lid))
    pairs = []
    for members in tracks.values():
        ordered = [lid for *_, lid in sorted(members)]
        pairs += [[a, b] for a, b in itertools.pairwise(ordered)]
    drv.execute_query(BUILD_FOLLOWED_BY, pairs=pairs, database_=DB)
    edges = [{"a": a, "b": b, "space": sp, "rank": r} for a, b, sp, r in SIMILAR]
    drv.execute_query(BUILD_SIMILAR, edges=edges, database_=DB)
    drv.execute_query("CALL db.awaitIndexes()", database_=DB)
    yield drv
    drv.execute_query("DROP INDEX lesion_cues IF EXISTS", database_=DB)


def _sim(squared_distance: float) -> float:
    """Neo4j's euclidean vector score."""
    return 1 / (1 + squared_distance)


# Scores are float32. The test index is not quantised: Neo4j's default int8 quantisation clips
# these few hand-made vectors (a 3.0 scored like a 2.5), which would scramble hand-made orders.
def approx_sim(squared_distance: float):
    return pytest.approx(_sim(squared_distance), rel=1e-6)


def test_similar_lesions_of_other_patients(graph):
    rows = cohort.similar_lesions(graph, "P1-T1-1", database=DB)
    assert [r["lesion_id"] for r in rows] == ["P2-U1-1", "P3-V2-1", "P2-U1-2", "P3-V3-1", "P3-V1-1"]
    assert [r["similarity"] for r in rows] == [
        approx_sim(1.0),
        approx_sim(2.25),
        approx_sim(4.0),
        approx_sim(6.25),
        approx_sim(9.0),
    ]
    first = rows[0]
    assert first == {
        "lesion_id": "P2-U1-1",
        "patient_id": P2,
        "study_index": 1,
        "type": "liver",
        "type_predicted": False,
        "long_axis_mm": 30.0,
        "similarity": first["similarity"],
    }
    assert rows[3]["type"] == "unlabelled" and rows[3]["type_predicted"] is False
    assert [r["lesion_id"] for r in cohort.similar_lesions(graph, "P1-T1-1", k=2)] == [
        "P2-U1-1",
        "P3-V2-1",
    ]


def test_similar_lesions_of_any_patient_but_never_itself(graph):
    rows = cohort.similar_lesions(graph, "P1-T1-1", other_patients=False, database=DB)
    assert [r["lesion_id"] for r in rows] == [
        "P1-T1-2",
        "P2-U1-1",
        "P1-T3-3",
        "P3-V2-1",
        "P2-U1-2",
        "P3-V3-1",
        "P3-V1-1",
    ]
    assert rows[0]["similarity"] == approx_sim(0.25)
    assert rows[2]["type"] == "soft tissue" and rows[2]["type_predicted"] is True


def test_similar_lesions_filtered_by_type_and_size(graph):
    def ids(**kw):
        return [r["lesion_id"] for r in cohort.similar_lesions(graph, "P1-T1-1", **kw)]

    liver = ["P2-U1-1", "P3-V2-1", "P2-U1-2"]
    assert ids(coarse_type=4) == ids(coarse_type="liver") == ids(coarse_type=" Liver ") == liver
    assert ids(coarse_type="lung") == ["P3-V1-1"]
    assert ids(coarse_type="unlabelled") == ["P3-V3-1"]
    # The predicted type counts where there is no label.
    assert ids(coarse_type="soft tissue") == []
    assert ids(coarse_type=7, other_patients=False) == ["P1-T3-3"]
    assert ids(min_mm=25.0) == ["P2-U1-1", "P2-U1-2", "P3-V1-1"]
    assert ids(min_mm=26.0, coarse_type="liver") == ["P2-U1-1", "P2-U1-2"]


def test_similar_lesions_widens_the_index_search_when_filters_leave_too_few(graph):
    # The 2 nearest are the lesion itself and its own follow-up, both filtered out.
    raw = run_named(
        graph, DB, "similar_lesions", {"lesion_id": "P1-T1-1", "k": "1", "candidates": "1"}
    )
    assert raw.rows == []
    rows = cohort.similar_lesions(graph, "P1-T1-1", k=1, candidates=1, database=DB)
    assert [r["lesion_id"] for r in rows] == ["P2-U1-1"]


def test_similar_lesions_as_a_named_query_with_cli_strings(graph):
    result = run_named(
        graph,
        DB,
        "similar_lesions",
        {"lesion_id": "P1-T1-1", "type": "4", "other_patients": "false", "min_mm": "30"},
    )
    assert [r["lesion_id"] for r in result.as_dicts()] == ["P1-T1-2", "P2-U1-1", "P2-U1-2"]


def test_similar_lesions_errors(graph):
    with pytest.raises(QueryError, match="no lesion 'DL-nope'"):
        cohort.similar_lesions(graph, "DL-nope", database=DB)
    with pytest.raises(QueryError, match="'P1-T2-2' has no cues vector"):
        cohort.similar_lesions(graph, "P1-T2-2", database=DB)
    with pytest.raises(QueryError, match="unknown embedding space 'pixels'"):
        cohort.similar_lesions(graph, "P1-T1-1", space="pixels", database=DB)
    with pytest.raises(QueryError, match="unknown coarse type 'brain'"):
        cohort.similar_lesions(graph, "P1-T1-1", coarse_type="brain", database=DB)
    with pytest.raises(QueryError, match="unknown coarse type 9"):
        cohort.similar_lesions(graph, "P1-T1-1", coarse_type=9, database=DB)
    with pytest.raises(QueryError, match="k must be a positive integer"):
        cohort.similar_lesions(graph, "P1-T1-1", k=0, database=DB)
    # Filters that nothing passes are an answer, not an error.
    assert cohort.similar_lesions(graph, "P1-T1-1", min_mm=1000.0, database=DB) == []


def test_similar_lesions_without_the_vector_index_is_a_query_error(graph):
    graph.execute_query("DROP INDEX lesion_cues IF EXISTS", database_=DB)
    with pytest.raises(QueryError, match="lesion_cues"):
        cohort.similar_lesions(graph, "P1-T1-1", database=DB)


def test_similar_patients(graph):
    rows = cohort.similar_patients(graph, P1, database=DB)
    # P3: T1's best edge has rank 2 (0.5), T2's rank 1 (1.0). P2: T1's best rank 1 (its three
    # edges from two lesions count once), T4's rank 4 (0.25). P1's edge into itself never counts.
    assert rows == [
        {
            "patient_id": P3,
            "score": pytest.approx(1.5),
            "matched_tracks": 2,
            "matched_lesions": 3,
            "edges": 3,
            "best_rank": 1,
        },
        {
            "patient_id": P2,
            "score": pytest.approx(1.25),
            "matched_tracks": 2,
            "matched_lesions": 3,
            "edges": 4,
            "best_rank": 1,
        },
    ]
    assert [r["patient_id"] for r in cohort.similar_patients(graph, P1, k=1, database=DB)] == [P3]
    triplet = cohort.similar_patients(graph, P1, space="triplet", database=DB)
    assert [(r["patient_id"], r["score"], r["matched_tracks"]) for r in triplet] == [(P2, 1.0, 1)]
    # Only the patient's own outgoing edges count: P2's single edge leads into P1.
    assert [(r["patient_id"], r["score"]) for r in cohort.similar_patients(graph, P2)] == [
        (P1, 1.0)
    ]
    assert cohort.similar_patients(graph, P4, database=DB) == []
    with pytest.raises(QueryError, match="no patient '999999'"):
        cohort.similar_patients(graph, "999999", database=DB)
    cli = run_named(graph, DB, "similar_patients", {"patient_id": P1, "k": "5"})
    assert [r["patient_id"] for r in cli.as_dicts()] == [P3, P2]


def test_patient_tracks(graph):
    rows = cohort.patient_tracks(graph, P1, database=DB)
    by_track = {r["track_id"]: r for r in rows}
    assert [r["track_id"] for r in rows] == ["T1", "T4", "T2", "T5", "T3"]
    assert by_track["T1"] == {
        "track_id": "T1",
        "type": "liver",
        "type_predicted": False,
        "measurements": 3,
        "studies": 3,
        "first_study_index": 1,
        "last_study_index": 3,
        "first_long_axis_mm": 50.0,
        "last_long_axis_mm": 45.0,
        "change_mm": -5.0,
        "change_pct": pytest.approx(-10.0),
        "lesion_ids": ["P1-T1-1", "P1-T1-2", "P1-T1-3"],
    }
    # Two series in study 1: the larger one (32 mm) is the first long axis; ids in series order.
    t2 = by_track["T2"]
    assert (t2["measurements"], t2["studies"], t2["first_long_axis_mm"]) == (3, 2, 32.0)
    assert (t2["last_long_axis_mm"], t2["change_mm"]) == (21.0, -11.0)
    assert t2["change_pct"] == pytest.approx(-34.375)
    assert t2["lesion_ids"] == ["P1-T2-1b", "P1-T2-1a", "P1-T2-2"]
    t4 = by_track["T4"]
    assert (t4["type"], t4["type_predicted"], t4["change_pct"]) == ("liver", True, -30.0)
    t5 = by_track["T5"]
    assert (t5["change_mm"], t5["change_pct"]) == (5.0, 25.0)
    t3 = by_track["T3"]
    assert (t3["type"], t3["type_predicted"], t3["measurements"]) == ("soft tissue", True, 1)
    assert (t3["first_study_index"], t3["last_study_index"], t3["change_mm"]) == (3, 3, 0.0)
    assert cohort.patient_tracks(graph, P4, database=DB) == []
    with pytest.raises(QueryError, match="no patient '999999'"):
        cohort.patient_tracks(graph, "999999", database=DB)
    cli = run_named(graph, DB, "patient_tracks", {"patient_id": P2})
    assert [(r["track_id"], r["change_mm"]) for r in cli.as_dicts()] == [("U1", 3.0)]


def test_patient_response(graph):
    report = cohort.patient_response(graph, P1, database=DB)
    assert report.patient_id == P1 and report.baseline_study_index == 1
    # T4 is unlabelled but predicted liver, so T5 is the third liver lesion and no target.
    assert report.targets == ("T1", "T4", "T2")
    assert report.target_lesions == ("P1-T1-1", "P1-T4-1", "P1-T2-1a")
    s2, s3 = report.studies
    # Study 2: 35 + 28 + 21 = 84 of 122 mm, -31.1 %.
    assert (s2.study_index, s2.sld_mm, s2.baseline_sld_mm, s2.nadir_sld_mm) == (
        2,
        84.0,
        122.0,
        122.0,
    )
    assert s2.change_from_baseline_pct == pytest.approx(-100 * 38 / 122)
    assert (s2.category, s2.complete, s2.new_lesions) == ("PR", True, ())
    # Study 3: only T1 (45 mm) of the targets and the new T3: compared on T1, nadir 35 mm.
    assert (s3.sld_mm, s3.baseline_sld_mm, s3.nadir_sld_mm) == (45.0, 50.0, 35.0)
    assert s3.change_from_nadir_pct == pytest.approx(100 * 10 / 35)
    assert (s3.measured_targets, s3.targets, s3.complete) == (1, 3, False)
    assert (s3.new_lesions, s3.new_tracks, s3.category) == (("P1-T3-3",), ("T3",), "PD")

    (p2,) = cohort.patient_response(graph, P2, database=DB).studies
    assert (p2.sld_mm, p2.change_from_baseline_pct, p2.category) == (
        33.0,
        pytest.approx(10.0),
        "SD",
    )
    single = cohort.patient_response(graph, P3, database=DB)
    assert (single.baseline_study_index, single.studies) == (1, ())
    assert single.targets == ("V1", "V3", "V2")
    untracked = cohort.patient_response(graph, P4, database=DB)
    assert (untracked.baseline_study_index, untracked.targets, untracked.studies) == (None, (), ())
    with pytest.raises(QueryError, match="no patient '999999'"):
        cohort.patient_response(graph, "999999", database=DB)
