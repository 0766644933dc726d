from pathlib import Path

from lesionkg.loaders.images import find_key_slice, key_slice_candidates


def test_finds_the_official_archive_layout(tmp_path):
    png = tmp_path / "Images_png" / "000002_01_01" / "162.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"png")
    assert find_key_slice(tmp_path, "000002_01_01_162.png") == png


def test_finds_flat_file_names_like_the_shared_images(deeplesion_dir):
    images = deeplesion_dir / "images"
    found = find_key_slice(images, "000069_02_01_058.png")
    assert found == images / "000069_02_01_058.png"


def test_missing_slice_is_none(tmp_path):
    assert find_key_slice(tmp_path, "000002_01_01_162.png") is None


def test_candidates_keep_the_slice_number_as_written():
    names = [p.as_posix() for p in key_slice_candidates(Path("/r"), "0012345_03_02_007.png")]
    assert names[0] == "/r/Images_png/0012345_03_02/007.png"
    assert "/r/0012345_03_02_007.png" in names
