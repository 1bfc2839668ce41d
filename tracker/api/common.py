"""What every endpoint module shares: paging parameters, documented error answers, 4xx helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

from fastapi import HTTPException, Path, Query, status

from tracker.api.models import Error
from tracker.importers import Problem
from tracker.importers.models import MAX_ID

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="rows to skip")]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
DeviceIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]

_ERRORS: dict[int, str] = {
    401: "no token, or one that is unknown, revoked or expired",
    403: "the token's role may not use this endpoint",
    404: "no such resource among those the caller may see",
    409: "conflicts with what is registered (a duplicate id)",
    413: "the request body is too large",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers an endpoint gives (422 is documented by FastAPI)."""
    return {code: {"model": Error, "description": _ERRORS[code]} for code in codes}


READ = errors(401, 403, 404)
LIST = errors(401, 403)
WRITE = errors(401, 403, 404, 409, 413)
CREATE = errors(401, 403, 409, 413)


def not_found(what: str, key: object) -> NoReturn:
    """The same answer whether the row does not exist or the caller may not see it."""
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} {key}")


def invalid(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> NoReturn:
    """A 422 shaped like FastAPI's own: what is wrong (msg) and where (loc)."""
    raise HTTPException(422, [{"loc": list(loc), "msg": msg, "type": kind}])


def invalid_many(problems: Sequence[Problem], kind: str = "value_error") -> NoReturn:
    raise HTTPException(422, [{"loc": list(p.loc), "msg": p.msg, "type": kind} for p in problems])


def conflict(msg: str) -> NoReturn:
    raise HTTPException(status.HTTP_409_CONFLICT, msg)


def not_null(values: dict[str, Any], nullable: Sequence[str], loc: Sequence[str | int]) -> dict[str, Any]:
    """A PATCH body's fields, refusing an explicit null where the field cannot be empty."""
    for key, value in values.items():
        if value is None and key not in nullable:
            invalid([*loc, key], f"{key} cannot be null (leave it out to keep it)")
    return values
