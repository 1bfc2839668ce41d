"""Runs the core against a clock and publishes what it makes: ``Simulator(options).run(stop)``.

In-process use (e.g. beside the tracker in ``make run``)::

    stop = threading.Event()
    sim = Simulator(SimOptions(world=world, mqtt_url=url, quiet=True))
    threading.Thread(target=sim.run, args=(stop,), name="simulator", daemon=True).start()
    ...
    stop.set()

or from asyncio: ``summary = await run_simulator(options, stop=asyncio_event)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulator.core import FixGenerator, SimConfig
from simulator.gps import GpsConfig
from simulator.incidents import IncidentConfig, IncidentSchedule, TruthWriter
from simulator.messages import (
    FORMATS,
    MAX_BATCH,
    Fix,
    GateSighting,
    encode_batch,
    encode_owntracks,
    encode_position,
    encode_sightings,
    gateway_topic,
    owntracks_topic,
    position_topic,
    reader_topic,
)
from simulator.publisher import GatewayBatcher, MqttPublisher, parse_mqtt_url
from simulator.walker import WalkConfig
from simulator.world import World, load_world


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """Everything a run needs; the CLI flags map one to one (see cli.py)."""

    world: str | World
    """a world.v1 file path or http(s) URL, or a World already loaded"""
    token: str | None = None
    """Bearer token for a world URL"""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    prefix: str = ""
    """put before every topic, verbatim (e.g. 'city-a/')"""
    children: int | None = None
    """None: all in the world; fewer: the first; more: replicas with tags suffixed '-r{k}'"""
    interval_s: float = 15.0
    speed: float = 1.0
    """simulated seconds per real second"""
    duration_s: float | None = None
    """simulated seconds to run; None: until stopped"""
    start_ts: float | None = None
    """simulated start (Unix seconds); None: now"""
    seed: int = 1
    incidents_per_hour: float = 0.5
    """per child per simulated hour"""
    incident_fraction: float = 0.0
    """this fraction of the children has exactly one incident, in the first 60 % of the run (or hour)"""
    incident_kinds: Mapping[str, float] | None = None
    """relative weights of leave_route, enter_zone, sos, go_silent; None: the defaults"""
    schedule: IncidentSchedule | None = None
    """one child's incidents at fixed moments, kinds in turn (the demo's: tracker.demo.script)"""
    batch: int = 0
    """0: one fix per message; N: gateway batches of up to N fixes (native format only)"""
    format: str = "native"
    """'native' (tracker/v1/tags/{tag}/position) or 'owntracks' (owntracks/{tag}/{owntracks_device})"""
    owntracks_device: str = "tag"
    """the device part of an OwnTracks topic; the user part is the tag id (its MQTT username)"""
    rfid: bool = False
    """also publish RFID gate sightings when children arrive at and leave school"""
    duplicates: float = 0.0
    """fraction of fixes sent twice"""
    late: float = 0.0
    """fraction of fixes held back and sent after later ones"""
    gaps: float = 0.0
    """chance per fix of a gap (tunnel, subway) of 20-90 s without fixes"""
    batch_wait_s: float = 1.0
    """a partial gateway batch is sent after this many real seconds"""
    truth_path: str | None = None
    qos: int = 1
    client_id: str | None = None
    quiet: bool = False
    """no progress lines (the summary is still printed at the end)"""
    progress_every_s: float = 5.0
    tick_s: float = 0.05
    """real seconds between two steps of the core"""
    connect_timeout_s: float = 10.0
    drain_timeout_s: float = 10.0
    walk: WalkConfig = field(default_factory=WalkConfig)
    gps: GpsConfig = field(default_factory=GpsConfig)

    def __post_init__(self) -> None:
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ValueError("speed must be a positive number")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError("duration must be positive")
        if not 0 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch must lie in 0..{MAX_BATCH}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if self.batch and self.format != "native":
            raise ValueError("gateway batches exist in the native format only")
        if "/" in self.owntracks_device or "+" in self.owntracks_device or "#" in self.owntracks_device:
            raise ValueError("the OwnTracks device name must be one topic level")
        if self.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if "+" in self.prefix or "#" in self.prefix:
            raise ValueError("the topic prefix must not contain MQTT wildcards")
        if self.tick_s <= 0 or self.progress_every_s <= 0:
            raise ValueError("tick and progress periods must be positive")
        parse_mqtt_url(self.mqtt_url)
        self.sim_config()  # rejects contradictions in the core's settings up front

    def sim_config(self) -> SimConfig:
        # scripted incidents (incident_fraction) happen in the first 60 % of the run, so most of them
        # also end in it; in a run without an end, in its first hour
        window = 0.6 * self.duration_s if self.duration_s is not None else 3600.0
        kinds = {"kind_weights": dict(self.incident_kinds)} if self.incident_kinds is not None else {}
        incidents = IncidentConfig(
            per_child_per_hour=self.incidents_per_hour,
            fraction=self.incident_fraction,
            fraction_window_s=window,
            **kinds,  # type: ignore[arg-type]
        )
        return SimConfig(
            seed=self.seed,
            interval_s=self.interval_s,
            children=self.children,
            walk=self.walk,
            gps=self.gps,
            incidents=incidents,
            duplicate_probability=self.duplicates,
            late_probability=self.late,
            gap_probability=self.gaps,
            schedule=self.schedule,
            rfid_gates=self.rfid,
        )


@dataclass(slots=True)
class Summary:
    children: int = 0
    fixes: int = 0
    """fixes made by the core"""
    fixes_sent: int = 0
    """fixes handed to the broker connection (in single messages or batches)"""
    messages: int = 0
    """MQTT messages published (a batch is one)"""
    sightings: int = 0
    """RFID gate sightings published"""
    acked: int = 0
    dropped: int = 0
    disconnects: int = 0
    incidents: dict[str, int] = field(default_factory=dict)
    truth_records: int = 0
    sim_start_ts: float = 0.0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def fixes_per_s(self) -> float:
        """fixes sent per real second"""
        return self.fixes_sent / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.incidents.items())) or "none"
        return (
            f"simulator: {self.children} children, {self.fixes} fixes made, "
            f"{self.fixes_sent} sent in {self.messages} messages "
            f"({self.acked} acknowledged, {self.dropped} dropped, {self.disconnects} disconnects), "
            f"{self.fixes_per_s:.1f} fixes/s, "
            f"{self.sim_seconds:.0f} simulated s in {self.wall_seconds:.1f} s, "
            f"{self.sightings} RFID sightings, "
            f"incidents: {kinds}; {self.truth_records} truth records"
        )


MAX_CHUNK_REAL_S = 0.5
"""the core is advanced by at most this much real time's worth of simulated time per step"""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Simulator:
    """A run: the core, paced by the clock, published over MQTT, ground truth written."""

    def __init__(self, options: SimOptions, *, log: Callable[[str], None] = _stderr) -> None:
        self.options = options
        self._log = log
        self._summary = Summary()
        self._generator: FixGenerator | None = None
        self.lag_s = 0.0
        """how far (real seconds) the simulated clock is behind where it should be"""
        self._publisher: MqttPublisher | None = None

    @property
    def broker_connected(self) -> bool:
        return self._publisher is not None and self._publisher.connected

    def summary(self) -> Summary:
        """The figures so far (safe to call from another thread while it runs)."""
        s = self._summary
        pub, gen = self._publisher, self._generator
        if pub is not None:
            s.messages, s.acked, s.dropped, s.disconnects = (
                pub.published,
                pub.acked,
                pub.dropped,
                pub.disconnects,
            )
        if gen is not None:
            s.incidents = dict(gen.incidents_started)
            s.sim_seconds = gen.sim_time - gen.start_ts
        return s

    def run(self, stop: threading.Event | None = None) -> Summary:
        """Run until ``duration_s`` of simulated time has passed or ``stop`` is set; return the summary."""
        opts = self.options
        stop = stop or threading.Event()
        world = opts.world if isinstance(opts.world, World) else load_world(opts.world, opts.token)
        start_ts = opts.start_ts if opts.start_ts is not None else time.time()
        generator = FixGenerator(world, opts.sim_config(), start_ts)
        publisher = MqttPublisher(opts.mqtt_url, client_id=opts.client_id, qos=opts.qos)
        self._generator, self._publisher = generator, publisher
        summary = self._summary = Summary()
        summary.children = len(generator.children)
        summary.sim_start_ts = start_ts
        publisher.start(opts.connect_timeout_s)
        truth = TruthWriter(opts.truth_path) if opts.truth_path else None
        batcher = GatewayBatcher(opts.batch, opts.batch_wait_s) if opts.batch else None
        end_ts = start_ts + opts.duration_s if opts.duration_s is not None else math.inf
        real0 = time.monotonic()
        progress = _Progress(self, real0, quiet=opts.quiet)
        try:
            while not stop.is_set():
                now = time.monotonic()
                due = min(start_ts + (now - real0) * opts.speed, end_ts)
                # at most a short chunk at a time: memory stays bounded when catching up after a stall
                target = min(due, generator.sim_time + opts.speed * MAX_CHUNK_REAL_S)
                self.lag_s = (due - target) / opts.speed
                step = generator.advance(target)
                summary.fixes += len(step.fixes)
                for seen in step.sightings:
                    self._send_sighting(seen, stop, progress)
                if batcher is None:
                    for fix in step.fixes:
                        topic, payload = self._single(fix)
                        self._send(topic, payload, 1, stop, progress)
                else:
                    for gateway, fixes in batcher.add(step.fixes, now):
                        self._send(
                            gateway_topic(opts.prefix, gateway),
                            encode_batch(fixes),
                            len(fixes),
                            stop,
                            progress,
                        )
                if truth is not None:
                    truth.write(step.truth)
                progress.maybe_print(time.monotonic())
                if target >= end_ts:
                    break
                if target >= due:
                    stop.wait(max(0.0, opts.tick_s - (time.monotonic() - now)))
        finally:
            if batcher is not None:
                for gateway, fixes in batcher.drain():
                    self._send(
                        gateway_topic(opts.prefix, gateway), encode_batch(fixes), len(fixes), stop, progress
                    )
            if truth is not None:
                truth.write(generator.finish())
                summary.truth_records = truth.count
                truth.close()
            publisher.close(opts.drain_timeout_s)
            summary.wall_seconds = time.monotonic() - real0
            self.summary()
        progress.done()
        self._log(summary.line())
        return summary

    def _single(self, fix: Fix) -> tuple[str, bytes]:
        """One fix as one message, in the chosen format."""
        opts = self.options
        if opts.format == "owntracks":
            return owntracks_topic(opts.prefix, fix.tag, opts.owntracks_device), encode_owntracks(fix)
        return position_topic(opts.prefix, fix.tag), encode_position(fix)

    def _send_sighting(self, seen: GateSighting, stop: threading.Event, progress: _Progress) -> None:
        publisher = self._publisher
        assert publisher is not None
        while not publisher.has_room and not stop.is_set():
            stop.wait(0.005)
        if publisher.publish(
            reader_topic(self.options.prefix, seen.reader), encode_sightings(seen.ts, [seen.tag])
        ):
            self._summary.sightings += 1

    def _send(
        self, topic: str, payload: bytes, fixes: int, stop: threading.Event, progress: _Progress
    ) -> None:
        """Publish, after waiting while the broker is behind (back-pressure; see publisher.py)."""
        publisher = self._publisher
        assert publisher is not None
        while not publisher.has_room and not stop.is_set():
            progress.maybe_print(time.monotonic())
            stop.wait(0.005)
        if publisher.publish(topic, payload):
            self._summary.fixes_sent += fixes


BAR_WIDTH = 24


def progress_line(s: Summary, *, rate: float, lag_s: float, duration_s: float | None, broker_up: bool) -> str:
    """The progress report: a bar (when the run has a duration), the simulated clock, the live rate."""
    sim_clock = datetime.fromtimestamp(s.sim_start_ts + s.sim_seconds, UTC).strftime("%H:%M:%S")
    bar = ""
    if duration_s:
        done = min(1.0, max(0.0, s.sim_seconds / duration_s))
        filled = round(done * BAR_WIDTH)
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:4.0%} "
    broker = "up" if broker_up else "DOWN (reconnecting)"
    return (
        f"{bar}sim {sim_clock}Z +{s.sim_seconds:.0f}s | {rate:,.0f} fixes/s | sent {s.fixes_sent:,} "
        f"in {s.messages:,} msgs, acked {s.acked:,}, dropped {s.dropped:,} | lag {lag_s:.1f}s | "
        f"incidents {sum(s.incidents.values())} | broker {broker}"
    )


class _Progress:
    """The progress report with the live rate: on a terminal a bar redrawn in place twice a second,
    else a line every ``progress_every_s``."""

    def __init__(self, simulator: Simulator, real0: float, *, quiet: bool) -> None:
        self._sim = simulator
        self._quiet = quiet
        self._tty = simulator._log is _stderr and sys.stderr.isatty()
        self._every = 0.5 if self._tty else simulator.options.progress_every_s
        self._last_t = real0
        self._last_sent = 0
        self._rate = 0.0
        self._drawn = False

    def maybe_print(self, now: float) -> None:
        if self._quiet or now - self._last_t < self._every:
            return
        s = self._sim.summary()
        instant = (s.fixes_sent - self._last_sent) / (now - self._last_t)
        self._rate = instant if not self._drawn else 0.5 * self._rate + 0.5 * instant
        self._last_t, self._last_sent = now, s.fixes_sent
        line = progress_line(
            s,
            rate=self._rate,
            lag_s=self._sim.lag_s,
            duration_s=self._sim.options.duration_s,
            broker_up=self._sim.broker_connected,
        )
        if self._tty:
            sys.stderr.write("\r\x1b[2K" + line)
            sys.stderr.flush()
        else:
            self._sim._log(line)
        self._drawn = True

    def done(self) -> None:
        if self._tty and self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


async def run_simulator(options: SimOptions, stop: asyncio.Event | None = None) -> Summary:
    """Run a Simulator in a worker thread until its duration ends, ``stop`` is set or the task is
    cancelled; it always shuts down cleanly (truth flushed, MQTT drained) before returning."""
    halt = threading.Event()
    simulator = Simulator(options)
    worker = asyncio.ensure_future(asyncio.to_thread(simulator.run, halt))
    waiter = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        if waiter is not None:
            await asyncio.wait({worker, waiter}, return_when=asyncio.FIRST_COMPLETED)
            halt.set()
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        halt.set()
        with contextlib.suppress(Exception):
            await worker
        raise
    finally:
        if waiter is not None:
            waiter.cancel()
