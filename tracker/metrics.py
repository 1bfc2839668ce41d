"""Counters of the running service: exposed at /api/v1/stats (JSON) and /metrics (Prometheus text)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tracker.broker_config import LeftOutReason
from tracker.store.gauges import LATENCY_BUCKETS_S, DatabaseGauges

FIX_AGE_BUCKETS_S = (
    0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_AGE_BOUNDS = np.asarray(FIX_AGE_BUCKETS_S)  # searchsorted "left": an age equal to a bound is in its bucket
FIX_AGE_POINTS = ("fetched", "forwarded", "queued", "prepared", "committed")
"""Where a fix's age is taken (``FixAges``). A cluster worker's front (tracker.ingest.jetstream):
"fetched" and "forwarded", each message's age since the engine stored it, when the front had it
and when the partition stream had stored its fixes. The pipeline: "queued", its message's wait in this
process, from its arrival here (the MQTT or HTTP receipt; a cluster worker's read from its partition)
to the start of the batch's preparation; "prepared" and "committed", the fix's age since the
tracker's receipt (a cluster's: the engine's storing it) when its batch's preparation began and when
its commit ended."""


@dataclass
class FixAges:
    """How old the fixes are at each point of the pipeline (``FIX_AGE_POINTS``), as histograms: where a
    fix's time goes before its alert can leave, counted over every fix (an alert's own figures are a
    few dozen a minute)."""

    counts: dict[str, npt.NDArray[np.int64]] = field(
        default_factory=lambda: {p: np.zeros(len(FIX_AGE_BUCKETS_S) + 1, np.int64) for p in FIX_AGE_POINTS}
    )  # per point: count per bucket (the last: above every bound), not cumulative
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FIX_AGE_POINTS, 0.0))

    def observe(self, point: str, ages: npt.NDArray[np.float64]) -> None:
        """Ages in seconds; one not finite is left out (a NaN sum would break the stats for good), one
        below 0 counts as 0 (a cluster compares the engine's clock with the worker's)."""
        ages = np.maximum(ages[np.isfinite(ages)], 0.0)
        if not len(ages):
            return
        self.counts[point] += np.bincount(np.searchsorted(_AGE_BOUNDS, ages), minlength=len(_AGE_BOUNDS) + 1)
        self.sums[point] += float(ages.sum())

    def snapshot(self) -> dict[str, object]:
        counts = {p: c.tolist() for p, c in self.counts.items()}
        return {"buckets_s": list(FIX_AGE_BUCKETS_S), "counts": counts, "sums_s": dict(self.sums)}


@dataclass
class Metrics:
    messages_in: int = 0
    fixes_in: int = 0
    fixes_stored: int = 0
    fixes_judged_wide: int = 0  # judged by their tag's learnt error scale (ChildState.error_scale > 1)
    batches: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # dead-letter reason -> count
    not_deciding: Counter[str] = field(default_factory=Counter)  # monitor verdict -> count
    events: Counter[str] = field(default_factory=Counter)  # monitor event kind -> count
    commit_retries: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # messages without a position, by type
    stage_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """wall-clock seconds the batch loop spent in each pipeline stage (and waiting for messages):
    where the time of a busy tracker goes"""
    broker_probes: Counter[str] = field(default_factory=Counter)  # probe outcome -> count
    broker_probe_failures: Counter[str] = field(default_factory=Counter)  # broker setting -> count
    """probes of the broker's settings (tracker.ingest.broker_probe) by outcome (ok, failed,
    inconclusive), and the failed ones by the setting that loses or throttles messages"""
    fix_ages: FixAges = field(default_factory=FixAges)
    fronted: Counter[str] = field(default_factory=Counter)
    """a cluster worker's front (tracker.ingest.jetstream): the devices' messages it took, by path:
    "stored" (QoS 1 and 2, from the MQTT listener's stream, by partition), "at_most_once" (QoS 0),
    "unmapped" (the server lacks the subject mappings: a shared consumer, order across workers not
    kept, and a node's loss can lose what was acknowledged; should stay 0)"""

    def snapshot(self) -> dict[str, object]:
        return {
            "messages_in": self.messages_in,
            "fixes_in": self.fixes_in,
            "fixes_stored": self.fixes_stored,
            "fixes_judged_wide": self.fixes_judged_wide,
            "batches": self.batches,
            "rejected": dict(self.rejected),
            "not_deciding": dict(self.not_deciding),
            "events": dict(self.events),
            "commit_retries": self.commit_retries,
            "ignored": dict(self.ignored),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "broker_probes": dict(self.broker_probes),
            "broker_probe_failures": dict(self.broker_probe_failures),
            "fix_age": self.fix_ages.snapshot(),
            "fronted": dict(self.fronted),
        }


class StageClock:
    """Adds the wall-clock time since the last lap to the named stage's total (in ``totals``: the
    metrics' ``stage_seconds``, or a table of its own that the event loop adds to them later)."""

    def __init__(self, totals: defaultdict[str, float] | None = None) -> None:
        self.totals: defaultdict[str, float] = defaultdict(float) if totals is None else totals
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        t = time.perf_counter()
        self.totals[stage] += t - self._t
        self._t = t


@dataclass(eq=False)
class _Scrape(Collector):
    metrics: Metrics
    gauges: dict[str, float]  # name -> value, for plain process gauges
    database: DatabaseGauges | None

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for name, doc, total in (
            ("tracker_messages_in", "broker messages taken into the pipeline", m.messages_in),
            ("tracker_fixes_in", "fixes decoded and admitted (known tag, not from the future)", m.fixes_in),
            ("tracker_fixes_stored", "fixes newly stored (duplicates are not counted)", m.fixes_stored),
            (
                "tracker_fixes_judged_wide",
                "fixes judged by their tag's learnt error scale: a device whose fixes at home or at school"
                " keep beyond, or scatter more than, the accuracy it reports",
                m.fixes_judged_wide,
            ),
            ("tracker_batches", "pipeline batches committed", m.batches),
            ("tracker_commit_retries", "batches retried after a database error", m.commit_retries),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], total)
            yield c
        for name, doc, label, by_label in (
            ("tracker_fixes_rejected", "messages or fixes dead-lettered, by reason", "reason", m.rejected),
            (
                "tracker_fixes_not_deciding",
                "stored fixes that decided nothing, by why (duplicate, stale, inaccurate, ...)",
                "verdict",
                m.not_deciding,
            ),
            (
                "tracker_messages_ignored",
                "valid messages that carry no position (OwnTracks lwt, card, ...), by type",
                "type",
                m.ignored,
            ),
            (
                "tracker_monitor_events",
                "monitor events (alerts opened and resolved), by kind",
                "kind",
                m.events,
            ),
            (
                "tracker_pipeline_stage_seconds",
                "wall-clock seconds the batch loop spent in each pipeline stage, and waiting for messages; "
                "clock_*: the clock rules' pass over the children, its wait for a turn, its commit",
                "stage",
                m.stage_seconds,
            ),
            (
                "tracker_front_messages",
                "a cluster worker's front: the devices' messages it took, by path (stored: QoS 1 and 2 by"
                " partition; at_most_once: QoS 0; unmapped: the server lacks the subject mappings, order and"
                " a node's loss not covered, should stay 0)",
                "path",
                m.fronted,
            ),
            (
                "tracker_broker_probes",
                "probes of whether the broker would drop or throttle the tracker's messages, by outcome"
                " (ok, failed, inconclusive)",
                "outcome",
                m.broker_probes,
            ),
            (
                "tracker_broker_probe_failures",
                "failed broker probes by the broker setting to change (max_queued_messages: it drops;"
                " max_inflight_messages: it throttles; acl_file: the probe topic is not allowed)",
                "setting",
                m.broker_probe_failures,
            ),
        ):
            c = CounterMetricFamily(name, doc, labels=[label])
            for key, n in sorted(by_label.items()):
                c.add_metric([str(key)], n)
            yield c
        h = HistogramMetricFamily(
            "tracker_fix_age_seconds",
            "how old each fix is, by point: fetched and forwarded (a cluster's front: since the engine"
            " stored it, fetched from it, stored in its partition's stream), queued (its message's wait"
            " here, from its arrival to its batch's preparation), prepared and committed (since the"
            " tracker's receipt: its batch's preparation began, its commit ended)",
            labels=["point"],
        )
        ages = m.fix_ages
        for point in FIX_AGE_POINTS:
            cumulative = np.cumsum(ages.counts[point]).tolist()
            buckets = [(str(b), float(c)) for b, c in zip(FIX_AGE_BUCKETS_S, cumulative[:-1], strict=True)]
            h.add_metric([point], [*buckets, ("+Inf", float(cumulative[-1]))], ages.sums[point])
        yield h
        for name, level in sorted(self.gauges.items()):
            g = GaugeMetricFamily(name, name.removeprefix("tracker_").replace("_", " "))
            g.add_metric([], level)
            yield g
        db = self.database
        if db is None:
            return
        g = GaugeMetricFamily("tracker_alerts_open", "open alerts, by kind", labels=["kind"])
        for kind, n in sorted(db.open_alerts.items()):
            g.add_metric([kind], n)
        yield g
        g = GaugeMetricFamily(
            "tracker_outbox_queue",
            "deliveries waiting in the outbox, by channel and state",
            labels=["channel", "state"],
        )
        for (channel, state), n in sorted(db.outbox.items()):
            g.add_metric([channel, state], n)
        yield g
        h = HistogramMetricFamily(
            "tracker_delivery_latency_seconds",
            "from a fix reaching the tracker to its alert being sent, by channel (since the process started)",
            labels=["channel"],
        )
        for channel, (cumulative, count, seconds) in sorted(db.latency.items()):
            buckets = [(str(b), float(c)) for b, c in zip(LATENCY_BUCKETS_S, cumulative, strict=True)]
            h.add_metric([channel], [*buckets, ("+Inf", float(count))], seconds)
        yield h
        if db.broker_left_out is not None:
            g = GaugeMetricFamily(
                "tracker_broker_accounts_left_out",
                "GPS tags and readers with an MQTT password that `tracker broker-config` leaves out of the "
                "broker's files (so they cannot connect), by why: invalid_name, reserved, duplicate, "
                "invalid_topic, invalid_hash",
                labels=["reason"],
            )
            for reason in get_args(LeftOutReason):
                g.add_metric([reason], db.broker_left_out.get(reason, 0))
            yield g


def prometheus_text(metrics: Metrics, *, gauges: dict[str, float], database: DatabaseGauges | None) -> bytes:
    """The Prometheus text exposition of the counters, process gauges and database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(metrics, gauges, database))
    return generate_latest(registry)
