"""Bearer-token authentication for HTTP and the websocket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tracker.api.context import AppContext
from tracker.store.tokens import Principal, resolve_token

_bearer = HTTPBearer(auto_error=False, description="an API token issued by the tracker")


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    found = await resolve_token(context(request).pool, credentials.credentials)
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "token unknown, revoked or expired",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits only the given roles (403 for a valid token of another role)."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if who.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {', '.join(roles)}")
        return who

    return check
