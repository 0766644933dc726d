"""Every shipped query on the real validation split, against checks computed with pandas.

The smoke test goes last: the graph it derives (tracks, edges, embeddings) is not the plain
split the other tests read, which then is loaded again."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import GraphState

from lesionkg.core.errors import QueryError
from lesionkg.core.records import COARSE_TYPES
from lesionkg.db.queries import format_result, run_cypher, run_named
from lesionkg.db.schema import reset
from lesionkg.db.statements import queries

DB = "neo4j"


@pytest.fixture(scope="module")
def val(val_csv) -> pd.DataFrame:
    """The validation CSV with the quantities the queries use, computed independently."""
    df = pd.read_csv(val_csv)
    coords = np.array([[float(v) for v in c.split(",")] for c in df.Measurement_coordinates])
    spacing = np.array([[float(v) for v in c.split(",")] for c in df.Spacing_mm_px_])
    loc = np.array([[float(v) for v in c.split(",")] for c in df.Normalized_lesion_location])
    df["long_mm"] = np.hypot(
        (coords[:, 2] - coords[:, 0]) * spacing[:, 0], (coords[:, 3] - coords[:, 1]) * spacing[:, 1]
    )
    df["x"], df["y"], df["z"] = loc.T
    df["patient_id"] = df.Patient_index.map("{:06d}".format)
    df["study_id"] = df.patient_id + "_" + df.Study_index.map("{:02d}".format)
    return df


def test_patient_timeline(val_graph, val):
    patient = val.groupby("patient_id").Study_index.nunique().idxmax()
    result = run_named(val_graph, DB, "patient_timeline", {"patient_id": patient})
    mine = val[val.patient_id == patient]
    expected_studies = sorted(mine.Study_index.unique())
    rows = result.as_dicts()
    assert [r["study_index"] for r in rows] == expected_studies
    for r in rows:
        study = mine[mine.Study_index == r["study_index"]]
        assert r["n_lesions"] == len(study)
        sizes = [lesion["long_axis_mm"] for lesion in r["lesions"]]
        assert sizes == sorted(sizes, reverse=True)
        assert sorted(sizes) == pytest.approx(sorted(study.long_mm), rel=1e-6)
        age = study.Patient_age.iloc[0]
        assert r["patient_age"] == (None if math.isnan(age) else age)


def test_patient_timeline_of_unknown_patient_is_empty(val_graph):
    assert run_named(val_graph, DB, "patient_timeline", {"patient_id": "999999"}).rows == []


def test_lesions_by_type_and_size(val_graph, val):
    result = run_named(
        val_graph,
        DB,
        "lesions_by_type_and_size",
        {"coarse_type": "4", "min_mm": "20", "max_mm": "60", "limit": "1000"},
    )
    expected = val[(val.Coarse_lesion_type == 4) & val.long_mm.between(20, 60)]
    rows = result.as_dicts()
    assert len(rows) == len(expected) > 0
    assert sorted(r["file_name"] for r in rows) == sorted(expected.File_name)
    sizes = [r["long_axis_mm"] for r in rows]
    assert sizes == sorted(sizes, reverse=True)


def test_lesions_in_box(val_graph, val):
    box = {
        "x_min": "0.1",
        "x_max": "0.45",
        "y_min": "0.3",
        "y_max": "0.7",
        "z_min": "0.5",
        "z_max": "0.7",
        "limit": "5000",
    }
    rows = run_named(val_graph, DB, "lesions_in_box", box).as_dicts()
    expected = val[val.x.between(0.1, 0.45) & val.y.between(0.3, 0.7) & val.z.between(0.5, 0.7)]
    assert len(rows) == len(expected) > 0
    assert [r["location"][2] for r in rows] == sorted(expected.z)
    # the right upper abdomen box is mostly liver
    assert pd.Series([r["type"] for r in rows]).value_counts().idxmax() == "liver"


def test_largest_lesions_per_patient(val_graph, val):
    rows = run_named(
        val_graph, DB, "largest_lesions_per_patient", {"per_patient": "2", "limit": "10"}
    ).as_dicts()
    top = val.sort_values("long_mm", ascending=False).groupby("patient_id").head(2)
    best = top.groupby("patient_id").long_mm.max().sort_values(ascending=False).head(10)
    assert list(dict.fromkeys(r["patient_id"] for r in rows)) == list(best.index)
    for r in rows:
        mine = val[val.patient_id == r["patient_id"]].long_mm.sort_values(ascending=False)
        assert r["long_axis_mm"] == pytest.approx(mine.iloc[r["rank"] - 1], rel=1e-6)


def test_type_distribution(val_graph, val):
    rows = run_named(val_graph, DB, "type_distribution", {}).as_dicts()
    by_type = val.groupby("Coarse_lesion_type")
    assert {r["code"]: r["lesions"] for r in rows} == by_type.size().to_dict()
    assert {r["code"]: r["patients"] for r in rows} == by_type.patient_id.nunique().to_dict()
    assert {r["code"]: r["name"] for r in rows} == COARSE_TYPES
    for r in rows:
        assert r["median_long_axis_mm"] == pytest.approx(
            by_type.long_mm.median()[r["code"]], rel=1e-6
        )
    assert [r["lesions"] for r in rows] == sorted((r["lesions"] for r in rows), reverse=True)


def test_studies_with_most_lesions(val_graph, val):
    rows = run_named(val_graph, DB, "studies_with_most_lesions", {"limit": "5"}).as_dicts()
    per_study = val.groupby("study_id").agg(
        n=("File_name", "size"), series=("Series_ID", "nunique")
    )
    expected = per_study.reset_index().sort_values(["n", "study_id"], ascending=[False, True])
    assert [(r["study_id"], r["lesions"], r["series"]) for r in rows] == list(
        expected.head(5)[["study_id", "n", "series"]].itertuples(index=False, name=None)
    )


def test_lesion_returns_all_properties(val_graph, val):
    first = val.iloc[0]
    found = run_cypher(
        val_graph,
        DB,
        "MATCH (l:Lesion {file_name: $f}) RETURN l.lesion_id AS id",
        {"f": first.File_name},
    )
    row = run_named(val_graph, DB, "lesion", {"lesion_id": found.rows[0][0]}).as_dicts()[0]
    assert row["lesion"]["file_name"] == first.File_name
    assert (row["sex"], row["patient_age"]) == (first.Patient_gender, first.Patient_age)


def test_ad_hoc_cypher_is_read_only(val_graph):
    with pytest.raises(QueryError, match=r"(?i)write"):
        run_cypher(val_graph, DB, "CREATE (:Intruder {x: 1})")
    assert run_cypher(val_graph, DB, "MATCH (n:Intruder) RETURN count(n) AS n").rows == [[0]]


def test_ad_hoc_syntax_error_is_a_query_error(val_graph):
    with pytest.raises(QueryError, match="SyntaxError"):
        run_cypher(val_graph, DB, "MATCH (n RETURN n")


def test_formats(val_graph):
    result = run_named(val_graph, DB, "type_distribution", {})
    table = format_result(result, "table").splitlines()
    assert table[0].split() == ["code", "name", "lesions", "patients", "median_long_axis_mm"]
    assert table[-1] == "(8 rows)"
    csv_text = format_result(result, "csv").splitlines()
    assert csv_text[0] == "code,name,lesions,patients,median_long_axis_mm" and len(csv_text) == 9
    import json

    assert json.loads(format_result(result, "json"))[0].keys() == set(result.columns)


@pytest.fixture
def derived_val(driver, val_csv, deeplesion_dir, tmp_path_factory):
    """The real validation split with what the graph commands derive from it: cue vectors and
    SIMILAR_TO edges (link), tracks (match), and the triplet embedding of the 24 lesions whose real
    key slice is at hand (embed, with an untrained checkpoint: the values do not matter here)."""
    if GraphState.content != "val-derived":
        import torch

        from lesionkg.etl.bulk import load_deeplesion
        from lesionkg.graph.embedding import embed_graph
        from lesionkg.graph.matching import match_graph
        from lesionkg.graph.similarity import link_graph
        from lesionkg.model.checkpoint import save_checkpoint
        from lesionkg.model.embedder import KIND
        from lesionkg.model.network import LesionEmbedder
        from lesionkg.model.training import TrainConfig
        from lesionkg.model.transforms import CropSpec, InputConfig

        reset(driver, DB)
        load_deeplesion(driver, val_csv, database=DB, progress=False)
        index_dir = tmp_path_factory.mktemp("val-derived-index")
        link_graph(driver, space="cues", k=10, index_dir=index_dir, database=DB, progress=False)
        match_graph(driver, database=DB, progress=False)
        torch.manual_seed(0)
        config = TrainConfig(input=InputConfig((CropSpec(16, 2.0), CropSpec(16, 5.0, "crop"))))
        model_dir = tmp_path_factory.mktemp("val-derived-model")
        net = LesionEmbedder(config.network)
        save_checkpoint(model_dir, KIND, config.to_json(), {"network": net.state_dict()}, {})
        embed_graph(
            driver, model_dir, database=DB, images=deeplesion_dir / "images", progress=False
        )
        GraphState.content = "val-derived"
    return driver


def test_every_shipped_query_returns_rows(derived_val, val, deeplesion_dir):
    # A val lesion whose key slice is at hand (so it has an embedding), and its patient.
    key_slice = "000069_02_01_058.png"
    assert (deeplesion_dir / "images" / key_slice).is_file()
    assert key_slice in set(val.File_name)
    patient = val.loc[val.File_name == key_slice, "patient_id"].iloc[0]
    lesion = run_cypher(
        derived_val,
        DB,
        "MATCH (l:Lesion {file_name: $f}) RETURN l.lesion_id AS id",
        {"f": key_slice},
    ).rows[0][0]
    required = {
        "patient_timeline": {"patient_id": patient},
        "lesion": {"lesion_id": lesion},
        "lesions_by_type_and_size": {"coarse_type": "4"},
        "similar_by_embedding": {"lesion_id": lesion},
        "patient_tracks": {"patient_id": patient},
        "similar_patients": {"patient_id": patient},
        "similar_lesions": {"lesion_id": lesion},
    }
    assert set(required) <= set(queries())
    found = {}
    for name, spec in queries().items():
        if any(p.required for p in spec.params):
            assert name in required, f"{name}: give the smoke test its required parameters"
        result = run_named(derived_val, DB, name, required.get(name, {}))
        assert result.columns and result.rows, name
        found[name] = result.as_dicts()
    val_lesions = set(val.File_name)
    studies = set(val.study_id)
    assert {r["study_id"] for r in found["patient_timeline"]} == set(
        val.loc[val.patient_id == patient, "study_id"]
    )
    assert found["lesion"][0]["lesion"]["file_name"] == key_slice
    assert {r["file_name"] for r in found["lesions_by_type_and_size"]} <= val_lesions
    assert {r["study_id"] for r in found["studies_with_most_lesions"]} <= studies
    assert {r["patient_id"] for r in found["largest_lesions_per_patient"]} <= set(val.patient_id)
    # the neighbours: other patients' lesions of the graph, never the query lesion itself
    embedded = val.File_name.isin({p.name for p in (deeplesion_dir / "images").glob("*.png")})
    assert {r["patient_id"] for r in found["similar_by_embedding"]} <= set(
        val.loc[embedded & (val.patient_id != patient), "patient_id"]
    )
    for name in ("similar_lesions", "similar_patients"):
        assert {r["patient_id"] for r in found[name]} <= set(val.patient_id) - {patient}, name
    assert lesion not in {r["lesion_id"] for r in found["similar_lesions"]}
    lesions_of_patient = (val.patient_id == patient).sum()
    assert sum(r["measurements"] for r in found["patient_tracks"]) == lesions_of_patient
