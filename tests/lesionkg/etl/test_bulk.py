"""Loading DeepLesion CSVs into the real Neo4j: counts, properties, idempotency, bad input."""

import csv
import json
import math
from collections import Counter

import pandas as pd
import pytest

from lesionkg.core.errors import InvalidInputError
from lesionkg.core.records import COARSE_TYPES
from lesionkg.db.schema import counts
from lesionkg.etl.bulk import load_deeplesion

pytestmark = pytest.mark.neo4j
DB = "neo4j"


def _floats(cell: str) -> list[float]:
    return [float(v) for v in cell.split(",")]


def _snapshot(driver) -> list[tuple]:
    """Every node's labels and properties and every relationship, in a canonical order."""
    nodes, _, _ = driver.execute_query(
        "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props", database_=DB
    )
    rels, _, _ = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN type(r) AS t, elementId(a) AS a, elementId(b) AS b", database_=DB
    )
    return sorted(json.dumps([r["labels"], r["props"]], sort_keys=True) for r in nodes), len(rels)


def test_val_split_loads_with_the_expected_counts(val_graph, val_csv):
    found = counts(val_graph, DB)
    assert found["Patient"] == 703
    assert found["Study"] == 1599
    assert found["Lesion"] == 4889
    assert found["HAS_STUDY"] == 1599
    assert found["HAS_LESION"] == 4889
    assert found["OF_TYPE"] == 4889
    assert found["LesionType"] == 8


def test_per_type_counts_equal_the_csv(val_graph, val_csv):
    expected = pd.read_csv(val_csv)["Coarse_lesion_type"].value_counts().to_dict()
    records, _, _ = val_graph.execute_query(
        "MATCH (l:Lesion)-[:OF_TYPE]->(t:LesionType) RETURN t.code AS code, t.name AS name, "
        "count(l) AS n, sum(CASE WHEN l.coarse_type = t.code THEN 1 ELSE 0 END) AS agree",
        database_=DB,
    )
    assert {r["code"]: r["n"] for r in records} == expected
    assert all(r["agree"] == r["n"] and r["name"] == COARSE_TYPES[r["code"]] for r in records)


def test_a_known_row_round_trips_exactly(val_graph, val_csv):
    with val_csv.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["File_name"] == "000002_01_01_162.png"
    records, _, _ = val_graph.execute_query(
        "MATCH (p:Patient)-[:HAS_STUDY]->(s:Study)-[:HAS_LESION]->(l:Lesion {file_name: $f}) "
        "RETURN p {.*} AS p, s {.*} AS s, l {.*} AS l",
        f=row["File_name"],
        database_=DB,
    )
    assert len(records) == 1
    p, s, lesion = records[0]["p"], records[0]["s"], records[0]["l"]
    assert p == {"patient_id": "000002", "sex": "F", "dataset": "DeepLesion"}
    assert s == {
        "study_id": "000002_01",
        "patient_id": "000002",
        "study_index": 1,
        "patient_age": 51.0,
    }
    assert lesion["lesion_id"].startswith("DL-") and len(lesion["lesion_id"]) == 19
    assert lesion["recist"] == _floats(row["Measurement_coordinates"])
    assert lesion["bbox"] == _floats(row["Bounding_boxes"])
    assert lesion["diameters_px"] == _floats(row["Lesion_diameters_Pixel_"])
    assert lesion["location"] == _floats(row["Normalized_lesion_location"])
    assert lesion["spacing_mm"] == _floats(row["Spacing_mm_px_"])
    assert lesion["window"] == _floats(row["DICOM_windows"])
    assert lesion["slice_range"] == [156, 168]
    assert lesion["image_size"] == [512, 512]
    assert (lesion["series_id"], lesion["key_slice"], lesion["study_index"]) == (1, 162, 1)
    assert (lesion["coarse_type"], lesion["coarse_type_name"]) == (2, "abdomen")
    assert lesion["noisy"] is False and lesion["split"] == "val"
    # mm from the endpoints and the pixel spacing, by hand: 0.859375 mm/px
    x1, y1, x2, y2, a1, b1, a2, b2 = lesion["recist"]
    assert lesion["long_axis_mm"] == pytest.approx(math.hypot(x2 - x1, y2 - y1) * 0.859375)
    assert lesion["short_axis_mm"] == pytest.approx(math.hypot(a2 - a1, b2 - b1) * 0.859375)
    assert lesion["long_axis_mm"] == pytest.approx(7.76388 * 0.859375, rel=1e-3)


def test_the_nan_age_row_gives_a_study_without_age(val_graph, val_csv):
    df = pd.read_csv(val_csv)
    row = df[df["Patient_age"].isna()].iloc[0]
    study_id = f"{row.Patient_index:06d}_{row.Study_index:02d}"
    records, _, _ = val_graph.execute_query(
        "MATCH (s:Study {study_id: $id}) RETURN s.patient_age AS age", id=study_id, database_=DB
    )
    assert records[0]["age"] is None


def test_loading_twice_changes_nothing(empty_graph, val_csv):
    first = load_deeplesion(empty_graph, val_csv, database=DB, progress=False)
    assert first.created == {"Patient": 703, "Study": 1599, "Lesion": 4889}
    before = _snapshot(empty_graph)
    second = load_deeplesion(empty_graph, val_csv, database=DB, progress=False, batch_size=777)
    assert second.created == {"Patient": 0, "Study": 0, "Lesion": 0}
    assert second.existing == {"Patient": 703, "Study": 1599, "Lesion": 4889}
    assert _snapshot(empty_graph) == before


def test_row_order_does_not_change_ids(empty_graph, val_csv, tmp_path):
    df = pd.read_csv(val_csv, dtype=str, keep_default_na=False)
    shuffled = tmp_path / "shuffled.csv"
    df.sample(frac=1.0, random_state=3).to_csv(shuffled, index=False)
    load_deeplesion(empty_graph, val_csv, database=DB, progress=False)
    before = _snapshot(empty_graph)
    summary = load_deeplesion(empty_graph, shuffled, database=DB, progress=False)
    assert summary.created["Lesion"] == 0
    assert _snapshot(empty_graph) == before


def test_train_partial_loads_alongside_val(empty_graph, val_csv, train_csv):
    load_deeplesion(empty_graph, val_csv, database=DB, progress=False)
    summary = load_deeplesion(empty_graph, train_csv, database=DB, progress=False)
    assert summary.created["Lesion"] == 716
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion {split: 'train'}) RETURN count(l) AS n, "
        "count(l.coarse_type) AS typed, count{ (l)-[:OF_TYPE]->() } AS edges",
        database_=DB,
    )
    assert (records[0]["n"], records[0]["typed"]) == (716, 0)
    found = counts(empty_graph, DB)
    assert found["Lesion"] == 4889 + 716
    assert found["Patient"] == 703 + pd.read_csv(train_csv)["Patient_index"].nunique()


def _write_rows(path, header, rows):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def val_rows(val_csv):
    with val_csv.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [next(reader) for _ in range(30)]
    return header, rows


def _bad_inputs(tmp_path, header, rows):
    """Each kind of bad input, with a fragment its error must contain."""
    missing = [c for c in header if c != "Spacing_mm_px_"]
    non_numeric = [r[:] for r in rows]
    non_numeric[5][header.index("Key_slice_index")] = "abc"
    short_list = [r[:] for r in rows]
    short_list[7][header.index("Measurement_coordinates")] = "1, 2, 3, 4, 5, 6"
    duplicate = [*rows, rows[3]]
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    return [
        (
            _write_rows(
                tmp_path / "missing.csv",
                missing,
                [[r[header.index(c)] for c in missing] for r in rows],
            ),
            "Spacing_mm_px_",
        ),
        (
            _write_rows(tmp_path / "nonnum.csv", header, non_numeric),
            "line 7, column Key_slice_index",
        ),
        (
            _write_rows(tmp_path / "short.csv", header, short_list),
            "line 9, column Measurement_coordinates",
        ),
        (_write_rows(tmp_path / "dup.csv", header, duplicate), "duplicate"),
        (empty, "empty"),
        (binary, "CSV"),
    ]


def test_bad_input_is_reported_and_leaves_the_database_unchanged(empty_graph, val_rows, tmp_path):
    header, rows = val_rows
    good = _write_rows(tmp_path / "good.csv", header, rows[:10])
    load_deeplesion(empty_graph, good, database=DB, progress=False)
    before = _snapshot(empty_graph)
    for path, fragment in _bad_inputs(tmp_path, header, rows):
        with pytest.raises(InvalidInputError) as info:
            load_deeplesion(empty_graph, path, database=DB, progress=False)
        assert fragment in str(info.value), (path.name, str(info.value))
        assert str(path) in str(info.value)
        assert _snapshot(empty_graph) == before, path.name


def test_all_problems_are_reported_not_just_the_first(empty_graph, val_rows, tmp_path):
    header, rows = val_rows
    bad = [r[:] for r in rows]
    bad[2][header.index("Patient_age")] = "old"
    bad[4][header.index("Coarse_lesion_type")] = "12"
    bad[4][header.index("Bounding_boxes")] = "1, 2"
    path = _write_rows(tmp_path / "many.csv", header, bad)
    with pytest.raises(InvalidInputError) as info:
        load_deeplesion(empty_graph, path, database=DB, progress=False)
    where = Counter((p.line, p.column) for p in info.value.problems)
    assert where == Counter(
        {(4, "Patient_age"): 1, (6, "Coarse_lesion_type"): 1, (6, "Bounding_boxes"): 1}
    )
    assert counts(empty_graph, DB)["Lesion"] == 0


def test_skip_invalid_writes_the_valid_rows_and_keeps_the_rejects(empty_graph, val_rows, tmp_path):
    header, rows = val_rows
    bad = [r[:] for r in rows]
    bad[0][header.index("Normalized_lesion_location")] = "0.5, 0.5"
    bad[9][header.index("Train_Val_Test")] = "7"
    path = _write_rows(tmp_path / "mixed.csv", header, bad)
    rejects = tmp_path / "mixed.rejects.csv"
    summary = load_deeplesion(
        empty_graph, path, database=DB, progress=False, skip_invalid=True, rejects_path=rejects
    )
    assert (summary.rows, summary.lesions_written, summary.rejected) == (30, 28, 2)
    assert counts(empty_graph, DB)["Lesion"] == 28
    with rejects.open(newline="") as fh:
        rejected = list(csv.DictReader(fh))
    assert [(r["line"], r["column"]) for r in rejected] == [
        ("2", "Normalized_lesion_location"),
        ("11", "Train_Val_Test"),
    ]
    assert rejected[0]["File_name"] == rows[0][0]
    assert all(r["reason"] for r in rejected)


def test_images_option_records_the_key_slice_paths(empty_graph, deeplesion_dir):
    images = deeplesion_dir / "images"
    summary = load_deeplesion(
        empty_graph, images / "images_DL_info_rows.csv", database=DB, images=images, progress=False
    )
    assert summary.images_found == 24 and summary.images_missing == 0
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l.file_name AS f, l.image_path AS p", database_=DB
    )
    assert all(r["p"] == str((images / r["f"]).resolve()) for r in records)


def _val_rows_n(val_csv, n):
    with val_csv.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [next(reader) for _ in range(n)]


@pytest.mark.parametrize("column", ["Key_slice_index", "Patient_index", "Series_ID"])
def test_a_huge_integer_anywhere_writes_nothing_even_in_small_batches(
    empty_graph, val_csv, tmp_path, column
):
    """Issue 15: an integer index of 23 digits passed validation, then overflowed after 36 of 40
    rows were committed (--batch-size 5). Validation runs before the first write."""
    header, rows = _val_rows_n(val_csv, 40)
    rows[37][header.index(column)] = "12345678901234567890123"
    path = _write_rows(tmp_path / "huge.csv", header, rows)
    before = _snapshot(empty_graph)
    with pytest.raises(InvalidInputError) as info:
        load_deeplesion(empty_graph, path, database=DB, progress=False, batch_size=5, writers=1)
    assert "line 39" in str(info.value) and "nothing was written" in str(info.value)
    assert _snapshot(empty_graph) == before


def test_a_reimport_that_changes_type_sex_or_age_is_refused_or_updated(
    empty_graph, val_csv, tmp_path
):
    header, rows = _val_rows_n(val_csv, 12)
    first = _write_rows(tmp_path / "first.csv", header, rows)
    load_deeplesion(empty_graph, first, database=DB, progress=False)
    before = _snapshot(empty_graph)
    changed = [r[:] for r in rows]
    age = header.index("Patient_age")
    sex = header.index("Patient_gender")
    kind = header.index("Coarse_lesion_type")
    old_age, old_sex, old_type = rows[0][age], rows[0][sex], rows[3][kind]
    for row in changed:
        # every row of the first study (its age) and of the first patient (the sex): a file
        # must agree with itself
        if row[1] == rows[0][1]:
            row[sex] = "F" if old_sex == "M" else "M"
            if row[2] == rows[0][2]:
                row[age] = str(float(old_age) + 30)
    changed[3][kind] = "1" if old_type != "1" else "2"
    second = _write_rows(tmp_path / "second.csv", header, changed)
    with pytest.raises(InvalidInputError) as info:
        load_deeplesion(empty_graph, second, database=DB, progress=False, batch_size=5)
    text = str(info.value)
    assert "nothing was written" in text
    assert "line 2, column Patient_age" in text and f"the file gives {float(old_age) + 30}" in text
    assert "line 2, column Patient_gender" in text, text
    assert "line 5, column Coarse_lesion_type" in text, text
    assert f"coarse_type {int(old_type)}" in text
    assert _snapshot(empty_graph) == before

    summary = load_deeplesion(empty_graph, second, database=DB, progress=False, update=True)
    assert summary.updated == {"coarse_type": 1, "patient_age": 1, "sex": 1}
    assert "updated (--update)" in summary.describe()
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion {file_name: $f})-[:OF_TYPE]->(t) "
        "MATCH (p:Patient {patient_id: l.patient_id}) "
        "RETURN t.code AS code, l.coarse_type AS type, p.sex AS sex",
        f=rows[3][0],
        database_=DB,
    )
    assert records[0]["code"] == records[0]["type"] == int(changed[3][kind])
    # Loading the updated file again changes nothing more.
    again = load_deeplesion(empty_graph, second, database=DB, progress=False)
    assert again.updated == {}
