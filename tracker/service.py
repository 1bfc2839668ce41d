"""The running service: wires the running parts together and keeps them going; it decides nothing.

MQTT ingestor ─┐
HTTP ingest ───┴─queue─▶ BatchLoop ──▶ Pipeline ──▶ ack, answer, wake ──▶ Dispatcher ─▶ websocket SMS webhook
clock loop ──▶ Pipeline.tick (tracker.clock), then escalations ─────────────▲
registry NOTIFY ──▶ rebuild RegistryView in a thread ──▶ swap (the next batch uses it)
HTTP (FastAPI on uvicorn): API, /ws, /ws/school, the web pages
BatchLoop and clock ──▶ SchoolLiveFeed (only while a school's live map is open) ──▶ /ws/school
tokens_revoked NOTIFY, and a check of all open sockets' tokens ──▶ close /ws sockets on dead tokens
retention loop ──▶ purge old positions
broker probe (at start, every few minutes) ──▶ /readyz broker_settings: would the broker drop or throttle?
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvicorn

from tracker.alerts.channels import (
    AppriseSmsProvider,
    RecordingSmsProvider,
    SmsChannel,
    SmsProvider,
    WebhookChannel,
    WebSocketChannel,
)
from tracker.alerts.dispatcher import Dispatcher
from tracker.alerts.hub import WebSocketHub
from tracker.alerts.push import PushChannel, load_vapid_keys
from tracker.api import AppContext, create_app
from tracker.api.live_feed import SchoolLiveFeed
from tracker.batch_loop import BatchLoop
from tracker.config import Settings
from tracker.ingest.broker_probe import (
    MAX_PROBE,
    BrokerProbe,
    Finding,
    ProbeError,
    Protocol,
    negotiate,
    probe_topic,
)
from tracker.ingest.decode import RawMessage
from tracker.ingest.handoff import Handoff
from tracker.ingest.http import HttpIngress
from tracker.ingest.mqtt import BrokerAddress, MqttIngestor, ingest_topics, receive_maximum
from tracker.metrics import Metrics
from tracker.pipeline import Pipeline
from tracker.registry_view import RegistryView, build_view
from tracker.store.alert_lifecycle import escalate_due
from tracker.store.alert_rules import load_alert_rules
from tracker.store.alerts import release_stuck_deliveries
from tracker.store.db import DB_ERRORS, apply_migrations, create_pool
from tracker.store.registry_rows import load_registry

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 10.0  # how long a stop waits for tasks and for PostgreSQL connections to close


@dataclass
class Service:
    settings: Settings
    database_url: str
    mqtt_url: str
    metrics: Metrics = field(default_factory=Metrics)
    hub: WebSocketHub = field(default_factory=WebSocketHub)

    def __post_init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._registry_changed = asyncio.Event()
        self._view: RegistryView | None = None
        self._reads = self._swapped_read = 0  # registry reads started / the read behind the current view
        self._http: uvicorn.Server | None = None

    # --- life cycle --------------------------------------------------------------------------------
    async def start(self, *, http: bool = True) -> None:
        s = self.settings
        self.pool = await create_pool(self.database_url)
        async with self.pool.acquire() as conn:
            applied = await apply_migrations(conn)
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        await release_stuck_deliveries(self.pool)
        # listen before the first read, so that the registry loop need not read it all again (which
        # would hold two views at once: most of the memory peak at city scale)
        listener = await self._listen()
        await self.reload_registry()

        sms: SmsProvider = self._sms_provider()
        self._webhook = WebhookChannel(s.webhook_timeout_s)
        self.vapid_keys = await load_vapid_keys(self.pool, s.vapid_key_file)
        self._push = PushChannel(
            self.pool, self.vapid_keys, subject=s.vapid_subject, timeout_s=s.push_timeout_s
        )
        self.dispatcher = Dispatcher(
            self.pool,
            [WebSocketChannel(self.hub), SmsChannel(sms, s.public_url), self._webhook, self._push],
            max_attempts=s.delivery_max_attempts,
            backoff_s=s.delivery_backoff_s,
            rate_limit=(s.rate_limit_count, s.rate_limit_window_s),
        )
        self.pipeline = Pipeline(
            pool=self.pool,
            view=self.view,
            settings=s,
            metrics=self.metrics,
            connected_here=lambda guardian_id: self.hub.connections(guardian_id) > 0,
        )
        # the schools' live map sockets (/ws/school): what each committed batch changed, coalesced
        self.school_live = SchoolLiveFeed(
            pool=self.pool,
            view=self.view,
            state_of=self.pipeline.states.committed.get,
            min_interval_s=s.school_live_min_interval_s,
        )
        self._queue: Handoff[RawMessage] = Handoff(
            asyncio.get_running_loop(), s.ingest_queue_max, size=lambda m: len(m.payload)
        )
        protocol = await self._broker_protocol()
        self.ingestor = MqttIngestor(
            url=self.mqtt_url,
            client_id=s.mqtt_client_id,
            topics=ingest_topics(s.topic_prefix),
            queue=self._queue,
            mqtt5=protocol == Protocol.MQTT5,
            window=receive_maximum(s.ingest_queue_max, s.batch_max_messages),
        )
        self.ingestor.start()
        await self.ingestor.wait_connected()
        self.broker_probe = self._broker_probe(protocol)
        self.http_ingress = HttpIngress(
            self._queue, lambda: self.view().rows.devices, timeout_s=s.http_ingest_timeout_s
        )
        self.batch_loop = BatchLoop(
            pipeline=self.pipeline,
            queue=self._queue,
            settings=s,
            metrics=self.metrics,
            pool=self.pool,
            broker=self.ingestor,
            http=self.http_ingress,
            dispatcher=self.dispatcher,
            live=self.school_live.committed,
        )

        self.context = AppContext(
            settings=s,
            pool=self.pool,
            hub=self.hub,
            metrics=self.metrics,
            ingress=self.http_ingress,
            school_live=self.school_live,
            readiness={
                "mqtt": lambda: self.ingestor.connected,
                "pipeline": lambda: self.batch_loop.healthy,
                "registry": lambda: self._view is not None,
                "tasks": lambda: all(not t.done() for t in self._tasks),  # no loop has died
            },
        )
        if self.broker_probe is not None:
            probe = self.broker_probe
            self.context.readiness["broker_settings"] = lambda: probe.ready
            self.context.readiness_problems["broker_settings"] = probe.problem
        self.app = create_app(self.context)
        self.app.state.vapid_keys = self.vapid_keys  # the API's GET /api/v1/push/key
        self._spawn(self.batch_loop.run(), "batch loop")
        self._spawn(self.dispatcher.run(), "dispatcher")
        self._spawn(self._registry_loop(listener), "registry")
        self._spawn(self._clock_loop(), "clock")
        self._spawn(self._retention_loop(), "retention")
        if self.broker_probe is not None:
            self._spawn(self.broker_probe.run(), "broker probe")
        # one query for all open websockets' tokens, and a NOTIFY closes revoked ones at once
        self._spawn(self.context.sockets.run(self.database_url, s.ws_token_check_s), "socket tokens")
        if http:
            config = uvicorn.Config(
                self.app,
                host=s.http_host,
                port=s.http_port,
                log_level="warning",
                lifespan="off",
                # an alert is a few hundred bytes of JSON: compressing each one for each parent's socket
                # cost the event loop more than the bytes it saves
                ws_per_message_deflate=False,
            )
            self._http = _HttpServer(config)
            self._spawn(self._http.serve(), "http")
            while not self._http.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
            await asyncio.sleep(0.1)
        for t in self._tasks:
            t.cancel()
        # bounded: a stop must finish even when PostgreSQL or the broker is gone (a task stuck in a
        # connection attempt, a pool that cannot close its connections gracefully)
        _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S) if self._tasks else (set(), set())
        for t in stuck:
            log.warning("stopping: task %s did not finish in %.0f s", t.get_name(), STOP_TIMEOUT_S)
        self._tasks.clear()
        with contextlib.suppress(AttributeError):
            self.ingestor.stop()
        with contextlib.suppress(AttributeError):
            await self._webhook.close()
        with contextlib.suppress(AttributeError):
            await self._push.close()
        with contextlib.suppress(AttributeError):
            try:
                await asyncio.wait_for(self.pool.close(), STOP_TIMEOUT_S)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("stopping: PostgreSQL connections did not close; terminated")
                self.pool.terminate()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    # --- the broker -----------------------------------------------------------------------------------
    async def _broker_protocol(self) -> Protocol:
        """MQTT 5 where the broker speaks it (asked once, at start), else 3.1.1; or the version
        TRACKER_MQTT_VERSION names."""
        if self.settings.mqtt_version == "3.1.1":
            return Protocol.MQTT311
        if self.settings.mqtt_version == "5":
            return Protocol.MQTT5
        a = BrokerAddress.parse(self.mqtt_url)
        try:
            return await negotiate(
                host=a.host,
                port=a.port,
                username=a.username,
                password=a.password,
                client_id=f"{self.settings.mqtt_client_id}-probe",
            )
        except ProbeError as e:
            log.warning("could not ask the broker which MQTT it speaks (%s); trying MQTT 5", e)
            return Protocol.MQTT5

    def _broker_probe(self, protocol: Protocol) -> BrokerProbe | None:
        """Whether the broker would drop or throttle the tracker's messages, asked now and every
        TRACKER_BROKER_PROBE_INTERVAL_S (None: not asked)."""
        s = self.settings
        if not s.broker_probe_interval_s:
            return None
        a = BrokerAddress.parse(self.mqtt_url)
        metrics = self.metrics

        def counted(outcome: str, findings: list[Finding]) -> None:
            metrics.broker_probes[outcome] += 1
            for f in findings:
                metrics.broker_probe_failures[f.setting] += 1

        client_id = f"{s.mqtt_client_id}-probe"
        return BrokerProbe(
            host=a.host,
            port=a.port,
            username=a.username,
            password=a.password,
            protocol=protocol,
            client_id=client_id,
            topic=probe_topic(s.topic_prefix, s.mqtt_client_id),
            window=min(s.batch_max_messages, MAX_PROBE - s.broker_probe_messages),
            burst=s.broker_probe_messages,
            interval_s=s.broker_probe_interval_s,
            counted=counted,
        )

    def _sms_provider(self) -> SmsProvider:
        if self.settings.sms_provider == "apprise" and self.settings.sms_apprise_url:
            return AppriseSmsProvider(self.settings.sms_apprise_url, self.pool)
        return RecordingSmsProvider(self.pool)

    # --- registry ------------------------------------------------------------------------------------
    def view(self) -> RegistryView:
        assert self._view is not None, "registry not loaded yet"
        return self._view

    async def reload_registry(self) -> RegistryView:
        """Read the registry and build a new view off the event loop, then swap it in (one reference
        assignment: a batch keeps the view it took). Reloads may overlap (a NOTIFY and an explicit
        reload); a view built from an older read never replaces one built from a newer read."""
        self._reads += 1
        read = self._reads
        async with self.pool.acquire() as conn:
            rows = await load_registry(conn)
            rules = await load_alert_rules(conn)
        s = self.settings
        view = await asyncio.to_thread(
            build_view,
            rows,
            default_timezone=s.default_timezone,
            all_day=s.watch_all_day,
            rules=rules,
            home_fence_m=s.home_fence_m,
        )
        if read < self._swapped_read:
            return self.view()
        self._view, self._swapped_read = view, read
        settle_heap()
        log.info(
            "registry view %s: %d routes, %d zones, %d children, %d tags",
            view.version,
            len(rows.routes),
            len(rows.zones),
            len(rows.children),
            len(rows.tags),
        )
        return view

    async def _listen(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.database_url)
        await conn.add_listener("registry_changed", lambda *_: self._registry_changed.set())
        return conn

    async def _registry_loop(self, listening: asyncpg.Connection | None = None) -> None:
        """LISTEN for registry changes; rebuild at most every 200 ms while changes keep coming.
        ``listening``: a connection that was listening before the current view was read."""
        while True:
            if listening is not None:
                conn, listening = listening, None
            else:
                try:
                    conn = await self._listen()
                except DB_ERRORS as e:
                    log.warning("registry listener cannot connect (%s); retrying", e)
                    await asyncio.sleep(2)
                    continue
                try:
                    await self.reload_registry()  # changes made while we were not listening
                except DB_ERRORS as e:
                    log.warning("registry reload failed (%s); reconnecting", e)
                    with contextlib.suppress(*DB_ERRORS):
                        await conn.close()
                    await asyncio.sleep(1)
                    continue
            try:
                while not conn.is_closed():
                    try:
                        await asyncio.wait_for(self._registry_changed.wait(), 5)
                    except TimeoutError:
                        continue
                    await asyncio.sleep(0.2)
                    self._registry_changed.clear()
                    await self.reload_registry()
            except DB_ERRORS as e:
                log.warning("registry listener lost PostgreSQL (%s); reconnecting", e)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(*DB_ERRORS):
                    await conn.close()

    # --- the clock ------------------------------------------------------------------------------------
    async def _clock_loop(self) -> None:
        """Every tick: the time-based rules (signal lost, not arrived), then escalations that came due."""
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                self.school_live.clock_events(await self.pipeline.tick())
                self.school_live.alerts_changed(await escalate_due(self.pool, self.pipeline.escalation))
                self.dispatcher.wake()
            except DB_ERRORS as e:
                log.warning("clock rules skipped a tick (%s)", e)

    async def _retention_loop(self) -> None:
        """Privacy: purge positions (and dead letters) older than the retention period, now and then."""
        from datetime import timedelta

        from tracker.store.retention import purge_old_positions

        keep = timedelta(days=self.settings.positions_retention_days)
        while True:
            try:
                purged = await purge_old_positions(self.pool, keep=keep)
                if purged.positions or purged.dead_letters:
                    log.info("retention: %s", purged)
            except DB_ERRORS as e:
                log.warning("retention purge skipped (%s)", e)
            await asyncio.sleep(self.settings.retention_interval_s)


# The cyclic garbage collector's young-generation threshold (CPython's default: 700). Every decided fix
# allocates a new monitor state (about ten containers): at 700 the collector runs several times per
# batch; full collections walk every live object, the registry view's millions included.
GC_THRESHOLDS = (50_000, 20, 10)


def settle_heap() -> None:
    """After a registry view is swapped in: collect what the old one left (cycles included), then
    freeze what lives (the new view, mostly) out of the collector's sight, so that the collections the
    per-fix garbage causes do not walk the whole registry again and again (gc.freeze; what a frozen
    object refers to is still freed by reference counting when it goes)."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handlers: whoever runs the service decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("task %r crashed", task.get_name(), exc_info=task.exception())
