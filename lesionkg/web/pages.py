"""The HTML pages: overview with cohort filter, patient, lesion, search, and lesion pictures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from lesionkg.web import charts, content, lookups
from lesionkg.web.state import BadParameter, Explorer, NotFound, explorer_of, templates

router = APIRouter(include_in_schema=False)

Unit = Annotated[float | None, Query(ge=0.0, le=1.0)]


def cohort_filter(
    type: Annotated[str | None, Query(description="coarse type code 1..8 or name")] = None,
    type_source: Annotated[str, Query(description="either, given or predicted")] = "either",
    min_mm: Annotated[float, Query(ge=0.0)] = 0.0,
    max_mm: Annotated[float, Query(ge=0.0)] = 10_000.0,
    x_min: Unit = None,
    x_max: Unit = None,
    y_min: Unit = None,
    y_max: Unit = None,
    z_min: Unit = None,
    z_max: Unit = None,
    min_studies: Annotated[int, Query(ge=1)] = 1,
    dataset: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> lookups.CohortFilter:
    """The cohort filter from request parameters; the box applies when any edge is given.

    A dependency of the overview page and of ``/api/cohort``, so that both take the same
    parameters with the same checks. The page size is the filter's default (the page's rows);
    the API sets its own ``per_page`` on top."""
    edges = (x_min, x_max, y_min, y_max, z_min, z_max)
    box = None
    if any(e is not None for e in edges):
        lo_hi = (0.0, 1.0, 0.0, 1.0, 0.0, 1.0)
        x0, x1, y0, y1, z0, z1 = (
            float(e) if e is not None else d for e, d in zip(edges, lo_hi, strict=True)
        )
        box = (x0, x1, y0, y1, z0, z1)
    return lookups.CohortFilter(
        coarse_type=content.parse_type(type),
        type_source=type_source,
        min_mm=min_mm,
        max_mm=max_mm,
        box=box,
        min_studies=min_studies,
        dataset=dataset or None,
        page=page,
    )


CohortQuery = Annotated[lookups.CohortFilter, Depends(cohort_filter)]


@dataclass(frozen=True, slots=True)
class SimilarSearch:
    """Which lesions of other patients the lesion page's gallery and ``/api/lesions/{id}/similar``
    list: the embedding space, how many, and an optional coarse type and least size."""

    space: str
    k: int
    type: str | None
    min_mm: float

    def run(self, explorer: Explorer, lesion_id: str) -> dict[str, Any]:
        # The type is parsed here rather than in similar_search so that each route keeps its
        # order of checks: the page says 404 for an unknown lesion before it looks at the type.
        return content.similar(
            explorer,
            lesion_id,
            space=self.space,
            k=self.k,
            coarse_type=content.parse_type(self.type),
            min_mm=self.min_mm,
        )


def similar_search(
    space: str = "cues",
    k: Annotated[int, Query(ge=1, le=content.MAX_K)] = 10,
    type: str | None = None,
    min_mm: Annotated[float, Query(ge=0.0)] = 0.0,
) -> SimilarSearch:
    """The similar-lesions search from request parameters (a dependency of both routes)."""
    return SimilarSearch(space=space, k=k, type=type, min_mm=min_mm)


SimilarQuery = Annotated[SimilarSearch, Depends(similar_search)]


@router.get("/")
def overview_page(request: Request, flt: CohortQuery) -> Response:
    explorer = explorer_of(request)
    stats = content.overview(explorer)
    result = content.cohort(explorer, flt)

    def page_url(n: int) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
        return "/?" + urlencode([*params, ("page", str(n))])

    return templates().TemplateResponse(
        request,
        "overview.html",
        {
            "stats": stats,
            "type_chart": Markup(charts.type_bars(stats["types"])),
            "size_chart": Markup(charts.size_histogram(stats["sizes"])),
            "cohort": result,
            "filter": flt,
            "query": dict(request.query_params),
            "previous_url": page_url(result["page"] - 1) if result["page"] > 1 else None,
            "next_url": page_url(result["page"] + 1) if result["page"] < result["pages"] else None,
            "type_names": list(content.COARSE_TYPES.values()),
        },
    )


@router.get("/search")
def search(request: Request, q: str = "") -> Response:
    """A patient id (``2`` or ``000002``) or a lesion id; 404 when neither exists."""
    text = q.strip()
    if not text:
        raise BadParameter("q", "give a patient or lesion id")
    content.check_id(text, "q")
    explorer = explorer_of(request)
    driver, db = explorer.driver(), explorer.database
    candidates = [text]
    if text.isdigit() and len(text) < 6:
        candidates.insert(0, text.zfill(6))
    for candidate in candidates:
        if lookups.patient(driver, db, candidate) is not None:
            return RedirectResponse(f"/patient/{candidate}", status_code=303)
    if lookups.image_source(driver, db, text) is not None:
        return RedirectResponse(f"/lesion/{text}", status_code=303)
    raise NotFound(f"no patient or lesion {text!r} in the knowledge base")


@router.get("/patient/{patient_id}")
def patient_page(request: Request, patient_id: str, space: str = "cues") -> Response:
    data = content.patient(explorer_of(request), patient_id, space)
    for track in data["tracks"]:
        track["chart"] = Markup(charts.growth_chart(track["growth"]))
    return templates().TemplateResponse(
        request,
        "patient.html",
        {
            **data,
            "response_chart": Markup(charts.response_chart(data["response"])),
            "graph_json": json.dumps(data["graph"]).replace("</", "<\\/"),
            "spaces": content.SPACES,
            "colours": charts.CATEGORY_COLOURS,
        },
    )


@router.get("/lesion/{lesion_id}")
def lesion_page(request: Request, lesion_id: str, similar: SimilarQuery) -> Response:
    explorer = explorer_of(request)
    data = content.lesion(explorer, lesion_id)
    gallery = similar.run(explorer, lesion_id)
    return templates().TemplateResponse(
        request,
        "lesion.html",
        {
            **data,
            "gallery": gallery,
            "spaces": content.SPACES,
            "type_filter": similar.type or "",
            "min_mm": similar.min_mm,
            "type_names": list(content.COARSE_TYPES.values()),
        },
    )


def _render_picture(request: Request, lesion_id: str, variant: Literal["full", "thumb"]) -> Path:
    explorer = explorer_of(request)
    src = lookups.image_source(explorer.driver(), explorer.database, lesion_id)
    if src is None:
        raise NotFound(f"no lesion {lesion_id!r} in the knowledge base")
    return explorer.pictures.create(lesion_id, variant, src)


@router.get("/image/{lesion_id}/{variant}")
async def picture(request: Request, lesion_id: str, variant: Literal["full", "thumb"]) -> Response:
    """The lesion's key slice with its axes (PNG) or its body map (SVG), from the cache when
    rendered before. Only the lesion id comes from the URL; files come from the graph's facts.

    Async so that a cached picture (two stat calls) never waits for a worker thread behind slow
    pages; reading the graph and rendering run in the thread pool."""
    content.check_id(lesion_id, "lesion_id")
    path = explorer_of(request).pictures.lookup(lesion_id, variant)
    if path is None:
        path = await run_in_threadpool(_render_picture, request, lesion_id, variant)
    media = "image/png" if path.suffix == ".png" else "image/svg+xml"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/guide/lesionkg.html")
def browser_guide() -> Response:
    """The LesionKG guide for Neo4j Browser (``:play http://127.0.0.1:8000/guide/lesionkg.html``).

    The Browser fetches it from its own origin, so the answer allows any origin: it is the same
    static text for everyone."""
    from lesionkg.db.server import guide_html

    return HTMLResponse(guide_html(), headers={"Access-Control-Allow-Origin": "*"})
