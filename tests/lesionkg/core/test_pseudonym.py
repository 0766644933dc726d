"""Pseudonymisation: the secret file, stable keyed ids, domain separation, nothing identifying."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import threading
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesionkg.config.secret import SECRET_BYTES, default_secret_path, load_or_create_secret
from lesionkg.core.errors import ConfigurationError
from lesionkg.core.pseudonym import Pseudonymizer, PseudonymousBookmark, lesion_key
from lesionkg.core.records import Bookmark, ImageRef
from lesionkg.loaders.jsonl import read_jsonl_bookmarks

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

#: Identifying strings, each of which must never appear in anything pseudonymise returns.
PATIENT = "DOE^JANE-19420317"
STUDY = "1.2.840.113619.2.55.3.604688119.971.1234567890.111"
SERIES = "1.2.840.113619.2.55.3.604688119.971.1234567890.222"
SOP = "1.2.840.113619.2.55.3.604688119.971.1234567890.333"
TRACKING_UID = "2.25.31415926535897932384626433832795"
TRACKING_ID = "Doe liver lesion"
IMAGE_PATH = "/pacs/export/DOE_JANE/CT/IM-0001-0162.png"


def bookmark(**changes) -> Bookmark:
    base = Bookmark(
        source="/pacs/export/DOE_JANE/bookmarks.jsonl",
        source_index=3,
        patient_key=PATIENT,
        study_key=STUDY,
        study_datetime="2024-03-01T10:22:00",
        series_key=SERIES,
        image=ImageRef(path=IMAGE_PATH),
        long_axis_mm=25.0,
        short_axis_mm=15.0,
        long_axis_px=(100.0, 100.0, 130.0, 140.0),
        short_axis_px=(121.0, 112.0, 109.0, 121.0),
        pixel_spacing_mm=(0.5, 0.5),
        finding="Mass",
        finding_site="Liver",
        coarse_type=4,
        tracking_id=TRACKING_ID,
        tracking_uid=TRACKING_UID,
        location=(0.5, 0.4, 0.6),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def key_file(tmp_path) -> Path:
    return tmp_path / "home" / "pseudonym.key"


@pytest.fixture
def pseudonymizer(key_file) -> Pseudonymizer:
    return Pseudonymizer(load_or_create_secret(key_file))


# --- the secret file -----------------------------------------------------------------------------


@posix_only
def test_a_missing_secret_is_created_with_mode_0600_and_then_reused(key_file):
    secret = load_or_create_secret(key_file)
    assert len(secret) == SECRET_BYTES
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes() == secret
    assert load_or_create_secret(key_file) == secret
    # No temporary file is left beside it.
    assert [p.name for p in key_file.parent.iterdir()] == ["pseudonym.key"]


@posix_only
def test_the_secret_is_created_0600_whatever_the_umask(key_file):
    old = os.umask(0)
    try:
        load_or_create_secret(key_file)
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_processes_creating_the_secret_at_once_end_up_with_one_key(key_file):
    results: list[bytes] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        results.append(load_or_create_secret(key_file))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert key_file.read_bytes() == results[0]


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o620])
def test_a_secret_others_can_read_or_change_is_refused(key_file, mode):
    load_or_create_secret(key_file)
    key_file.chmod(mode)
    with pytest.raises(ConfigurationError) as err:
        load_or_create_secret(key_file)
    message = str(err.value)
    assert str(key_file) in message and f"mode {mode:04o}" in message
    assert f"chmod 600 {key_file}" in message
    assert key_file.read_bytes().hex() not in message


@posix_only
def test_a_group_readable_secret_is_accepted(key_file):
    secret = load_or_create_secret(key_file)
    key_file.chmod(0o640)
    assert load_or_create_secret(key_file) == secret


@posix_only
def test_a_short_secret_is_refused_and_left_alone(key_file):
    key_file.parent.mkdir()
    key_file.write_bytes(b"0123456789")
    key_file.chmod(0o600)
    with pytest.raises(ConfigurationError, match=r"holds 10 bytes, fewer than the 16") as err:
        load_or_create_secret(key_file)
    assert str(key_file) in str(err.value) and "delete the file" in str(err.value)
    assert key_file.read_bytes() == b"0123456789"


def test_a_folder_in_place_of_the_secret_is_refused(key_file):
    key_file.mkdir(parents=True)
    with pytest.raises(ConfigurationError, match="is not a regular file"):
        load_or_create_secret(key_file)


@posix_only
def test_a_dangling_link_in_place_of_the_secret_is_refused(key_file):
    key_file.parent.mkdir()
    key_file.symlink_to(key_file.parent / "mounted" / "pseudonym.key")
    with pytest.raises(ConfigurationError, match="symbolic link to a missing file"):
        load_or_create_secret(key_file)
    assert not (key_file.parent / "mounted").exists()


@posix_only
def test_a_secret_of_your_own_is_used_as_it_is(key_file):
    key_file.parent.mkdir()
    key_file.write_bytes(b"our shared hospital key, 38 bytes!!\n")
    key_file.chmod(0o600)
    assert load_or_create_secret(key_file) == b"our shared hospital key, 38 bytes!!\n"


def test_the_default_secret_lies_beside_the_local_neo4j_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LESIONKG_HOME", str(tmp_path / "lk"))
    assert default_secret_path() == tmp_path / "lk" / "pseudonym.key"
    assert load_or_create_secret() == (tmp_path / "lk" / "pseudonym.key").read_bytes()


def test_a_short_secret_cannot_make_a_pseudonymizer():
    with pytest.raises(ConfigurationError, match="at least 16"):
        Pseudonymizer(b"short")


# --- ids -----------------------------------------------------------------------------------------


def test_ids_are_stable_across_instances_of_one_secret_file(key_file):
    first = Pseudonymizer(load_or_create_secret(key_file))
    second = Pseudonymizer(load_or_create_secret(key_file))
    b = bookmark()
    assert first.pseudonymise(b) == second.pseudonymise(b)
    assert first.patient_id(PATIENT) == second.patient_id(PATIENT)
    assert first.key_id == second.key_id


def test_id_formats(pseudonymizer):
    p = pseudonymizer.pseudonymise(bookmark())
    assert re.fullmatch(r"P-[0-9a-f]{16}", p.patient_id)
    assert re.fullmatch(r"S-[0-9a-f]{16}", p.study_id)
    assert re.fullmatch(r"SE-[0-9a-f]{16}", p.series_id)
    assert re.fullmatch(r"L-[0-9a-f]{16}", p.lesion_id)
    assert re.fullmatch(r"TU-[0-9a-f]{16}", p.tracking_uid)
    assert re.fullmatch(r"TI-[0-9a-f]{16}", p.tracking_id)
    assert re.fullmatch(r"K-[0-9a-f]{16}", pseudonymizer.key_id)


def test_known_answer_pins_the_construction():
    # Recomputed from the documented message layout with the standard library alone, so that a
    # change of the construction (which would re-id every patient) cannot pass unnoticed.
    import hashlib
    import hmac

    secret = bytes(range(32))
    message = b"lesionkg/v1/patient\0" + json.dumps(["000042"]).replace(" ", "").encode()
    expected = "P-" + hmac.new(secret, message, hashlib.sha256).hexdigest()[:16]
    assert Pseudonymizer(secret).patient_id("000042") == expected
    study = b'lesionkg/v1/study\0["000042","01"]'
    assert Pseudonymizer(secret).study_id("000042", "01") == (
        "S-" + hmac.new(secret, study, hashlib.sha256).hexdigest()[:16]
    )


def test_different_secrets_give_different_ids(tmp_path):
    a = Pseudonymizer(load_or_create_secret(tmp_path / "a.key"))
    b = Pseudonymizer(load_or_create_secret(tmp_path / "b.key"))
    pa, pb = a.pseudonymise(bookmark()), b.pseudonymise(bookmark())
    for field in (
        "lesion_id",
        "patient_id",
        "study_id",
        "series_id",
        "tracking_uid",
        "tracking_id",
    ):
        assert getattr(pa, field) != getattr(pb, field), field
    assert a.key_id != b.key_id


def test_kinds_are_separated_even_for_equal_strings(pseudonymizer):
    key = "12345"
    hexes = [
        pseudonymizer.patient_id(key),
        pseudonymizer.study_id(key, key),
        pseudonymizer.series_id(key, key, key),
        pseudonymizer.tracking_uid(key),
        pseudonymizer.tracking_id(key, key),
    ]
    digests = [h.split("-", 1)[1] for h in hexes]
    assert len(set(digests)) == len(digests), hexes
    # The digests share no long run either (they are independent, not shifted copies).
    for i, a in enumerate(digests):
        for b in digests[i + 1 :]:
            assert not any(a[j : j + 8] in b for j in range(9))


def test_field_boundaries_are_kept(pseudonymizer):
    assert pseudonymizer.study_id("a|b", "c") != pseudonymizer.study_id("a", "b|c")
    assert pseudonymizer.study_id("a", "b") != pseudonymizer.study_id("b", "a")
    # A patient's study "1" and another patient's study "1" are different studies.
    assert pseudonymizer.study_id("P1", "1") != pseudonymizer.study_id("P2", "1")
    assert pseudonymizer.tracking_id("P1", "Lesion 1") != pseudonymizer.tracking_id(
        "P2", "Lesion 1"
    )


def test_empty_keys_are_refused(pseudonymizer):
    with pytest.raises(ValueError, match="empty"):
        pseudonymizer.patient_id("")


def test_nothing_identifying_comes_out(pseudonymizer):
    b = bookmark(image=ImageRef(sop_instance_uid=SOP, frame=2, path=IMAGE_PATH))
    out = pseudonymizer.pseudonymise(b)
    text = repr(out) + json.dumps(dataclasses.asdict(out))
    for secret_text in (PATIENT, STUDY, SERIES, SOP, TRACKING_UID, TRACKING_ID, IMAGE_PATH):
        assert secret_text not in text
    # Nor any telling piece of them, outside the keyed hashes: a random key's hex digits can
    # spell "1942" by chance (1 run in a few hundred), which says nothing about the source.
    unhashed = re.sub(r"\b[A-Z]{1,2}-[0-9a-f]{16}\b", "<id>", text)
    for piece in ("DOE", "JANE", "1942", "604688119", "31415926", "IM-0001", "export"):
        assert piece.lower() not in unhashed.lower()
    assert {f.name for f in dataclasses.fields(PseudonymousBookmark)}.isdisjoint(
        {"source", "source_index", "image", "patient_key", "study_key", "series_key"}
    )
    # What stays in clear is the measurement and its coded description; the study date moves by
    # the patient's offset (whole days earlier), the time of day stays.
    shift = pseudonymizer.date_shift_days(out.patient_id)
    assert -1096 <= shift <= -1
    moved = (date(2024, 3, 1) + timedelta(days=shift)).isoformat()
    assert (out.study_datetime, out.long_axis_mm, out.short_axis_mm) == (
        f"{moved}T10:22:00",
        25.0,
        15.0,
    )
    assert (out.finding, out.finding_site, out.coarse_type) == ("Mass", "Liver", 4)
    assert out.long_axis_px == b.long_axis_px and out.pixel_spacing_mm == (0.5, 0.5)


def test_the_secret_never_shows(pseudonymizer, key_file):
    secret = key_file.read_bytes()
    assert secret.hex() not in repr(pseudonymizer)
    assert repr(pseudonymizer) == f"Pseudonymizer(key_id={pseudonymizer.key_id!r})"


def test_optional_parts_stay_empty(pseudonymizer):
    out = pseudonymizer.pseudonymise(
        bookmark(series_key=None, tracking_uid=None, tracking_id=None, image=None)
    )
    assert out.series_id is None and out.tracking_uid is None and out.tracking_id is None


# --- lesion ids ----------------------------------------------------------------------------------


def test_lesion_key_is_what_the_documentation_says():
    assert lesion_key(bookmark()) == (
        PATIENT,
        STUDY,
        "path:CT/IM-0001-0162.png",
        "px:100.00,100.00,130.00,140.00",
        "px:109.00,121.00,121.00,112.00",
    )
    dicom = bookmark(
        image=ImageRef(sop_instance_uid=SOP, frame=3),
        long_axis_px=None,
        short_axis_px=None,
        long_axis_mm=12.345,
        short_axis_mm=None,
    )
    assert lesion_key(dicom)[2:] == (f"uid:{SOP}#3", "mm:12.35", "-")


def test_lesion_id_is_the_same_for_the_same_measurement(pseudonymizer):
    lid = pseudonymizer.lesion_id(bookmark())
    same = [
        bookmark(source="elsewhere.jsonl", source_index=99),
        bookmark(long_axis_px=(130.0, 140.0, 100.0, 100.0)),  # drawn from the other end
        bookmark(long_axis_px=(100.0000004, 100.0, 130.0, 140.0)),  # float32 noise
        bookmark(image=ImageRef(path="/mnt/copy/of/CT/IM-0001-0162.png")),  # moved export
        bookmark(coarse_type=None, location=None),
        bookmark(series_key="another", tracking_uid="2.25.1", finding=None),
    ]
    assert [pseudonymizer.lesion_id(b) for b in same] == [lid] * len(same)


def test_lesion_id_differs_for_a_different_measurement(pseudonymizer):
    lid = pseudonymizer.lesion_id(bookmark())
    others = [
        bookmark(long_axis_px=(100.0, 100.0, 130.5, 140.0)),
        bookmark(short_axis_px=(121.0, 112.0, 109.0, 121.5)),
        bookmark(short_axis_px=None, short_axis_mm=None),
        bookmark(image=ImageRef(path="/pacs/export/DOE_JANE/CT/IM-0001-0163.png")),
        bookmark(image=ImageRef(sop_instance_uid=SOP)),
        bookmark(study_key=STUDY + ".1"),
        bookmark(patient_key=PATIENT + "X"),
    ]
    ids = [pseudonymizer.lesion_id(b) for b in others]
    assert lid not in ids and len(set(ids)) == len(ids)


def test_lesion_ids_survive_re_importing_a_moved_jsonl_export(pseudonymizer, tmp_path):
    export = tmp_path / "inbox"
    (export / "img").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(export / "img" / "k.png")
    line = {
        "patient": PATIENT,
        "study": STUDY,
        "study_time": "2024-03-01",
        "image": "img/k.png",
        "long_axis_px": [1, 1, 7, 9],
        "spacing_mm": [0.7, 0.7],
    }
    other = dict(line, long_axis_px=[1, 1, 7, 9.5])
    (export / "b.jsonl").write_text(json.dumps(line) + "\n" + json.dumps(other) + "\n")
    first = [pseudonymizer.lesion_id(b) for b in read_jsonl_bookmarks(export / "b.jsonl")]
    again = [pseudonymizer.lesion_id(b) for b in read_jsonl_bookmarks(export / "b.jsonl")]
    shutil.copytree(export, tmp_path / "done" / "inbox")
    moved = read_jsonl_bookmarks(tmp_path / "done" / "inbox" / "b.jsonl")
    assert first == again == [pseudonymizer.lesion_id(b) for b in moved]
    assert first[0] != first[1]
