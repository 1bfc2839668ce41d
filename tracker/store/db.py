"""The asyncpg pool and the migration runner."""

from __future__ import annotations

import asyncio
import json
from importlib import resources

import asyncpg

MIGRATION_LOCK = 0x7472_6163  # advisory lock key: one migrator at a time

# what PostgreSQL going away looks like (InternalClientError: a connection broken mid-operation while
# the server shut down, seen when the crash-safety test restarts PostgreSQL)
DB_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncio.TimeoutError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PoolConnection(asyncpg.Connection):
    """A pooled connection released without asyncpg's reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL: a round trip on every release, a tenth of the hot path's queries). Nothing
    here leaves such session state on a pooled connection: no SET, no LISTEN (the registry listener
    has its own connection), no advisory lock (the migrator's is on its own connection), no cursor
    outside a transaction; an open transaction is still rolled back on release."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 10, worker_id: str | None = None
) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as Python objects. ``worker_id``: the tracker process's
    name on its connections (the session setting ``tracker.worker_id``): the claimer recorded on the
    deliveries it claims (migration 0016); also their ``application_name``."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        connection_class=PoolConnection,
        # application_name: a worker's sessions as pg_stat_activity shows them (a lease keeper ends
        # those of a worker that is gone: tracker.cluster.leases)
        **(
            {"server_settings": {"tracker.worker_id": worker_id, "application_name": worker_id}}
            if worker_id
            else {}
        ),
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    """One connection that speaks jsonb as Python objects, like the pool's."""
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every migration shipped in tracker/store/migrations, in order."""
    folder = resources.files("tracker.store") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text(encoding="utf-8")) for name in names]


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; returns their versions."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
