"""Where a PACS lesion's image-derived fields came from, decided in one place so that they never
contradict each other.

``image_status`` says what became of the image the bookmark references; ``location_source`` says
where the lesion's ``location`` (or ``location_xy``) came from. A location read from the key slice
needs a found image, and "no image" needs one that was not found. :func:`contradiction` states the
rule; the ETL builds both values from the names here, and the tests check every imported lesion
against it.
"""

from __future__ import annotations

from enum import StrEnum


class ImageStatus(StrEnum):
    """What became of the image a bookmark references."""

    #: the referenced CT image was read (its key slice gives location, crops and a thumbnail)
    FOUND = "found"
    #: referenced, not among the inputs; imported because missing images were allowed
    MISSING = "missing"
    #: referenced and among the inputs, but not a CT image LesionKG can measure on (an MR image, a
    #: SEG object, a CT header without pixel spacing); imported because missing images were allowed
    UNUSABLE = "unusable"
    #: the bookmark names no image (its lengths are the source's own)
    NOT_REFERENCED = "not referenced"


#: the source gave the location (DeepLesion's normalised coordinates, a JSON Lines ``location``)
GIVEN = "given by the source"
#: x, y from the key slice's body outline; z needs body-part regression
XY_ONLY = "image x, y; z needs an SSBR model (--ssbr)"
#: the key slice was read, but no body outline was found in it
NO_BODY = "none: no body found in the key slice"
#: the key slice was read, but the measurement has no pixel coordinates to place on it
NO_COORDINATES = "none: the measurement has no coordinates on the image"
#: what imports before ``image_status`` had four values wrote for every lesion without a found image
LEGACY_NO_IMAGE = "none: no image"

_FROM_IMAGE = (XY_ONLY, NO_BODY, NO_COORDINATES)


def from_ssbr(model_sha256: str) -> str:
    """x, y from the body outline, z from the body-part regression model with this checksum."""
    return f"image x, y; SSBR z ({model_sha256[:12]})"


def without_image(status: ImageStatus) -> str:
    """The location source of a lesion whose image was not found: it names why."""
    if status is ImageStatus.FOUND:
        raise ValueError("a lesion with a found image has a location source from that image")
    return f"none: image {status.value}"


def contradiction(image_status: str | None, location_source: str | None) -> str | None:
    """Why a lesion's ``image_status`` and ``location_source`` contradict each other, or None.

    DeepLesion lesions have no ``image_status`` (their locations are the dataset's own)."""
    if location_source == GIVEN:
        return None
    if location_source is None:
        return None if image_status is None else "an imported bookmark has no location source"
    known = {s.value for s in ImageStatus}
    if image_status not in known:
        return f"location source {location_source!r} without a known image status"
    found = image_status == ImageStatus.FOUND
    from_image = location_source in _FROM_IMAGE or location_source.startswith("image x, y; SSBR z")
    if from_image:
        return None if found else f"location source {location_source!r} but image {image_status}"
    if location_source == LEGACY_NO_IMAGE:
        return "the image was found, but the location source says there was none" if found else None
    if location_source.startswith("none: image "):
        said = location_source.removeprefix("none: image ")
        return None if said == image_status else f"image {image_status}, location source {said}"
    return f"unknown location source {location_source!r}"
