"""Same-lesion pairs and LesaNet labels: the real files, and bad input named precisely."""

from __future__ import annotations

import pytest

from lesionkg.core.errors import InvalidInputError
from lesionkg.loaders.pairs import read_lesanet_labels, read_same_lesion_pairs

HEADER = (
    "pair_id,source_File_name,target_File_name,"
    "source_recist_diameter_mm,target_recist_diameter_mm\n"
)


def test_real_dls_pairs(deeplesion_dir):
    pairs = read_same_lesion_pairs(deeplesion_dir / "dls" / "dls_valid_pairs.csv")
    assert len(pairs) == 906
    first = pairs[0]
    assert (first.source_file_name, first.target_file_name) == (
        "000004_02_01_013.png",
        "000004_03_01_008.png",
    )
    assert first.source_diameters_mm == (34.4, 29.3) and first.line == 2


def test_real_lesanet_labels(deeplesion_dir):
    labels = read_lesanet_labels(deeplesion_dir / "lesanet" / "lesanet_labels_val_train.csv")
    assert len(labels) == 4648
    assert labels[0].file_name == "000002_02_01_077.png"
    assert labels[0].labels == frozenset({"lymph node"})


def test_every_bad_row_is_listed_with_line_and_column(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text(
        HEADER + "1,a.png,b.png,10;5,x\n" + "2,a.jpg,b.png,10;5,8;4\n" + "3,a.png,a.png,,\n"
    )
    with pytest.raises(InvalidInputError) as err:
        read_same_lesion_pairs(bad)
    text = str(err.value)
    assert f"{bad}, line 2, column target_recist_diameter_mm: expected 'long;short'" in text
    assert f"{bad}, line 3, column source_File_name: expected a key-slice File_name" in text
    assert f"{bad}, line 4: source and target are the same key slice" in text
    assert "3 problem(s) in the input; nothing was evaluated" in text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        ("File_name,other\nx.png,1\n", "expected a same-lesion pairs header with source_File_name"),
        (HEADER, "no pairs in the file"),
        (b"\xff\xfe\x00bad", "not a UTF-8 CSV text file"),
    ],
)
def test_unusable_files_are_refused(tmp_path, content, reason):
    path = tmp_path / "pairs.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInputError, match=reason):
        read_same_lesion_pairs(path)
