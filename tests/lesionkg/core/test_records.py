import hashlib

from lesionkg.core.records import COARSE_TYPES, SPLITS, lesion_id_of, patient_id_of, study_id_of


def test_lesion_id_is_the_documented_hash():
    coords = (238.314, 261.228, 235.858, 268.594, 240.36, 265.729, 234.222, 262.865)
    text = (
        "000002_01_01_162.png|238.3140,261.2280,235.8580,268.5940,240.3600,265.7290,"
        "234.2220,262.8650"
    )
    expected = "DL-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    assert lesion_id_of("000002_01_01_162.png", coords) == expected


def test_lesion_id_ignores_digits_below_the_fourth_decimal_only():
    coords = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    same = (1.00001, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    moved = (1.001, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    assert lesion_id_of("a.png", coords) == lesion_id_of("a.png", same)
    assert lesion_id_of("a.png", coords) != lesion_id_of("a.png", moved)
    assert lesion_id_of("a.png", coords) != lesion_id_of("b.png", coords)


def test_ids_and_codes():
    assert patient_id_of(2) == "000002" and study_id_of(2, 1) == "000002_01"
    assert len(COARSE_TYPES) == 8 and COARSE_TYPES[5] == "lung"
    assert SPLITS == {1: "train", 2: "val", 3: "test"}
