"""The device identities of a tag: which OwnTracks user/device or Traccar Client id speaks for it.

A phone app names itself, not a tag; school staff (or the city) say which tag it is. An identity not
registered here is refused by the ingest (``unknown_device``), never created on the fly.

An OwnTracks device that encrypts its payloads needs its secret here too (``key``: the secret as typed
into the app). The key is write-only: no answer carries it, only ``encrypted: true`` says that one is
kept (tracker.store.device_keys says why it cannot be hashed). A PUT that names a device without
``key`` keeps the key it had, so that a client can PUT back what it read; ``"key": null`` removes it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, SecretStr

from tracker.api.auth import context, require
from tracker.api.common import READ, WRITE, DeviceIdPath, conflict, invalid, not_found
from tracker.api.context import AppContext
from tracker.ingest.owntracks import secret_key
from tracker.store import registry_crud
from tracker.store.device_keys import keyed, set_keys, stored_keys
from tracker.store.devices import replace_devices, tag_devices
from tracker.store.tokens import Principal

router = APIRouter(tags=["tags"])

Identity = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^+#\x00-\x1f]+$")]


class Device(BaseModel):
    protocol: Literal["owntracks", "osmand"]
    device: Identity = Field(
        description="owntracks: 'user/device' (its MQTT topic's two levels); osmand: the id"
    )
    encrypted: bool = Field(
        default=False, description="owntracks: a key is kept to open the device's encrypted payloads"
    )


class Devices(BaseModel):
    devices: list[Device] = Field(max_length=20)


class DeviceIn(BaseModel):
    protocol: Literal["owntracks", "osmand"]
    device: Identity = Field(
        description="owntracks: 'user/device' (its MQTT topic's two levels); osmand: the id"
    )
    key: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="owntracks only, write-only: the secret the app encrypts its payloads with (its"
        " 'encryption key' setting; like the app, the first 32 bytes count). Left out: the device keeps"
        " the key it had; null: no key",
        json_schema_extra={"writeOnly": True},
    )


class DevicesIn(BaseModel):
    devices: list[DeviceIn] = Field(max_length=20)


async def _devices_out(conn: asyncpg.Connection, tag_id: str) -> dict[str, Any]:
    with_key = await keyed(conn, tag_id)
    return {
        "devices": [
            {**d, "encrypted": (d["protocol"], d["device"]) in with_key}
            for d in await tag_devices(conn, tag_id)
        ]
    }


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
        return await _devices_out(conn, tag_id)


@router.put("/api/v1/tags/{tag_id}/devices", response_model=Devices, responses=WRITE)
async def put_devices(
    tag_id: DeviceIdPath,
    body: DevicesIn,
    who: Principal = Depends(require("admin", "school")),
    ctx: AppContext = Depends(context),
) -> dict[str, Any]:
    """Replace the tag's device identities (409 if one of them speaks for another tag), and the keys
    of those that encrypt (write-only: a device named without `key` keeps its key)."""
    given: dict[tuple[str, str], bytes | None] = {}  # the keys this request sets or removes
    for i, d in enumerate(body.devices):
        if d.protocol == "owntracks" and (d.device.count("/") != 1 or "" in d.device.split("/")):
            invalid(["body", "devices", i, "device"], "an OwnTracks device is 'user/device'")
        if "key" not in d.model_fields_set:
            continue
        if d.key is not None and d.protocol != "owntracks":
            invalid(["body", "devices", i, "key"], "only an OwnTracks device encrypts its payloads")
        given[(d.protocol, d.device)] = None if d.key is None else secret_key(d.key.get_secret_value())
    wanted: list[tuple[str, str]] = sorted({(str(d.protocol), d.device) for d in body.devices})
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await registry_crud.visible(conn, who, "tag", tag_id, write=True):
            not_found("tag", tag_id)
        kept = await stored_keys(conn, tag_id)
        taken = await replace_devices(conn, tag_id, wanted)
        if taken:
            protocol, device = taken
            conflict(f"{protocol} device {device!r} already speaks for another tag")
        staying = set(wanted)
        await set_keys(conn, tag_id, {**{i: k for i, k in kept.items() if i in staying}, **given})
        return await _devices_out(conn, tag_id)
