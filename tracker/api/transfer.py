"""Bulk import and export of routes and danger zones: GeoJSON FeatureCollections and GPX files.

An import is all or nothing: every feature is checked first, and one bad feature means nothing is
written and the answer (422) lists every problem with where it is (``["body", "features", 3,
"geometry", "coordinates", 0, 2]``, or ``["body", "trk", 1]`` in GPX).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from tracker.api.auth import context, require
from tracker.api.common import CREATE, LIST, IdQuery, invalid_many
from tracker.api.context import AppContext
from tracker.api.models import Export, ImportResult
from tracker.importers import ImportDefaults, read_import, write_gpx
from tracker.importers.models import MAX_CORRIDOR_M, MIN_CORRIDOR_M, ZoneKind
from tracker.store.imports import ImportOutcome, apply_import, export_features
from tracker.store.tokens import Principal

router = APIRouter()

_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "a GeoJSON FeatureCollection (or one Feature), or a GPX 1.1 document",
        "content": {
            "application/geo+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
            "application/gpx+xml": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/api/v1/import",
    tags=["import / export"],
    response_model=ImportResult,
    responses=CREATE,
    openapi_extra=_IMPORT_BODY,
)
async def import_file(
    request: Request,
    mode: Literal["upsert", "create"] = Query(
        "upsert", description="upsert: a feature's id updates that route or zone; create: ids are ignored"
    ),
    dry_run: bool = Query(False, description="check everything, write nothing"),
    school_id: IdQuery = None,
    corridor_m: float | None = Query(
        None, ge=MIN_CORRIDOR_M, le=MAX_CORRIDOR_M, description="for routes that do not say"
    ),
    zone_kind: ZoneKind | None = Query(None, description="for danger zones that do not say"),
    who: Principal = Depends(require("admin", "school")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Import routes (school staff: for their school) and danger zones (city administrators)."""
    data = await request.body()
    defaults = ImportDefaults(school_id=school_id, corridor_m=corridor_m, zone_kind=zone_kind)
    drafts, problems = read_import(data, request.headers.get("content-type"), defaults)
    async with ctx.pool.acquire() as conn:
        outcome = await apply_import(
            conn,
            who,
            drafts,
            mode=mode,
            dry_run=dry_run,
            max_distance_m=ctx.settings.registry_max_distance_m,
            found=problems,
        )
    if not isinstance(outcome, ImportOutcome):
        invalid_many(outcome)
    return {"dry_run": outcome.dry_run, "created": outcome.created, "updated": outcome.updated}


@router.get(
    "/api/v1/export",
    tags=["import / export"],
    response_class=Response,
    responses={
        **LIST,
        200: {
            "description": "the routes and zones the caller may see, as an import reads them back",
            "content": {
                "application/geo+json": {"schema": Export.model_json_schema()},
                "application/gpx+xml": {"schema": {"type": "string"}},
            },
        },
    },
)
async def export_file(
    format: Literal["geojson", "gpx"] = "geojson",
    kind: Literal["route", "zone"] | None = None,
    school_id: IdQuery = None,
    who: Principal = Depends(require("admin", "school", "guardian")),
    ctx: AppContext = Depends(context),
) -> Response:
    """Routes and danger zones as a GeoJSON FeatureCollection or a GPX file (``properties.kind`` says
    which; a zone's own kind is ``zone_kind``). With ``school_id``: that school's routes only."""
    features = await export_features(ctx.pool, who, kind=kind, school_id=school_id)
    if format == "gpx":
        return Response(
            write_gpx(features),
            media_type="application/gpx+xml",
            headers={"Content-Disposition": 'attachment; filename="tracker-export.gpx"'},
        )
    return Response(
        Export(features=features).model_dump_json(),
        media_type="application/geo+json",
        headers={"Content-Disposition": 'attachment; filename="tracker-export.geojson"'},
    )
