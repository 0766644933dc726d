"""What each explorer page reads from the graph: the statements of ``cypher/web/`` and their rows.

Every function takes the caller's driver and database, reads in READ access mode through
:func:`lesionkg.db.guard.run_read`, passes every value as a parameter, and returns plain Python
values for the templates and the JSON API. An unknown patient or lesion gives ``None`` (the page
answers 404); an unreachable server raises :class:`~lesionkg.core.errors.DatabaseError` (503).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from lesionkg.core.records import COARSE_TYPES
from lesionkg.db.guard import run_read

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver

log = logging.getLogger(__name__)

#: width of a bar of the overview's size histogram, mm; larger lesions share the last bar
SIZE_BIN_MM = 5
SIZE_BINS = 20
#: SIMILAR_TO edges up to this rank join the patient's graph view (more would hide the patient)
GRAPH_MAX_RANK = 3
TYPE_SOURCES = ("either", "given", "predicted")


@cache
def web_statement(name: str) -> str:
    """The text of ``cypher/web/NAME.cypher`` (shipped in the package)."""
    return (resources.files("lesionkg.cypher.web") / f"{name}.cypher").read_text(encoding="utf-8")


@cache
def composed_statement(name: str) -> str:
    """``cypher/web/NAME.cypher`` with each ``// <PART>`` line replaced by ``PART.cypher``."""
    lines = []
    for line in web_statement(name).splitlines():
        marker = line.strip()
        if marker.startswith("// <") and marker.endswith(">"):
            lines.append(web_statement(marker[4:-1]))
        else:
            lines.append(line)
    return "\n".join(lines)


def _read(driver: Driver, database: str, name: str, **params: Any) -> list[dict[str, Any]]:
    return run_read(driver, database, composed_statement(name), params)


def type_name(code: int | None) -> str:
    return COARSE_TYPES.get(code, "unlabelled") if code is not None else "unlabelled"


def overview(driver: Driver, database: str) -> dict[str, Any]:
    """Counts, lesions per type (given, else predicted, else unlabelled), sizes and datasets."""
    row = _read(driver, database, "overview", bin_mm=float(SIZE_BIN_MM))[0]
    given: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    datasets: Counter[str] = Counter()
    lesions = 0
    for g in row["groups"]:
        n = g["lesions"]
        lesions += n
        datasets[g["dataset"] or "unknown"] += n
        if g["code"] is not None:
            given[type_name(g["code"])] += n
        elif g["predicted"] is not None:
            predicted[type_name(g["predicted"])] += n
        else:
            given["unlabelled"] += n
        if g["bin"] is not None:
            sizes[min(int(g["bin"]), SIZE_BINS - 1)] += n
    types = [
        {"type": name, "given": given[name], "predicted": predicted[name]}
        for name in [*COARSE_TYPES.values(), "unlabelled"]
        if given[name] or predicted[name]
    ]
    histogram = [
        {
            "from_mm": b * SIZE_BIN_MM,
            "to_mm": None if b == SIZE_BINS - 1 else (b + 1) * SIZE_BIN_MM,
            "lesions": sizes[b],
        }
        for b in range(SIZE_BINS)
    ]
    return {
        "patients": row["patients"],
        "studies": row["studies"],
        "lesions": lesions,
        "tracks": row["tracks"],
        "followed_by": row["followed_by"],
        "similar_to": row["similar_to"],
        "types": types,
        "sizes": histogram,
        "datasets": dict(sorted(datasets.items())),
    }


@dataclass(frozen=True, slots=True)
class CohortFilter:
    """The overview's cohort filter; ``None`` means "any". Sizes mm, box 0..1."""

    coarse_type: int | None = None
    type_source: str = "either"
    min_mm: float = 0.0
    max_mm: float = 10_000.0
    box: tuple[float, float, float, float, float, float] | None = None
    min_studies: int = 1
    dataset: str | None = None
    page: int = 1
    per_page: int = 25

    def params(self) -> dict[str, Any]:
        x0, x1, y0, y1, z0, z1 = self.box or (0.0, 1.0, 0.0, 1.0, 0.0, 1.0)
        return {
            "type": self.coarse_type,
            "type_source": self.type_source,
            "min_mm": float(self.min_mm),
            "max_mm": float(self.max_mm),
            "use_box": self.box is not None,
            "x_min": x0,
            "x_max": x1,
            "y_min": y0,
            "y_max": y1,
            "z_min": z0,
            "z_max": z1,
            "min_studies": int(self.min_studies),
            "dataset": self.dataset,
            "skip": (self.page - 1) * self.per_page,
            "limit": self.per_page,
        }


def cohort(driver: Driver, database: str, flt: CohortFilter) -> dict[str, Any]:
    """One page of the lesions matching ``flt``, largest first, and how many matched."""
    row = _read(driver, database, "cohort", **flt.params())[0]
    page = row["page"]
    for lesion in page:
        lesion["type"] = type_name(lesion.get("coarse_type") or lesion.get("predicted_type"))
        lesion["type_predicted"] = (
            lesion.get("coarse_type") is None and lesion.get("predicted_type") is not None
        )
    total = row["total"]
    pages = max(1, -(-total // flt.per_page))
    return {"total": total, "page": flt.page, "pages": pages, "lesions": page}


def patient(driver: Driver, database: str, patient_id: str) -> dict[str, Any] | None:
    """The patient and its studies with their lesions; None when unknown."""
    rows = _read(driver, database, "patient", patient_id=patient_id)
    if not rows:
        return None
    row = rows[0]
    for study in row["studies"]:
        for lesion in study["lesions"]:
            lesion["type"] = type_name(lesion.get("coarse_type") or lesion.get("predicted_type"))
    return {"patient": row["patient"], "studies": row["studies"]}


def patient_graph(
    driver: Driver, database: str, patient_id: str, space: str = "cues"
) -> dict[str, list[dict[str, Any]]]:
    """Nodes and edges of the patient's graph view (ids are strings the page's script uses)."""
    rows = _read(
        driver,
        database,
        "patient_graph",
        patient_id=patient_id,
        space=space,
        max_rank=GRAPH_MAX_RANK,
    )
    nodes: list[dict[str, Any]] = [
        {"id": f"p:{patient_id}", "kind": "patient", "label": patient_id}
    ]
    edges: list[dict[str, Any]] = []
    if not rows:
        return {"nodes": nodes, "edges": edges}
    row = rows[0]
    for s in row["studies"]:
        nodes.append(
            {"id": f"s:{s['study_id']}", "kind": "study", "label": f"study {s['study_index']}"}
        )
        edges.append(
            {"source": f"p:{patient_id}", "target": f"s:{s['study_id']}", "type": "HAS_STUDY"}
        )
    for lesion in row["lesions"]:
        lid = lesion["lesion_id"]
        size = lesion.get("long_axis_mm")
        kind = type_name(lesion.get("coarse_type") or lesion.get("predicted_type"))
        nodes.append(
            {
                "id": f"l:{lid}",
                "kind": "lesion",
                "label": f"{kind} {size:.0f} mm" if size is not None else kind,
                "href": f"/lesion/{lid}",
            }
        )
        edges.append(
            {"source": f"s:{lesion['study_id']}", "target": f"l:{lid}", "type": "HAS_LESION"}
        )
    for f in row["followed"]:
        edges.append(
            {"source": f"l:{f['source']}", "target": f"l:{f['target']}", "type": "FOLLOWED_BY"}
        )
    others: set[str] = set()
    for s in row["similar"]:
        if s["target"] not in others:
            others.add(s["target"])
            nodes.append(
                {
                    "id": f"l:{s['target']}",
                    "kind": "other",
                    "label": f"{s['patient_id']} · {type_name(s.get('code'))}",
                    "href": f"/lesion/{s['target']}",
                }
            )
        edges.append(
            {
                "source": f"l:{s['source']}",
                "target": f"l:{s['target']}",
                "type": "SIMILAR_TO",
                "label": f"#{s['rank']}",
            }
        )
    return {"nodes": nodes, "edges": edges}


def lesion(driver: Driver, database: str, lesion_id: str) -> dict[str, Any] | None:
    """The lesion, its patient and study, and its track with prev/next; None when unknown."""
    rows = _read(driver, database, "lesion", lesion_id=lesion_id)
    if not rows:
        return None
    row = rows[0]
    track = row["track"]
    index = next((i for i, m in enumerate(track) if m["lesion_id"] == lesion_id), None)
    previous = track[index - 1] if index else None
    following = track[index + 1] if index is not None and index + 1 < len(track) else None
    props = {k: v for k, v in row["lesion"].items() if v is not None}
    return {
        "lesion": props,
        "patient": row["patient"],
        "study": row["study"],
        "predicted_name": row["predicted_name"],
        "type": props.get("coarse_type_name") or row["predicted_name"] or "unlabelled",
        "track": track,
        "previous": previous,
        "next": following,
    }


def image_source(driver: Driver, database: str, lesion_id: str) -> dict[str, Any] | None:
    """What drawing the lesion's picture needs (see ``cypher/web/image_source.cypher``)."""
    rows = _read(driver, database, "image_source", lesion_id=lesion_id)
    return rows[0]["lesion"] if rows else None
