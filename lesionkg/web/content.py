"""What the pages and the JSON API show, assembled once for both: checked parameters in, plain
dicts out (the API returns them as they are; the pages add charts and markup)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from lesionkg.core.errors import QueryError
from lesionkg.core.records import COARSE_TYPES
from lesionkg.graph import cohort as graph_cohort
from lesionkg.web import lookups
from lesionkg.web.images import locate, window_of
from lesionkg.web.state import BadParameter, Explorer, NotFound

#: what patient and lesion ids may look like (DeepLesion, PACS pseudonyms, synthetic); anything
#: else is a bad parameter before it reaches a query
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SPACES = tuple(graph_cohort.SPACES)
MAX_K = 50

#: units and meanings of lesion properties, for the lesion page's table
UNITS: dict[str, str] = {
    "long_axis_mm": "mm",
    "short_axis_mm": "mm",
    "spacing_mm": "mm (x, y pixel spacing; z slice interval)",
    "window": "HU (min, max)",
    "recist": "px (long axis x1 y1 x2 y2, short axis x1 y1 x2 y2)",
    "long_axis_px": "px (x1 y1 x2 y2)",
    "short_axis_px": "px (x1 y1 x2 y2)",
    "bbox": "px (x1 y1 x2 y2)",
    "diameters_px": "px (long, short)",
    "location": "0..1 (x from patient's right, y from front, z from head)",
    "location_xy": "0..1 (x, y)",
    "image_size": "px (rows, columns)",
    "slice_range": "slice index (first, last)",
    "key_slice": "slice index",
    "predicted_type_confidence": "share of the kNN votes",
    "cues": "6-D metadata vector",
    "embedding_dim": "dimensions",
    "study_index": "order of the patient's studies",
}
#: properties not worth a row (long vectors) or shown elsewhere on the page
_HIDDEN = frozenset({"embedding", "image_path"})


def check_id(value: str, name: str) -> str:
    if not _ID.match(value):
        raise BadParameter(name, "expected letters, digits and . _ : - (at most 128)")
    return value


def check_space(space: str) -> str:
    if space not in SPACES:
        raise BadParameter("space", f"expected one of {', '.join(SPACES)}")
    return space


def parse_type(value: str | None, name: str = "type") -> int | None:
    """A coarse type given as code (``4``) or name (``liver``); empty or ``any`` is None."""
    text = (value or "").strip().lower()
    if text in ("", "any"):
        return None
    if text.isdigit() and int(text) in COARSE_TYPES:
        return int(text)
    for code, type_name in COARSE_TYPES.items():
        if type_name == text:
            return code
    raise BadParameter(name, f"expected a coarse type code 1..8 or name, or any; got {value!r}")


#: the overview's counts and charts aggregate the whole graph: computed at most this often
OVERVIEW_TTL_S = 30.0


def overview(explorer: Explorer) -> dict[str, Any]:
    return explorer.cached(
        "overview",
        OVERVIEW_TTL_S,
        lambda: lookups.overview(explorer.driver(), explorer.database),
    )


def cohort(explorer: Explorer, flt: lookups.CohortFilter) -> dict[str, Any]:
    if flt.min_mm > flt.max_mm:
        raise BadParameter("min_mm", "must not exceed max_mm")
    if flt.type_source not in lookups.TYPE_SOURCES:
        raise BadParameter("type_source", f"expected one of {', '.join(lookups.TYPE_SOURCES)}")
    if flt.box is not None:
        names = ("x_min", "x_max", "y_min", "y_max", "z_min", "z_max")
        for i in (0, 2, 4):
            if flt.box[i] > flt.box[i + 1]:
                raise BadParameter(names[i], f"must not exceed {names[i + 1]}")
    return lookups.cohort(explorer.driver(), explorer.database, flt)


def patient(explorer: Explorer, patient_id: str, space: str = "cues") -> dict[str, Any]:
    """The patient page's content: studies, tracks with growth, response, graph, similar."""
    check_id(patient_id, "patient_id")
    check_space(space)
    driver, db = explorer.driver(), explorer.database
    found = lookups.patient(driver, db, patient_id)
    if found is None:
        raise NotFound(f"no patient {patient_id!r} in the knowledge base")
    by_id = {
        lesion["lesion_id"]: lesion for study in found["studies"] for lesion in study["lesions"]
    }
    tracks = graph_cohort.patient_tracks(driver, patient_id, database=db)
    for track in tracks:
        per_study: dict[int, float] = defaultdict(float)
        for lid in track["lesion_ids"]:
            m = by_id.get(lid)
            if m is not None and m.get("long_axis_mm") is not None:
                per_study[m["study_index"]] = max(per_study[m["study_index"]], m["long_axis_mm"])
        track["growth"] = sorted(per_study.items())
        track["measurements_detail"] = [
            {
                "lesion_id": lid,
                "study_index": by_id[lid]["study_index"] if lid in by_id else None,
                "long_axis_mm": by_id[lid].get("long_axis_mm") if lid in by_id else None,
            }
            for lid in track["lesion_ids"]
        ]
    report = graph_cohort.patient_response(driver, patient_id, database=db)
    similar = graph_cohort.similar_patients(driver, patient_id, k=10, space=space, database=db)
    graph = lookups.patient_graph(driver, db, patient_id, space)
    return {
        "patient": found["patient"],
        "studies": found["studies"],
        "tracks": tracks,
        "response": report,
        "similar_patients": similar,
        "graph": graph,
        "space": space,
    }


def lesion(explorer: Explorer, lesion_id: str) -> dict[str, Any]:
    """The lesion page's content: properties with units, picture facts, track neighbours."""
    check_id(lesion_id, "lesion_id")
    found = lookups.lesion(explorer.driver(), explorer.database, lesion_id)
    if found is None:
        raise NotFound(f"no lesion {lesion_id!r} in the knowledge base")
    props = found["lesion"]
    found["has_image"] = (
        locate(props, explorer.config.images, explorer.config.image_store, lesion_id) is not None
    )
    found["display_window"] = window_of(props)
    found["properties"] = [
        {"name": k, "value": v, "unit": UNITS.get(k, "")}
        for k, v in sorted(props.items())
        if k not in _HIDDEN
    ]
    if props.get("embedding_dim"):
        found["properties"].append(
            {
                "name": "embedding",
                "value": f"{props['embedding_dim']} numbers (not shown)",
                "unit": "",
            }
        )
    return found


def similar(
    explorer: Explorer,
    lesion_id: str,
    *,
    space: str = "cues",
    k: int = 10,
    coarse_type: int | None = None,
    min_mm: float = 0.0,
) -> dict[str, Any]:
    """The lesions of other patients nearest to ``lesion_id``; ``error`` says why there are none
    when the lesion cannot be searched in ``space`` (no vector, no index)."""
    check_id(lesion_id, "lesion_id")
    check_space(space)
    if not 1 <= k <= MAX_K:
        raise BadParameter("k", f"expected 1..{MAX_K}")
    if min_mm < 0:
        raise BadParameter("min_mm", "must not be negative")
    driver, db = explorer.driver(), explorer.database
    if lookups.image_source(driver, db, lesion_id) is None:
        raise NotFound(f"no lesion {lesion_id!r} in the knowledge base")
    try:
        rows = graph_cohort.similar_lesions(
            driver,
            lesion_id,
            k=k,
            space=space,
            other_patients=True,
            coarse_type=coarse_type,
            min_mm=min_mm,
            database=db,
        )
    except QueryError as exc:
        hint = {
            "cues": "lesionkg link --space cues writes the cues",
            "triplet": "lesionkg embed writes embeddings, lesionkg link --space triplet links them",
        }[space]
        return {"space": space, "k": k, "lesions": [], "error": f"{exc} ({hint})"}
    for row in rows:
        s = row["similarity"]
        # The index's score back to the space's distance (see similar_lesions.cypher).
        if space == "cues":
            row["distance"] = (1.0 / s - 1.0) if s > 0 else None
        else:
            row["distance"] = 2.0 - 2.0 * s
    return {"space": space, "k": k, "lesions": rows, "error": None}
