"""Escalation: an open warning or critical alert that nobody has acknowledged goes, after a set time,
to the child's next guardian, then to the school (its duty phone and its webhook).

Stateless between runs: what is due is read from the alerts table (`next_escalation_at`), so an
alert opened before a restart still escalates after it, and several trackers can share the work
(FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import asyncpg

from tracker.alerts.lifecycle import CHANNELS, Escalation, write_outbox


async def escalate_due(pool: asyncpg.Pool, escalation: Escalation, limit: int = 200) -> int:
    """Escalate every alert whose time has come; returns the outbox rows written."""
    written = 0
    async with pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            "SELECT a.id, a.child_id, a.severity, a.escalation_level, c.school_id,"
            " s.staff_phone, s.webhook_url"
            " FROM alerts a JOIN children c ON c.id = a.child_id JOIN schools s ON s.id = c.school_id"
            " WHERE a.state = 'open' AND a.acknowledged_at IS NULL AND a.next_escalation_at <= now()"
            " ORDER BY a.next_escalation_at FOR UPDATE OF a SKIP LOCKED LIMIT $1",
            limit,
        )
        for alert in due:
            guardians = await conn.fetch(
                "SELECT g.id, g.phone, g.channels"
                " FROM child_guardians cg JOIN guardians g ON g.id = cg.guardian_id"
                " WHERE cg.child_id = $1 ORDER BY cg.priority, cg.guardian_id",
                alert["child_id"],
            )
            level = alert["escalation_level"] + 1
            outbox: list[tuple[int, str, int | None, int | None, str]] = []
            if level < len(guardians):
                g = guardians[level]
                to: dict[str, object] = {"guardian_id": g["id"]}
                outbox = [
                    (alert["id"], "escalated", g["id"], None, ch)
                    for ch in g["channels"]
                    if ch in CHANNELS and (ch != "sms" or g["phone"])
                ]
            else:
                to = {"school_id": alert["school_id"]}
                if alert["staff_phone"]:
                    outbox.append((alert["id"], "escalated", None, alert["school_id"], "sms"))
                if alert["webhook_url"]:
                    outbox.append((alert["id"], "escalated", None, alert["school_id"], "webhook"))
            after = escalation.after(alert["severity"]) if level < len(guardians) else None
            await conn.execute(
                "UPDATE alerts SET escalation_level = $2, next_escalation_at = now() + $3::interval"
                " WHERE id = $1",
                alert["id"],
                level,
                after,
            )
            await conn.execute(
                "INSERT INTO alert_history (alert_id, step, detail) VALUES ($1, 'escalated', $2)",
                alert["id"],
                to | {"level": level, "messages": len(outbox)},
            )
            written += await write_outbox(conn, outbox)
    return written
