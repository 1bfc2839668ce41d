"""The fencing check in a commit: a worker that lost a partition commits nothing for it.

A batch is prepared under the tokens its worker held for the partitions of the batch's children
(``Share.tokens_for``). Its transaction begins with ``fence``: the leases of those partitions are read
``FOR SHARE`` and compared with them. Any difference (the partition was taken over since, or was not
owned when the batch was prepared: ``NOT_OWNED``) raises ``Fenced`` and the transaction is rolled
back, so nothing of the batch is written; the batch loop does not acknowledge it, and the engine
delivers its messages again to the partition's new owner.

``FOR SHARE`` holds the rows until the batch commits: a takeover's token bump (an UPDATE) waits for a
commit in flight, so the new owner reads the children's checkpoints after the old owner's last commit,
never before it.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg


class Fenced(Exception):
    """A commit found leases that are no longer the ones its batch was prepared under."""

    def __init__(self, stale: Mapping[int, int]) -> None:
        self.stale = dict(stale)  # partition -> the token the batch was prepared under
        super().__init__(f"fenced: partitions {sorted(self.stale)} changed hands")

    @property
    def partitions(self) -> list[int]:
        return sorted(self.stale)


async def fence(conn: asyncpg.Connection, tokens: Mapping[int, int]) -> None:
    """Inside the batch's transaction, as its first statement: raise ``Fenced`` unless every
    partition in ``tokens`` still has the token given (rows locked FOR SHARE until the commit)."""
    if not tokens:
        return
    rows = await conn.fetch(
        "SELECT partition, token FROM partition_leases WHERE partition = ANY($1::smallint[])"
        " ORDER BY partition FOR SHARE",
        list(tokens),
    )
    current = {r["partition"]: r["token"] for r in rows}
    stale = {p: t for p, t in tokens.items() if current.get(p) != t}
    if stale:
        raise Fenced(stale)
