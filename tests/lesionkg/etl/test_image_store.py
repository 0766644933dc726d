"""The image store (``lesionkg.etl.image_store``): the key slices the ETL read, kept as pixel-only
PNGs by lesion id, and the explorer showing them. A SYNTHETIC SR + CT pair goes through the real
``run_etl`` into the real Neo4j, then through the explorer app."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import generate_uid

from lesionkg.etl.image_store import encode_key_slice, store_key_slice, stored_slice_path
from lesionkg.etl.importer import EtlOptions, run_etl
from lesionkg.loaders.ct import read_ct_header, read_hu
from lesionkg.model.transforms import read_hu_png
from lesionkg.synthetic.dicom import (
    LONG_AXIS,
    MM,
    PATIENT_ID,
    PATIENT_NAME,
    SHORT_AXIS,
    group,
    measurement,
    write_report,
    write_synthetic_ct,
)
from lesionkg.web.app import create_app
from lesionkg.web.images import LONG_AXIS_RGB, SHORT_AXIS_RGB
from lesionkg.web.state import ExplorerConfig

DATABASE = "neo4j"


def test_store_is_atomic_idempotent_and_by_checked_id_only(tmp_path: Path) -> None:
    hu = np.array([[-1000.0, 40.4], [39.6, 3000.0]], dtype=np.float32)
    path = store_key_slice(tmp_path / "images", "L-0123456789abcdef", hu)
    assert path == tmp_path / "images" / "L-0123456789abcdef.png"
    assert read_hu_png(path).tolist() == [[-1000.0, 40.0], [40.0, 3000.0]]
    with Image.open(path) as img:
        assert img.mode.startswith("I") and not img.info.get("text")
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    store_key_slice(tmp_path / "images", "L-0123456789abcdef", hu)
    # The same lesion again: the same bytes, nothing rewritten, no temporary file left.
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    assert path.read_bytes() == encode_key_slice(hu)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [path.name]
    for bad in ("../x", "a/b", ".hidden", "", "L-..", "x" * 200):
        assert stored_slice_path(tmp_path, bad) is None
    with pytest.raises(ValueError):
        store_key_slice(tmp_path, "../escape", hu)


@pytest.fixture
def sr_and_ct(tmp_path: Path) -> dict:
    """A SYNTHETIC CT slice with a body outline and an SR measuring one lesion on it."""
    out = tmp_path / "export"
    out.mkdir()
    ct_path = out / "synthetic_ct.dcm"
    ct = write_synthetic_ct(
        ct_path, study_uid=generate_uid(), study_date="20240301", study_time="101500", body=True
    )
    sx, sy = float(ct.PixelSpacing[1]), float(ct.PixelSpacing[0])
    long_pts, short_pts = [[22, 26], [44, 40]], [[36, 26], [30, 40]]

    def mm(points: list[list[float]]) -> float:
        (x1, y1), (x2, y2) = points
        return round(math.hypot((x2 - x1) * sx, (y2 - y1) * sy), 6)

    write_report(
        out / "synthetic_sr.dcm",
        ct,
        [
            group(
                [
                    measurement(LONG_AXIS, mm(long_pts), MM, ct, long_pts),
                    measurement(SHORT_AXIS, mm(short_pts), MM, ct, short_pts),
                ],
                generate_uid(),
            )
        ],
    )
    return {"dir": out, "ct": ct_path}


def _count(img: Image.Image, rgb: tuple[int, int, int]) -> int:
    return int((np.asarray(img) == np.array(rgb, dtype=np.uint8)).all(axis=2).sum())


@pytest.mark.neo4j
def test_etl_stores_the_key_slice_and_the_explorer_shows_it(
    empty_graph, settings, sr_and_ct: dict, tmp_path: Path
) -> None:
    store = tmp_path / "images"
    options = EtlOptions(
        secret_path=tmp_path / "pseudonym.key", index_dir=tmp_path / "index", image_store=store
    )
    summary = run_etl(
        empty_graph, [sr_and_ct["dir"]], database=DATABASE, options=options, progress=False
    )
    assert summary.accepted == 1
    records, _, _ = empty_graph.execute_query(
        "MATCH (l:Lesion) RETURN l {.*} AS props", database_=DATABASE
    )
    [props] = [r["props"] for r in records]
    lesion_id = props["lesion_id"]
    assert props["image_stored"] is True and props["image_status"] == "found"
    # The graph names no file and holds no source identifier.
    text = json.dumps(props)
    assert str(store) not in text and ".png" not in text and ".dcm" not in text
    assert PATIENT_ID not in text and "SYNTHETIC^PATIENT" not in text

    # The key slice, pixels only, named by the pseudonymous lesion id.
    png = store / f"{lesion_id}.png"
    assert sorted(p.name for p in store.iterdir()) == [png.name]
    ct_image = read_ct_header(sr_and_ct["ct"])
    assert not isinstance(ct_image, str)
    np.testing.assert_array_equal(read_hu_png(png), read_hu(ct_image))
    data = png.read_bytes()
    for phi in (PATIENT_ID, PATIENT_NAME, "SYNTHETIC CT", "20240301"):
        assert phi.encode() not in data
    with Image.open(png) as img:
        assert not img.info.get("text")

    # Importing again rewrites nothing.
    inode, mtime = png.stat().st_ino, png.stat().st_mtime_ns
    run_etl(empty_graph, [sr_and_ct["dir"]], database=DATABASE, options=options, progress=False)
    assert (png.stat().st_ino, png.stat().st_mtime_ns, png.read_bytes()) == (inode, mtime, data)

    # The explorer finds it by lesion id in the same store and draws the axes on it.
    config = ExplorerConfig(settings=settings, image_store=store, cache_dir=tmp_path / "cache")
    with TestClient(create_app(config)) as client:
        full = client.get(f"/image/{lesion_id}/full")
        assert full.status_code == 200 and full.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(full.content)).convert("RGB")
        assert img.size == (64, 64)
        grey = np.asarray(img)[..., 0]
        assert grey.min() < 20 and grey.max() > 100  # air and soft tissue in the window
        assert _count(img, LONG_AXIS_RGB) >= 15 and _count(img, SHORT_AXIS_RGB) >= 8
        thumb = client.get(f"/image/{lesion_id}/thumb")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert _count(Image.open(io.BytesIO(thumb.content)).convert("RGB"), LONG_AXIS_RGB) > 0
        # The lesion page shows the zoomable key slice, not the body map's caption.
        page = client.get(f"/lesion/{lesion_id}")
        assert page.status_code == 200
        assert 'id="key-slice"' in page.text and "No key slice" not in page.text
    # Without the store the same lesion has only its body map.
    elsewhere = ExplorerConfig(
        settings=settings, image_store=tmp_path / "empty", cache_dir=tmp_path / "cache2"
    )
    with TestClient(create_app(elsewhere)) as client:
        body_map = client.get(f"/image/{lesion_id}/full")
        assert body_map.headers["content-type"].startswith("image/svg+xml")
        assert "No key slice" in client.get(f"/lesion/{lesion_id}").text
