"""The device identities of a tag: which OwnTracks user/device or Traccar Client id speaks for it.

A phone app names itself, not a tag; school staff (or the city) say which tag it is. An identity not
registered here is refused by the ingest (``unknown_device``), never created on the fly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tracker.api.auth import context, require
from tracker.api.common import READ, WRITE, DeviceIdPath, conflict, invalid, not_found
from tracker.api.context import AppContext
from tracker.store import registry_crud
from tracker.store.devices import replace_devices, tag_devices
from tracker.store.tokens import Principal

router = APIRouter(tags=["tags"])

Identity = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^+#\x00-\x1f]+$")]


class Device(BaseModel):
    protocol: Literal["owntracks", "osmand"]
    device: Identity = Field(
        description="owntracks: 'user/device' (its MQTT topic's two levels); osmand: the id"
    )


class Devices(BaseModel):
    devices: list[Device] = Field(max_length=20)


@router.get("/api/v1/tags/{tag_id}/devices", response_model=Devices, responses=READ)
async def get_devices(
    tag_id: DeviceIdPath,
    who: Principal = Depends(require("admin", "school", "guardian", "device")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """The phone apps registered to speak for this tag."""
    async with ctx.pool.acquire() as conn:
        if not await registry_crud.visible(conn, who, "tag", tag_id):
            not_found("tag", tag_id)
        return {"devices": await tag_devices(conn, tag_id)}


@router.put("/api/v1/tags/{tag_id}/devices", response_model=Devices, responses=WRITE)
async def put_devices(
    tag_id: DeviceIdPath,
    body: Devices,
    who: Principal = Depends(require("admin", "school")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Replace the tag's device identities (409 if one of them speaks for another tag)."""
    for i, d in enumerate(body.devices):
        if d.protocol == "owntracks" and (d.device.count("/") != 1 or "" in d.device.split("/")):
            invalid(["body", "devices", i, "device"], "an OwnTracks device is 'user/device'")
    wanted: list[tuple[str, str]] = sorted({(str(d.protocol), d.device) for d in body.devices})
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await registry_crud.visible(conn, who, "tag", tag_id, write=True):
            not_found("tag", tag_id)
        taken = await replace_devices(conn, tag_id, wanted)
        if taken:
            protocol, device = taken
            conflict(f"{protocol} device {device!r} already speaks for another tag")
        return {"devices": await tag_devices(conn, tag_id)}
