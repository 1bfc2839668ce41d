"""The school's live map, pushed: what the pipeline commits, coalesced per school, for /ws/school.

The batch loop hands every committed batch to :meth:`SchoolLiveFeed.committed` (and the clock its
events to :meth:`SchoolLiveFeed.clock_events`), on the event loop, after the commit. While no school
socket is open that is all it costs: one test of an empty dict, no work per fix. While some are, the
feed keeps, for each watched school, the latest position of each of its children that moved, and
which of them changed; one task per watched school sends the changed children at most once per
``min_interval_s`` (TRACKER_SCHOOL_LIVE_MIN_INTERVAL_S), each with its latest position and its status
as the monitor's committed state says (tracker.monitor.status, the one place it is derived), so a
child's intermediate positions are dropped, never queued. An event that opens or resolves an alert
of a watched child is looked up in PostgreSQL (under the school's access rules, tracker.store.history)
and sent at once; so is an alert that changed without an event, told by id
(:meth:`SchoolLiveFeed.alerts_changed`): acknowledged by a guardian (tracker.api.alerts, tracker.api.ws)
or escalated by the clock (tracker.service, from what escalate_due returns).

Each socket has a mailbox (:class:`Subscriber`): the latest item per child and the alerts not sent
yet, bounded by the school's children; the socket's own task sends it (tracker.api.school_ws), so a
slow socket delays nobody, loses intermediate positions and, once a send times out, is closed (the
page polls meanwhile, reconnects, and catches up from a new snapshot).

In process only: a tracker process's sockets hear the batches that process commits. With several
tracker workers the same feed would be fed by a NOTIFY from the commit (the changed children of each
school) and read the children's latest positions and states from PostgreSQL (docs/design.md).

Who may see what: a school's socket gets its current children's positions, and of a child who moved
there, none timed before the move was seen (the registry view says which children are whose; a
child's fixes older than the view that moved it are not sent to the new school).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tracker.alerts.lifecycle import ChildEvent, incident_zone, rules_for
from tracker.api.alerts import alert_out  # the HTTP API's shape of an alert
from tracker.monitor.model import ChildState
from tracker.monitor.status import child_status
from tracker.registry_view import RegistryView
from tracker.stages.records import BatchOutcome
from tracker.store.batches import PositionRecord, PositionRows
from tracker.store.db import DB_ERRORS
from tracker.store.history import AlertFilter, get_alert, list_alerts
from tracker.store.registry_tables import children_at
from tracker.store.tokens import Principal

log = logging.getLogger(__name__)
AlertKey = tuple[str, int | None]  # a child's incident: its alert's kind and zone (alerts.lifecycle)
ALERTS_PER_LOOKUP = 20  # a child's newest alerts of the kinds an event touched, to find each incident in


def position_item(r: PositionRecord) -> dict[str, Any]:
    """A stored fix as the socket sends it (the shape of GET /api/v1/live's ``position``)."""
    return {"ts": r[1].isoformat(), "lon": r[3], "lat": r[4], "acc": r[5], "batt": r[6]}


class Subscriber:
    """One open socket's mailbox: each child's latest item (a later one replaces it) and the alerts
    not sent yet. It never grows past the school's children; alerts past MAX_ALERTS mark it
    overflowed (the socket is closed and the page catches up on reconnecting)."""

    MAX_ALERTS = 500

    def __init__(self, school_id: int) -> None:
        self.school_id = school_id
        self.children: dict[int, dict[str, Any]] = {}
        self.alerts: dict[int, dict[str, Any]] = {}
        self.overflowed = False
        self.ready = asyncio.Event()

    def put_children(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.children[item["child_id"]] = item
        if items:
            self.ready.set()

    def put_alert(self, alert: dict[str, Any]) -> None:
        if alert["id"] not in self.alerts and len(self.alerts) >= self.MAX_ALERTS:
            self.overflowed = True
        else:
            self.alerts[alert["id"]] = alert
        self.ready.set()

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What is waiting, oldest alert first; the mailbox is empty afterwards."""
        children, alerts = list(self.children.values()), list(self.alerts.values())
        self.children.clear()
        self.alerts.clear()
        self.ready.clear()
        return children, alerts


class _School:
    """A watched school: its sockets, its children's latest positions, what changed since the last
    send, and the task that sends it."""

    def __init__(self, school_id: int) -> None:
        self.school_id = school_id
        self.principal = Principal(token_id=0, role="school", school_id=school_id, label="school live map")
        self.subscribers: set[Subscriber] = set()
        self.positions: dict[int, PositionRecord] = {}  # child -> its latest fix seen while watched
        self.dirty: set[int] = set()  # children whose position or status changed since the last send
        self.alert_keys: dict[int, set[AlertKey]] = {}  # child -> incidents an event touched
        self.alert_ids: set[int] = set()  # alerts changed without an event (acknowledged, escalated)
        self.wake = asyncio.Event()
        self.last_flush = -1e18
        self.task: asyncio.Task[None] | None = None


class SchoolLiveFeed:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        view: Callable[[], RegistryView],
        state_of: Callable[[int], ChildState | None],
        min_interval_s: float,
        alerts_per_lookup: int = ALERTS_PER_LOOKUP,
    ) -> None:
        """``state_of``: a child's committed monitor state (tracker.child_states); ``view``: the
        current registry view (which children are at which school)."""
        self._pool = pool
        self._view = view
        self._state_of = state_of
        self._interval = min_interval_s
        self._per_lookup = alerts_per_lookup
        self._schools: dict[int, _School] = {}
        self._child_school: dict[int, int] = {}  # the watched schools' children -> their school
        self._not_before: dict[int, datetime] = {}  # child moved while watched -> fixes from then on
        self._seen_view: RegistryView | None = None
        self._stale = True  # the watched schools changed: the children map is rebuilt
        self.sent = 0  # child items handed to sockets (a test and metrics figure)

    # --- sockets ------------------------------------------------------------------------------------
    def subscribe(self, school_id: int) -> Subscriber:
        """A socket watches a school from now on: everything committed after this reaches its mailbox."""
        school = self._schools.get(school_id)
        if school is None:
            school = self._schools[school_id] = _School(school_id)
            school.task = asyncio.get_running_loop().create_task(
                self._pump(school), name=f"school live {school_id}"
            )
            self._stale = True
        sub = Subscriber(school_id)
        school.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        school = self._schools.get(sub.school_id)
        if school is None:
            return
        school.subscribers.discard(sub)
        if not school.subscribers:
            del self._schools[sub.school_id]
            if school.task is not None:
                school.task.cancel()
            self._stale = True
            if not self._schools:  # hold no registry view (a GB at city scale) while nobody watches
                self._seen_view, self._child_school, self._not_before = None, {}, {}

    @property
    def watched(self) -> int:
        """How many schools have a socket open."""
        return len(self._schools)

    # --- what the pipeline committed ----------------------------------------------------------------
    def committed(self, outcome: BatchOutcome) -> None:
        """A batch was committed: its watched children's latest fixes, status and alert events. Never
        raises: the live map is not worth a batch (a bug here is logged, and the map misses a beat)."""
        if not self._schools:
            return
        try:
            self._committed(outcome)
        except Exception:
            log.exception("school live map: a committed batch was not taken in")

    def _committed(self, outcome: BatchOutcome) -> None:
        watched = self._children()
        if not watched:
            return
        latest: dict[int, PositionRecord] = {}
        positions = outcome.positions
        # (a batch's rows are columns: a row is made only for a watched child)
        children = (
            positions.child.tolist() if isinstance(positions, PositionRows) else [r[2] for r in positions]
        )
        for i, c in enumerate(children):
            if c in watched:
                r = positions[i]
                known = latest.get(c)
                if known is None or r[1] > known[1]:
                    latest[c] = r
        schools = self._schools
        not_before = self._not_before
        for c, r in latest.items():
            school = schools[watched[c]]
            if c in not_before and r[1] < not_before[c]:
                continue  # timed before the child was seen to move here
            known = school.positions.get(c)
            if known is None or r[1] >= known[1]:
                school.positions[c] = r
            school.dirty.add(c)
            school.wake.set()
        self._events(outcome.events, watched)

    def clock_events(self, events: list[ChildEvent]) -> None:
        """The clock's rules committed these events (signal lost, not arrived): statuses and alerts.
        Never raises, as :meth:`committed`."""
        if not self._schools or not events:
            return
        try:
            self._events(events, self._children())
        except Exception:
            log.exception("school live map: the clock's events were not taken in")

    def alerts_changed(self, alerts: Iterable[tuple[int, int]]) -> None:
        """These alerts (id, child id) changed without an event of the pipeline: a guardian
        acknowledged one, the clock escalated one. Each is sent at once, as it is now, to its child's
        school's sockets. Never raises, as :meth:`committed`."""
        if not self._schools:
            return
        try:
            watched = self._children()
            for alert_id, child_id in alerts:
                school_id = watched.get(child_id)
                if school_id is not None:
                    school = self._schools[school_id]
                    school.alert_ids.add(alert_id)
                    school.wake.set()
        except Exception:
            log.exception("school live map: changed alerts were not taken in")

    def _events(self, events: list[ChildEvent], watched: dict[int, int]) -> None:
        for ce in events:
            school_id = watched.get(ce.child_id)
            if school_id is None:
                continue
            school = self._schools[school_id]
            school.dirty.add(ce.child_id)  # an event is a change of state: the status may differ
            keys = {(rule.kind, incident_zone(ce, rule)) for rule in rules_for(ce.event)}
            if keys:
                school.alert_keys.setdefault(ce.child_id, set()).update(keys)
            school.wake.set()

    def _children(self) -> dict[int, int]:
        """The watched schools' children, as the current registry view has them (rebuilt when the view
        or the watched schools change). A child whose school is not the one the previous view said
        gets a ``not before``: the new school is sent none of its fixes timed before the move was
        seen. Only the current view is held, and none once nobody watches."""
        view = self._view()
        if view is self._seen_view and not self._stale:
            return self._child_school
        before, previous = self._child_school, self._seen_view
        now = datetime.now(UTC)
        schools = self._schools
        after = children_at(view.rows.children, schools)
        if previous is not None and previous is not view:
            was = previous.rows.children
            for c, school_id in after.items():
                row = was.get(c)
                if row is not None and row.school_id != school_id:
                    self._not_before[c] = now
        for c, old in before.items():
            if after.get(c) != old and old in schools:
                gone = schools[old]
                gone.positions.pop(c, None)
                gone.dirty.discard(c)
                gone.alert_keys.pop(c, None)
        self._not_before = {c: t for c, t in self._not_before.items() if c in after}
        self._child_school, self._seen_view, self._stale = after, view, False
        return after

    # --- sending ------------------------------------------------------------------------------------
    async def _pump(self, school: _School) -> None:
        """One watched school's sender: alerts at once, children at most once per interval."""
        loop = asyncio.get_running_loop()
        while True:
            school.wake.clear()
            if school.alert_keys or school.alert_ids:
                try:
                    await self._alerts(school)
                except Exception:  # a bug: logged, and the school's map goes on
                    log.exception("school live map: alerts of school %s not sent", school.school_id)
                continue
            wait: float | None = None
            if school.dirty:
                wait = school.last_flush + self._interval - loop.time()
                if wait <= 0:
                    try:
                        self._flush(school, loop.time())
                    except Exception:  # a bug: logged, those changes lost, the map goes on
                        log.exception("school live map: changes of school %s not sent", school.school_id)
                        school.dirty.clear()
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(school.wake.wait(), wait)

    def _flush(self, school: _School, now: float) -> None:
        items = [self._item(school, c) for c in sorted(school.dirty)]
        school.dirty.clear()
        school.last_flush = now
        for sub in school.subscribers:
            sub.put_children(items)
        self.sent += len(items)

    def _item(self, school: _School, child: int) -> dict[str, Any]:
        state = self._state_of(child)
        item: dict[str, Any] = {
            "child_id": child,
            "status": child_status(state).value,
            "zones": sorted(state.zones_in) if state is not None else [],
        }
        r = school.positions.get(child)
        if r is not None:
            item["position"] = position_item(r)
        return item

    async def _alerts(self, school: _School) -> None:
        """The alerts the events touched, each as it is now (opened, resolved, a notice), to every
        socket of the school, then the alerts told by id. On PostgreSQL trouble they are looked up
        again a second later."""
        keys, school.alert_keys = school.alert_keys, {}
        ids, school.alert_ids = school.alert_ids, set()
        try:
            async with self._pool.acquire() as conn:
                for child, wanted in keys.items():
                    rows, _ = await list_alerts(
                        conn,
                        school.principal,
                        AlertFilter(child_id=child, kinds=tuple(sorted({k for k, _ in wanted}))),
                        limit=self._per_lookup,
                        offset=0,
                    )
                    found: set[AlertKey] = set()
                    for r in rows:  # newest first: each incident's current alert
                        key = (r["kind"], r["zone_id"] if r["kind"] == "danger_zone" else None)
                        if key in wanted and key not in found:
                            found.add(key)
                            alert = alert_out(r)
                            for sub in school.subscribers:
                                sub.put_alert(alert)
                for alert_id in sorted(ids):
                    row = await get_alert(conn, school.principal, alert_id)
                    if row is not None:  # None: not the school's (the child's school then was another)
                        alert = alert_out(row)
                        for sub in school.subscribers:
                            sub.put_alert(alert)
        except DB_ERRORS as e:
            log.warning("school live map: alerts of school %s not read (%s); again", school.school_id, e)
            for child, wanted in keys.items():
                school.alert_keys.setdefault(child, set()).update(wanted)
            school.alert_ids |= ids
            await asyncio.sleep(1.0)
