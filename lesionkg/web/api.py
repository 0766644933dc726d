"""The JSON API under ``/api/`` (OpenAPI schema at ``/api/openapi.json``): the pages' data for
notebooks and other tools. Errors are JSON ``{"error", "detail", "fields"?}`` with the status."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.requests import Request

from lesionkg.db.statements import queries
from lesionkg.web import console, content, lookups
from lesionkg.web.pages import CohortQuery, SimilarQuery
from lesionkg.web.state import BadParameter, NotFound, explorer_of

router = APIRouter(prefix="/api", tags=["explorer"])


class CypherRequest(BaseModel):
    """An ad-hoc read-only statement and its parameters."""

    query: str = Field(min_length=1, max_length=console.MAX_QUERY_CHARS)
    params: dict[str, Any] = Field(default_factory=dict)


@router.get("/overview", summary="Counts, lesions per type and long-axis histogram")
def overview(request: Request) -> dict[str, Any]:
    return content.overview(explorer_of(request))


def page_size(per_page: Annotated[int, Query(ge=1, le=200)] = 25) -> int:
    """How many lesions a page of ``/api/cohort`` holds.

    A dependency rather than a parameter of the route: FastAPI lists a route's own parameters
    before its dependencies', and the schema has always listed ``per_page`` after ``page``."""
    return per_page


@router.get("/cohort", summary="Lesions matching the cohort filter, one page, largest first")
def cohort(
    request: Request, flt: CohortQuery, per_page: Annotated[int, Depends(page_size)]
) -> dict[str, Any]:
    return content.cohort(explorer_of(request), replace(flt, per_page=per_page))


@router.get("/patients/{patient_id}", summary="A patient: studies, tracks, response, similar")
def patient(request: Request, patient_id: str, space: str = "cues") -> dict[str, Any]:
    data = content.patient(explorer_of(request), patient_id, space)
    data["response"] = asdict(data["response"])
    return data


@router.get("/patients/{patient_id}/graph", summary="The patient's graph view: nodes and edges")
def patient_graph(request: Request, patient_id: str, space: str = "cues") -> dict[str, Any]:
    content.check_id(patient_id, "patient_id")
    content.check_space(space)
    explorer = explorer_of(request)
    if lookups.patient(explorer.driver(), explorer.database, patient_id) is None:
        raise NotFound(f"no patient {patient_id!r} in the knowledge base")
    return lookups.patient_graph(explorer.driver(), explorer.database, patient_id, space)


@router.get("/lesions/{lesion_id}", summary="A lesion: properties, track, picture facts")
def lesion(request: Request, lesion_id: str) -> dict[str, Any]:
    data = content.lesion(explorer_of(request), lesion_id)
    data["image_url"] = f"/image/{lesion_id}/full"
    data["thumbnail_url"] = f"/image/{lesion_id}/thumb"
    return data


@router.get("/lesions/{lesion_id}/similar", summary="Nearest lesions of other patients")
def similar(request: Request, lesion_id: str, search: SimilarQuery) -> dict[str, Any]:
    return search.run(explorer_of(request), lesion_id)


@router.get("/queries", summary="The named queries and their parameters")
def named_queries() -> list[dict[str, Any]]:
    return [
        {
            "name": spec.name,
            "description": spec.description,
            "params": [
                {"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                for p in spec.params
            ],
            "example": spec.example,
        }
        for spec in queries().values()
    ]


@router.get("/queries/{name}", summary="Run a named query (parameters as p.NAME=value)")
def run_named(request: Request, name: str) -> dict[str, Any]:
    if name not in queries():
        raise BadParameter("name", f"no named query {name!r}")
    _, text, params = console.statement_of(request, name)
    result = console.execute(explorer_of(request), text, params)
    return {"columns": result.columns, "rows": result.as_dicts(), "truncated": result.truncated}


@router.post("/cypher", summary="Run an ad-hoc read-only statement (writes are refused)")
def cypher(request: Request, body: CypherRequest) -> dict[str, Any]:
    result = console.execute(explorer_of(request), body.query, body.params)
    return {
        "columns": result.columns,
        "rows": result.as_dicts(),
        "truncated": result.truncated,
        "elapsed_ms": round(result.elapsed_ms, 2),
        "nodes": result.nodes,
        "relationships": result.relationships,
    }
