"""A PACS lesion's image_status and location_source: the rule that they never contradict."""

from __future__ import annotations

import pytest

from lesionkg.core.provenance import (
    GIVEN,
    LEGACY_NO_IMAGE,
    NO_BODY,
    NO_COORDINATES,
    XY_ONLY,
    ImageStatus,
    contradiction,
    from_ssbr,
    without_image,
)

NOT_FOUND = [s for s in ImageStatus if s is not ImageStatus.FOUND]


def test_what_the_etl_writes_never_contradicts() -> None:
    for source in (XY_ONLY, NO_BODY, NO_COORDINATES, from_ssbr("ab" * 32), GIVEN):
        assert contradiction(ImageStatus.FOUND, source) is None, source
    for status in NOT_FOUND:
        assert contradiction(status, without_image(status)) is None
        assert contradiction(status, GIVEN) is None
    # DeepLesion lesions: no image status, the dataset's own location.
    assert contradiction(None, GIVEN) is None
    assert contradiction(None, None) is None


def test_every_status_names_itself_in_its_location_source() -> None:
    assert without_image(ImageStatus.MISSING) == "none: image missing"
    assert without_image(ImageStatus.UNUSABLE) == "none: image unusable"
    assert without_image(ImageStatus.NOT_REFERENCED) == "none: image not referenced"
    with pytest.raises(ValueError, match="found image"):
        without_image(ImageStatus.FOUND)


@pytest.mark.parametrize(
    ("status", "source", "said"),
    [
        # What the ETL wrote before: a found image without coordinates was "no image".
        ("found", LEGACY_NO_IMAGE, "the image was found"),
        ("found", "none: image missing", "image found, location source missing"),
        ("missing", XY_ONLY, "but image missing"),
        ("unusable", NO_BODY, "but image unusable"),
        ("not referenced", from_ssbr("0" * 64), "but image not referenced"),
        ("missing", "none: image unusable", "image missing, location source unusable"),
        ("found", None, "has no location source"),
        (None, XY_ONLY, "without a known image status"),
        ("lost", XY_ONLY, "without a known image status"),
        ("found", "somewhere", "unknown location source"),
    ],
)
def test_contradictions_are_named(status: str | None, source: str | None, said: str) -> None:
    reason = contradiction(status, source)
    assert reason is not None and said in reason


def test_graphs_imported_before_stay_consistent_where_they_were() -> None:
    for status in ("missing", "unusable", "not referenced"):
        assert contradiction(status, LEGACY_NO_IMAGE) is None
