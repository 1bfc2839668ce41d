"""The running service: wires the running parts together and keeps them going; it decides nothing.

MQTT ingestor ─┐
HTTP ingest ───┴─queue─▶ BatchLoop ──▶ Pipeline ──▶ ack, answer, wake ──▶ Dispatcher ─▶ websocket SMS webhook
clock loop ──▶ Pipeline.tick (tracker.clock), then escalations ─────────────▲
registry NOTIFY ──▶ rebuild RegistryView in a thread ──▶ swap (the next batch uses it)
HTTP (FastAPI on uvicorn): API, /ws, /ws/school, the web pages
BatchLoop and clock ──▶ SchoolLiveFeed (only while a school's live map is open) ──▶ /ws/school
tokens_revoked NOTIFY, and a check of all open sockets' tokens ──▶ close /ws sockets on dead tokens
alert_sockets NOTIFY (a websocket delivery another process claimed) ──▶ SocketRelay ──▶ this process's /ws
retention loop ──▶ purge old positions
broker probe (at start, every few minutes) ──▶ /readyz broker_settings: would the broker drop or throttle?
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvicorn

from tracker import heap
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
from tracker.alerts.relay import SocketRelay
from tracker.api import AppContext, create_app
from tracker.api.live_feed import SchoolLiveFeed
from tracker.batch_loop import Acknowledger, BatchLoop
from tracker.cluster.keeper_thread import ThreadedLeaseKeeper
from tracker.cluster.partitions import default_worker_id
from tracker.config import Settings
from tracker.geofence import kernels as geofence_kernels
from tracker.ingest import jetstream
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
    # this process's name among the tracker processes on one PostgreSQL: the claimer recorded on the
    # deliveries it claims (tracker.store.alerts: at start it releases its own earlier claims at once,
    # other processes' only when stale), so it must be its own and is best stable across restarts.
    # By default TRACKER_WORKER_ID; else one tracker on MQTT: its MQTT client id (a broker holds one
    # session per client id, so two never share it); else hostname-pid (a new name each start: its
    # own claims of before a restart are released when stale, after the claim timeout)
    worker_id: str = ""

    def __post_init__(self) -> None:
        s = self.settings
        self.worker_id = self.worker_id or s.worker_id
        if not self.worker_id:
            self.worker_id = s.mqtt_client_id if s.engine == "mqtt" else default_worker_id()
        self._tasks: list[asyncio.Task[None]] = []
        self._errands: set[asyncio.Task[None]] = set()
        self._registry_changed = asyncio.Event()
        self._view: RegistryView | None = None
        self._reads = self._swapped_read = 0  # registry reads started / the read behind the current view
        self._http: uvicorn.Server | None = None

    # --- life cycle --------------------------------------------------------------------------------
    async def start(self, *, http: bool = True) -> None:
        s = self.settings
        self.pool = await create_pool(self.database_url, worker_id=self.worker_id)
        async with self.pool.acquire() as conn:
            applied = await apply_migrations(conn)
        if applied:
            log.info("applied migrations %s", ", ".join(applied))
        log.info("geofence kernels: %s", geofence_kernels.IN_USE)
        await release_stuck_deliveries(self.pool, s.delivery_claim_timeout_s)
        # listen before the first read, so that the registry loop need not read it all again (which
        # would hold two views at once: most of the memory peak at city scale)
        listener = await self._listen()
        await self.reload_registry()

        # a websocket delivery claimed here reaches the guardian's sockets on the other processes too
        self.relay = SocketRelay(self.hub, self.pool, self.worker_id)
        sms: SmsProvider = self._sms_provider()
        self._webhook = WebhookChannel(s.webhook_timeout_s)
        self.vapid_keys = await load_vapid_keys(self.pool, s.vapid_key_file)
        self._push = PushChannel(
            self.pool, self.vapid_keys, subject=s.vapid_subject, timeout_s=s.push_timeout_s
        )
        self.dispatcher = Dispatcher(
            self.pool,
            [
                WebSocketChannel(self.hub, self.relay),
                SmsChannel(sms, s.public_url),
                self._webhook,
                self._push,
            ],
            max_attempts=s.delivery_max_attempts,
            backoff_s=s.delivery_backoff_s,
            rate_limit=(s.rate_limit_count, s.rate_limit_window_s),
            claim_timeout_s=s.delivery_claim_timeout_s,
        )
        # a worker of a cluster owns some partitions of the children by its leases; one process, all
        self.keeper: ThreadedLeaseKeeper | None = self._lease_keeper() if s.engine == "nats" else None
        self.pipeline = Pipeline(
            ownership=self.keeper,
            pool=self.pool,
            view=self.view,
            settings=s,
            metrics=self.metrics,
            # a critical alert's websocket deliveries are claimed in its commit and sent at once
            # whether or not the guardian has a socket here: their sockets may be on another process,
            # which the relay tells as soon as the commit is done (a guardian with none anywhere: the
            # delivery is marked 'offline' at once, as a round would)
            connected_here=lambda guardian_id: True,
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
        broker: Acknowledger
        if s.engine == "nats":
            broker, engine_ready = await self._start_worker()
            self.broker_probe = None
        else:
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
            broker, engine_ready = self.ingestor, ("mqtt", lambda: self.ingestor.connected)
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
            broker=broker,
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
                engine_ready[0]: engine_ready[1],
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
        self._spawn(self.relay.run(self.database_url), "socket relay")
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
        # a worker hands its partitions over while its batch loop still commits what it read
        keeper: ThreadedLeaseKeeper | None = getattr(self, "keeper", None)
        if keeper is not None and hasattr(self, "partition_ingest"):
            try:
                await asyncio.wait_for(keeper.stop(), STOP_TIMEOUT_S)
            except (TimeoutError, *DB_ERRORS) as e:
                log.warning("stopping: partitions not handed over (%s); they lapse after the lease", e)
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
            await self.front.stop()
        with contextlib.suppress(AttributeError):
            await self.partition_ingest.stop()
        with contextlib.suppress(AttributeError):
            await self._nats.close()
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

    def _errand(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A short task (not one of the loops /readyz watches); a crash is logged like a loop's."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._errands.add(task)
        task.add_done_callback(self._errands.discard)

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

    # --- a worker of a cluster (TRACKER_ENGINE=nats) ---------------------------------------------------
    async def _start_worker(self) -> tuple[Acknowledger, tuple[str, Callable[[], bool]]]:
        """The engine's front stage, the partitions this worker owns by its leases, and the HTTP ingest
        through the front (tracker.ingest.jetstream, tracker.cluster). Returns what acknowledges the
        batch loop's messages, and the engine's readiness."""
        s = self.settings
        keeper = self.keeper
        assert keeper is not None
        self._nats = await jetstream.connect(s.nats_url, keeper.worker_id)
        js = self._nats.jetstream()
        await jetstream.ensure_streams(
            js, topic_prefix=s.topic_prefix, replicas=s.nats_replicas, partitions=s.partitions
        )
        self.front = jetstream.FrontStage(
            js,
            self._nats,
            self.pool,
            self.view,
            s,
            s.partitions,
            token_of=keeper.token_of,
            metrics=self.metrics,
        )
        self.partition_ingest = jetstream.PartitionIngest(
            js,
            self._queue,
            self.pool,
            topic_prefix=s.topic_prefix,
            replicas=s.nats_replicas,
            batch=s.batch_max_messages,
            owns=keeper.owns,
        )
        self.http_ingress = jetstream.ClusterHttpIngress(
            self.front, lambda: self.view().rows.devices, timeout_s=s.http_ingest_timeout_s
        )
        self._spawn(self.front.run(), "front")
        self._spawn(keeper.run(), "leases")
        return self.partition_ingest, ("engine", lambda: self._nats.is_connected)

    def _lease_keeper(self) -> ThreadedLeaseKeeper:
        """The partitions' leases, renewed on a thread and connections of their own: a worker whose
        event loop is busy is alive, and keeps its partitions (tracker.cluster.keeper_thread)."""
        s = self.settings
        return ThreadedLeaseKeeper(
            self.database_url,
            self.worker_id,
            s.partitions,
            s.lease_ttl_s,
            on_gained=lambda ps: self._errand(self._gained(ps), f"take {ps}"),
            on_lost=lambda ps: self._errand(self._lost(ps), f"lose {ps}"),
            before_release=self._release,
        )

    async def _gained(self, partitions: list[int]) -> None:
        """Partitions this worker took (their tokens are new): forget what it may hold of their
        children from an earlier ownership (their checkpoints are read again), then read them."""
        self.pipeline.forget_partitions(partitions)
        await asyncio.gather(
            *(self.partition_ingest.take(p) for p in partitions), *(self.front.take(p) for p in partitions)
        )

    async def _lost(self, partitions: list[int]) -> None:
        """Partitions taken over, lapsed or given up: stop reading them; their children's states go."""
        for p in partitions:
            self.front.give_up(p)
            await self.partition_ingest.give_up(p)
        self.pipeline.forget_partitions(partitions)

    async def _release(self, partitions: list[int]) -> None:
        """A graceful hand-over: stop reading, let what was read be committed and acknowledged (at most
        half a lease's time), then the keeper lets the partitions go."""
        for p in partitions:
            self.front.give_up(p)  # what it fetched and did not forward goes to the next front, first
            self.partition_ingest.stop_reading(p)
        deadline = time.monotonic() + self.settings.lease_ttl_s / 2
        while any(self.partition_ingest.pending(p) for p in partitions) and time.monotonic() < deadline:  # noqa: ASYNC110 (acks come from the batch loop: no event)
            await asyncio.sleep(0.05)
        for p in partitions:
            await self.partition_ingest.give_up(p)

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
            take_geometry=True,  # rows read for this view alone: their geometry goes once shaped
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
                self.school_live.alerts_changed(
                    await escalate_due(
                        self.pool,
                        self.pipeline.escalation,
                        share=self.keeper.share() if self.keeper is not None else None,
                    )
                )
                self.dispatcher.wake()
            except DB_ERRORS as e:
                log.warning("clock rules skipped a tick (%s)", e)

    async def _retention_loop(self) -> None:
        """Privacy: purge positions (and dead letters) older than the retention period, now and then; and
        make the day partitions of positions ahead (tracker.store.retention), the first time at start."""
        from datetime import timedelta

        from tracker.store.retention import purge_old_positions

        keep = timedelta(days=self.settings.positions_retention_days)
        while True:
            try:
                purged = await purge_old_positions(self.pool, keep=keep)
                if purged:  # anything purged, or partitions made or dropped
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
    heap.trim()  # the build's garbage is free now: its pages back to the system, not kept as RSS


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handlers: whoever runs the service decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("task %r crashed", task.get_name(), exc_info=task.exception())
