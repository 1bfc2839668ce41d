"""The cluster's engine: NATS JetStream between the devices' MQTT and several tracker workers.

Devices and phone apps keep speaking MQTT 3.1.1, to nats-server's MQTT listener: nothing changes on
their side. What changes is behind the broker (docs/scaling.md says why NATS, and what each step's
acknowledgement means):

    devices ─MQTT─▶ nats-server: the ingest topics mapped to tin.<p>.<subject> (server_mappings)
                      │ QoS 1 and 2: stored in the listener's own stream $MQTT_msgs (R3, interest:
                      │ kept while a consumer has not acknowledged it) before the device's PUBACK;
                      │ QoS 0: only delivered on the subject
                      ▼ consumer "front-<p>-…" of $MQTT_msgs (acknowledged), and a subscription
                        to tin.<p>.> for QoS 0 (at most once, as the device asked)
    the front of partition p: FrontStage  decode (stage 1), tag → child → partition
                            (tracker.stages.forward); dead letters; each partition's fixes together
                                      │
                                      ▼ stream TRACKER_PART (subjects tracker_part.<p>, a work queue)
    the owner of partition p: PartitionIngest  consumer "part-<p>-…", taken when the worker's PostgreSQL
                            lease on p is (tracker.cluster.leases); into the same batch loop and
                            pipeline as one process; acknowledged once the (fenced) commit is done

The front reads `$MQTT_msgs` itself because the PUBACK means only that: a stream of the tracker's own
capturing the subject (``TRACKER_IN``, before 2026-12-07) was not waited for, and what devices
published while it elected a leader after a node's loss was acknowledged and lost. ``TRACKER_IN`` is
left for a server without the mappings (one front shared by every worker, order not kept).

A message is acknowledged to the engine only once what it carries is safe one step further on: a front
message once its fixes are stored in TRACKER_PART (the engine's PubAck) and its dead letters in
PostgreSQL; a partition message once its batch is committed. A worker that dies leaves its messages
unacknowledged: the consumers of its partitions are made anew by the workers that take them over, and
a consumer made anew delivers from the first message nobody acknowledged. A message handled twice
changes nothing (positions are idempotent on tag and time, and a child's state refuses a fix it has
decided).

MQTT topic levels are NATS subject tokens (nats-server maps ``/`` to ``.`` and a ``.`` inside a level
to ``//``); ``subject_of`` and ``topic_of`` are that mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
import numpy as np
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from tracker.config import Settings
from tracker.ingest.decode import RawMessage, Reason, Rejection
from tracker.ingest.forwarded import FORWARDED_SESSION, encode_forwarded, forwarded_topic
from tracker.ingest.handoff import Handoff
from tracker.ingest.http import HTTP_SESSION, HttpIngress, MessageAnswer
from tracker.ingest.mqtt import ingest_topics
from tracker.metrics import Metrics
from tracker.registry_view import RegistryView
from tracker.stages.forward import Routed, dead_letter, route
from tracker.store.batches import DeadLetterRecord, store_dead_letters
from tracker.store.db import DB_ERRORS

log = logging.getLogger(__name__)

IN_STREAM = "TRACKER_IN"  # ingest messages that came without the server's mappings (a shared front)
MQTT_STREAM = "$MQTT_msgs"  # nats-server's: every QoS 1 or 2 message its MQTT listener PUBACKs
MQTT_STREAM_PREFIX = "$MQTT.msgs."  # ... stored on this prefix and the (mapped) subject
PART_STREAM = "TRACKER_PART"
PART_SUBJECT = "tracker_part"
FRONT_CONSUMER = "front"  # unmapped messages (a server without the mappings): shared, order not kept
FRONT_PREFIX = "tin"  # the mapped ingest subjects: tin.<partition>.<the topic's subject>
MQTT_HEADER = "Nmqtt-Pub"  # nats-server's mark on a message its MQTT listener took from a client
FRONT_SESSION = -3  # RawMessage.session of a front message (acknowledged by the front, not the batch loop)
FRONT_MAX_ACK_PENDING = 20_000  # a front's messages fetched and not yet acknowledged, at most
FRONT_ACK_WAIT_S = 10.0  # a front batch takes milliseconds; a front's consumer is made anew on takeover
PART_ACK_WAIT_S = 120.0  # never hit by a live owner's commit; a new owner re-creates the consumer anyway
AT_MOST_ONCE_MAX = 50_000  # QoS 0 messages a front keeps while it cannot forward; more are dropped
LEADERLESS_WAIT_S = 20.0  # a fetch's 503 (no leader) waited out this long before the partition is taken anew
STREAM_NAME_IN_USE = 10058  # JetStream's error code: a stream of that name exists, with another configuration


def subject_of(topic: str) -> str:
    """The NATS subject nats-server's MQTT listener publishes an MQTT topic on."""
    return ".".join(level.replace(".", "//") for level in topic.split("/"))


def subject_filter(topic_filter: str) -> str:
    """An MQTT topic filter as a NATS subject filter (``+`` is ``*``, ``#`` is ``>``)."""
    wild = {"+": "*", "#": ">"}
    return ".".join(wild.get(level, level.replace(".", "//")) for level in topic_filter.split("/"))


def topic_of(subject: str) -> str:
    """The MQTT topic a subject of the MQTT listener came from (``subject_of`` reversed; a subject the
    server's mappings put under ``tin.<partition>.`` without those two tokens, and one stored in
    ``$MQTT_msgs`` without its prefix)."""
    if subject.startswith(MQTT_STREAM_PREFIX):
        subject = subject[len(MQTT_STREAM_PREFIX) :]
    tokens = subject.split(".")
    if tokens[0] == FRONT_PREFIX:
        tokens = tokens[2:]
    return "/".join(token.replace("//", ".") for token in tokens)


def server_mappings(topic_prefix: str, partitions: int) -> dict[str, str]:
    """The subject mappings nats-server must have (its configuration's ``mappings``: the accounts'
    subject mapping) for the front to keep each device's messages in order: every ingest topic is put
    under ``tin.<partition>.``, the partition a hash of the device's own tokens (a tag, a gateway, a
    reader, an OwnTracks user and device: nats-server's deterministic ``partition()``). The worker that
    owns partition p fronts ``tin.p.>`` alone, so one device's messages are decoded in the order they
    came, and a stalled front's are delivered again, first, to the worker that takes its partition."""
    out: dict[str, str] = {}
    for topic_filter in ingest_topics(topic_prefix):
        tokens = subject_filter(topic_filter).split(".")
        wild: list[int] = []
        dest: list[str] = []
        for token in tokens:
            if token == "*":
                wild.append(len(wild) + 1)
                dest.append(f"{{{{wildcard({wild[-1]})}}}}")
            else:
                dest.append(token)
        hashed = ",".join(str(k) for k in wild)
        out[".".join(tokens)] = f"{FRONT_PREFIX}.{{{{partition({partitions},{hashed})}}}}." + ".".join(dest)
    return out


def mappings_config(topic_prefix: str, partitions: int) -> str:
    """``server_mappings`` as nats-server configuration text (deploy/nats/mappings.conf is this for the
    defaults: no topic prefix, 64 partitions)."""
    rows = [f'  "{src}": "{dest}"' for src, dest in server_mappings(topic_prefix, partitions).items()]
    return "mappings = {\n" + "\n".join(rows) + "\n}\n"


def part_subject(partition: int) -> str:
    return f"{PART_SUBJECT}.{partition}"


def part_consumer(partition: int) -> str:
    return f"part-{partition}"


async def connect(url: str, name: str) -> NatsClient:
    """A connection to the cluster (``url``: one or several ``nats://`` addresses, comma-separated) that
    reconnects for as long as the worker runs."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
    )


async def ensure_streams(js: JetStreamContext, *, topic_prefix: str, replicas: int, partitions: int) -> None:
    """The streams and the consumers that must always be there, made if missing (every worker runs this
    at start: the first one makes them, the others find them):

    - ``TRACKER_IN``: the ingest topics as they come without the server's mappings, and its shared
      front consumer; ``TRACKER_PART``: the fronts' fixes, by partition;
    - ``$MQTT_msgs``, the MQTT listener's (made here as nats-server makes it, if no device has
      connected yet), and a consumer of each partition's messages in it: an interest stream drops at
      once what no consumer's filter takes, PUBACKed or not, so from here on every partition always has
      one (a take makes its own before it deletes the others: ``_consumer_anew``)."""
    streams: list[StreamConfig] = [
        StreamConfig(
            name=IN_STREAM,
            subjects=[subject_filter(t) for t in ingest_topics(topic_prefix)],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=PART_STREAM,
            subjects=[f"{PART_SUBJECT}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
        StreamConfig(  # (nats-server's own configuration of it: server/mqtt.go)
            name=MQTT_STREAM,
            subjects=[f"{MQTT_STREAM_PREFIX}>"],
            retention=RetentionPolicy.INTEREST,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
    ]
    for config in streams:
        await _retry(lambda c=config: _add_stream(js, c), f"stream {config.name}")  # type: ignore[misc]
    # a stream just made may be unknown for a moment to the node that answers (two workers starting
    # together on a new cluster: "stream not found" right after one of them made it): asked again
    await _retry(
        lambda: _seed_fronts(js, partitions, streams[2]), "the partitions' fronts", also=(NotFoundError,)
    )
    await _retry(lambda: _unmapped_only(js, streams[0]), f"stream {IN_STREAM}'s subjects")  # (seeded first)
    await ensure_front(js, replicas, topic_prefix)


def earlier_in_stream(replicas: int) -> StreamConfig:
    """``TRACKER_IN`` as a worker before 2026-12-07 made it: the mapped subjects (``tin.*.>``) too, in
    a work queue its fronts read; what ``_unmapped_only`` moves a cluster on from (the tests and
    bench/mqtt_leader_loss.py make it, to show that move and that design's loss)."""
    return StreamConfig(
        name=IN_STREAM,
        subjects=[f"{FRONT_PREFIX}.*.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def _unmapped_only(js: JetStreamContext, config: StreamConfig) -> None:
    """``TRACKER_IN`` as ``config`` says: a worker before 2026-12-07 made it take the mapped subjects
    (``tin.*.>``) too, and read them there; nobody does now, so a work queue would keep them forever.
    Its fronts' consumers go first (a stream keeps no consumer outside its subjects)."""
    info = await js.stream_info(IN_STREAM)
    if sorted(info.config.subjects or []) == sorted(config.subjects or []):
        return
    for name in await _consumers_named(js, IN_STREAM, "front"):
        if name != FRONT_CONSUMER:
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(IN_STREAM, name)
    log.warning(
        "stream %s takes the unmapped ingest subjects only now (%d messages in it, of both kinds: the "
        "mapped ones are not read any more; the fronts read them from %s)",
        IN_STREAM,
        info.state.messages,
        MQTT_STREAM,
    )
    await js.update_stream(config)


def front_seed(partition: int) -> str:
    """The name of the consumer ``ensure_streams`` makes for a partition nobody has fronted yet (a
    front's are ``front-<p>-t<lease token>-<random>``: ``_consumer_anew``)."""
    return f"front-{partition}"


def _partition_of(front: str) -> int | None:
    """The partition of a front's consumer (``front-<p>``, ``front-<p>-t<token>-<random>``)."""
    parts = front.split("-")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _token_of(front: str) -> int:
    """The lease token a front's consumer was made under (0: ``ensure_streams``' first one)."""
    parts = front.split("-")
    return int(parts[2][1:]) if len(parts) > 3 and parts[2][:1] == "t" and parts[2][1:].isdigit() else 0


def front_filter(partition: int) -> str:
    """The subjects of a partition's messages in ``$MQTT_msgs``."""
    return f"{MQTT_STREAM_PREFIX}{FRONT_PREFIX}.{partition}.>"


async def _seed_fronts(js: JetStreamContext, partitions: int, mqtt_stream: StreamConfig) -> None:
    """A consumer for each partition with none in ``$MQTT_msgs`` (a new cluster), so that what devices
    publish before the partition's first front is kept for it. The front that takes the partition
    deletes it (``_consumer_anew``; ``FrontStage`` sweeps one made late, in a race with its take)."""
    await _add_stream(js, mqtt_stream)  # (again: made just before, but not yet known everywhere)
    replicas = await _replicas_of(js, MQTT_STREAM)
    names = await _consumers_named(js, MQTT_STREAM, "front")
    fronted = {_partition_of(n) for n in names}
    missing = [p for p in range(partitions) if p not in fronted]
    await asyncio.gather(
        *(
            js.add_consumer(MQTT_STREAM, _front_config(front_seed(p), front_filter(p), replicas))
            for p in missing
        )
    )


def _front_config(
    name: str, filter_subject: str, replicas: int, max_ack_pending: int = FRONT_MAX_ACK_PENDING
) -> ConsumerConfig:
    """A partition's consumer of ``$MQTT_msgs``: acknowledged up to a batch's last message at once."""
    return ConsumerConfig(
        durable_name=name,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.ALL,
        ack_wait=FRONT_ACK_WAIT_S,
        max_ack_pending=max_ack_pending,
        deliver_policy=DeliverPolicy.ALL,
        num_replicas=replicas,  # an interest stream's consumers have its replicas (nats-server requires it)
    )


async def _replicas_of(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).config.num_replicas or 1


async def ensure_front(js: JetStreamContext, replicas: int, topic_prefix: str) -> None:
    """The consumer of unmapped ingest messages, shared by every worker (made if missing, e.g. lost
    with its node). With the server's mappings (``server_mappings``) nothing arrives there."""
    front = ConsumerConfig(
        durable_name=FRONT_CONSUMER,
        filter_subjects=[subject_filter(t) for t in ingest_topics(topic_prefix)],
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=FRONT_ACK_WAIT_S,
        max_ack_pending=FRONT_MAX_ACK_PENDING,
        deliver_policy=DeliverPolicy.ALL,
        num_replicas=replicas,  # a work queue's consumers have its replicas (nats-server requires it)
    )
    await _retry(lambda: js.add_consumer(IN_STREAM, front), "the front consumer")


async def _add_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        try:
            await js.add_stream(config)
        except BadRequestError as e:  # made meanwhile (another worker, or nats-server's MQTT listener)
            if e.err_code != STREAM_NAME_IN_USE:
                raise


async def _retry(
    step: Callable[[], Awaitable[Any]],
    what: str,
    timeout: float = 60.0,
    also: tuple[type[nats.js.errors.APIError], ...] = (),
) -> Any:
    """A JetStream API call, asked again while the cluster elects its leaders (after a start or a
    node's loss the API answers nothing until it has them); and on the answers in ``also``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await step()
        except (
            nats.errors.TimeoutError,
            nats.js.errors.ServiceUnavailableError,
            nats.js.errors.APIError,
        ) as e:
            answered = isinstance(e, nats.js.errors.APIError) and (e.code or 0) < 500
            transient = isinstance(e, (ServiceUnavailableError, *also))
            if time.monotonic() > deadline or (answered and not transient):
                raise  # an answer (a 4xx: not found, a bad request), not a cluster without its leaders
            log.info("JetStream not ready for %s (%s); asking again", what, e)
            await asyncio.sleep(0.5)


async def _store_dead_letters(pool: asyncpg.Pool, records: list[DeadLetterRecord]) -> None:
    """Dead letters, asked again while PostgreSQL is away (what they hold is acknowledged after)."""
    while records:
        try:
            async with pool.acquire() as conn:
                await store_dead_letters(conn, records)
            return
        except DB_ERRORS as e:
            log.warning("cannot store dead letters (%s); retrying", e)
            await asyncio.sleep(1)


async def _consumers_named(js: JetStreamContext, stream: str, base: str) -> list[str]:
    """The stream's consumers of one partition: ``base`` itself (the name before incarnations had
    their own) and every ``base-<incarnation>``.

    Their names (``CONSUMER.NAMES``, which the cluster's meta leader answers from its assignments),
    not their infos: ``consumers_info`` (``CONSUMER.LIST``) asks each consumer's own leader, and one
    whose leader was on a node just lost is left out, after 4 s (nats-server logs "Did not receive all
    consumer info results"; nats-py drops the answer's ``missing``). A take after a node's loss then
    found no old consumer, deleted nothing, and its add was refused (10100, "filtered consumer not
    unique on workqueue stream") every 4.5 s until the old consumer had a leader again."""
    names: list[str] = []
    while True:
        page = await js._api_request(  # (nats-py has no call for it)
            f"{js._prefix}.CONSUMER.NAMES.{stream}",
            json.dumps({"offset": len(names)}).encode(),
            timeout=js._timeout,
        )
        got: list[str] = page.get("consumers") or []
        names += got
        if not got or len(names) >= page.get("total", 0):
            return [n for n in names if n == base or n.startswith(base + "-")]


async def _consumer_anew(
    js: JetStreamContext,
    stream: str,
    base: str,
    filter_subject: str,
    *,
    replicas: int,
    max_ack_pending: int,
    owned: Callable[[], bool],
    token: int | None = None,
) -> JetStreamContext.PullSubscription | None:
    """A partition's consumer made anew, bound, and every earlier one of the partition deleted: the
    stream keeps what nobody acknowledged, and a new consumer delivers it first, in order (at once,
    rather than after ``ack_wait``). None if the partition is not ``owned`` (before, or once the
    consumer is made: it was lost meanwhile), so that a worker never takes a consumer from the
    partition's new owner.

    The order of the two steps is the stream's: a work queue (``TRACKER_PART``) refuses a second
    consumer of the same subjects, so the old ones go first; an interest stream (``$MQTT_msgs``, a
    front's: ``token`` given) drops at once what no consumer takes, so the new one is made first, and
    the old ones go once it holds the partition's messages; and only those made under the same lease
    token or an older one: a take that lost the partition while it ran (a worker paused, or cut off)
    never deletes the consumer of the partition's new owner, whose token is higher.

    Each incarnation has a name of its own (``base-<random>``). A reader that lost the partition may
    still ask the engine for messages: a pull request sent into a network cut reaches the server when
    the cut heals, and the task that sent it is long cancelled. Under one name for every incarnation,
    that request was served by the new owner's consumer: up to a fetch's worth of messages went to a
    subscription nobody reads, and came back only after ``ack_wait`` (two minutes for a partition, ten
    seconds for a front), behind what came later: stored late, and "older than the child's last
    decided fix" (tests/e2e/test_cluster_cut.py). A stale request or acknowledgement now names a
    consumer that is gone.

    Asked again, from the start, for as long as the partition is owned: after a node's loss an
    ``add_consumer`` that timed out may have made the consumer after all (the next try deletes it);
    a take that gave up there left the partition owned and read by nobody (tests/e2e/test_cluster.py's
    node kill stalled so). Any other error is asked again too (with a warning), and a consumer made
    after failed tries is logged, so that a take is never given up, nor ends, without a word."""
    interest = token is not None
    if interest:
        name = f"{base}-t{token}-{secrets.token_hex(4)}"
        config = _front_config(name, filter_subject, replicas, max_ack_pending)
    else:
        name = f"{base}-{secrets.token_hex(4)}"
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=filter_subject,
            ack_policy=AckPolicy.EXPLICIT,  # a work-queue stream takes no other
            ack_wait=PART_ACK_WAIT_S,  # never hit by a live reader; a dead one's go to the next at once
            max_ack_pending=max_ack_pending,
            deliver_policy=DeliverPolicy.ALL,
            num_replicas=replicas,  # a work queue's consumers have its replicas (nats-server requires it)
        )

    async def delete(names: list[str]) -> None:
        for old in names:
            if old != name and (token is None or _token_of(old) <= token):
                with contextlib.suppress(NotFoundError):
                    await _retry(functools.partial(js.delete_consumer, stream, old), f"deleting {old}")

    delay = 0.5
    tries = 0
    while True:
        if not owned():
            if tries:
                log.warning("%s: no longer owned after %d failed tries; left to its owner", name, tries)
            return None
        try:
            old = await _retry(lambda: _consumers_named(js, stream, base), f"listing {base}")
            if not interest:
                await delete(old)
            await _retry(lambda: js.add_consumer(stream, config), name)
            sub = await _retry(lambda: js.pull_subscribe_bind(durable=name, stream=stream), name)
            if interest:
                try:
                    await delete(old)
                except BaseException:
                    await _unsubscribed(sub)
                    raise
        except Exception as e:  # (a bug too: a take that raised left its partition read by nobody)
            tries += 1
            log.warning("%s: cannot make it anew (%s: %s); again in %.1f s", name, type(e).__name__, e, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)
            continue
        if not owned():
            log.warning("%s: made, but the partition is no longer owned; left to its owner", name)
            await _unsubscribed(sub)
            return None
        if tries:
            log.info("%s: made anew after %d failed tries; reading", name, tries)
        return sub


async def _reading(
    sub: JetStreamContext.PullSubscription | Subscription, reader: Coroutine[Any, Any, None]
) -> None:
    """A partition's reader; its subscription's inbox ends with it (a reader given up, or made anew,
    leaves none behind in the client)."""
    try:
        await reader
    finally:
        await _unsubscribed(sub)


async def _fetch(sub: JetStreamContext.PullSubscription, batch: int, wait_s: float) -> list[Msg]:
    """Up to ``batch`` messages, [] if none came within ``wait_s``.

    A 503 (the consumer's group electing a leader, seconds after a node's loss) is waited out, up to
    ``LEADERLESS_WAIT_S``, not raised: a reader that raised took its partition anew, and the consumer
    it made anew had to elect a leader too; after a node's loss that loop went on for about 30 s. A
    consumer that is gone (asked at each 503: nats-py reports "no responders" to a pull on a deleted
    consumer as a 503 too) or an election longer than that is raised (the partition taken anew)."""
    since: float | None = None
    while True:
        try:
            return await sub.fetch(batch, timeout=wait_s)
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when nothing came
            return []
        except ServiceUnavailableError:
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since > LEADERLESS_WAIT_S:
                raise
            with contextlib.suppress(nats.errors.TimeoutError, ServiceUnavailableError):
                await sub.consumer_info()  # NotFoundError (raised): deleted, not electing (a pull on a
            await asyncio.sleep(0.5)  # consumer that is gone gets "no responders", a 503 too)


# --- the front: every worker -------------------------------------------------------------------------
@dataclass
class _Fronted:
    """A partition this worker fronts: the reader of its consumer of ``$MQTT_msgs`` (QoS 1 and 2), and
    of its QoS 0 messages (``_AtMostOnce``)."""

    consumer: str
    stored: asyncio.Task[None]
    at_most_once: asyncio.Task[None]

    def cancel(self) -> None:
        self.stored.cancel()
        self.at_most_once.cancel()


@dataclass
class _AtMostOnce:
    """What a partition's subscription to its subject (``tin.<p>.>``) delivers, kept if it is a QoS 0
    publish: nats-server stores only QoS 1 and 2 ones in ``$MQTT_msgs`` (they come from there, and
    are skipped here by their ``Nmqtt-Pub`` header). Nothing is acknowledged: a QoS 0 message the front
    had not forwarded when it stopped is lost, as the device's QoS said it may be. A message without
    the header (a NATS client's) is taken as QoS 0."""

    msgs: list[Msg] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each arrived (the tracker's receipt)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0  # over ``AT_MOST_ONCE_MAX`` while the front could not forward (the engine away)

    async def put(self, m: Msg) -> None:
        if m.headers and m.headers.get(MQTT_HEADER, "0") != "0":
            return
        if len(self.msgs) >= AT_MOST_ONCE_MAX:
            self.dropped += 1
            return
        self.msgs.append(m)
        self.times.append(time.time())
        self.arrived.set()

    async def take(self) -> tuple[list[Msg], list[float]]:
        await self.arrived.wait()
        self.arrived.clear()
        msgs, self.msgs, times, self.times = self.msgs, [], self.times, []
        return msgs, times


@dataclass
class FrontStage:
    """Stage 1 of every message the engine gives this worker, and each fix on to its child's partition.

    Also the cluster's HTTP ingest (``ClusterHttpIngress``): a request is routed the same way, and
    answered once its fixes are in the engine (admission, at the owner, comes after the answer: what
    the owner refuses, a timestamp far in the future or a tag over its rate, is a dead letter)."""

    js: JetStreamContext
    nc: NatsClient  # (QoS 0 messages are not stored: a subscription to the subject has them)
    pool: asyncpg.Pool
    view: Callable[[], RegistryView]
    settings: Settings
    partitions: int
    batch: int = 500
    forwarded: int = 0  # fixes forwarded, for the metrics
    token_of: Callable[[int], int | None] = lambda partition: 1  # the partition's lease token; None: not held
    sweep_s: float = 30.0  # how often the partitions' other consumers are looked for (``_sweep``)
    metrics: Metrics = field(default_factory=Metrics)  # its fix ages (fetched, forwarded), messages by path
    _held: dict[int, _Fronted] = field(default_factory=dict, init=False)
    _taking: dict[int, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _retakes: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    async def run(self) -> None:
        """The shared consumer of unmapped messages, and the sweep of the partitions' consumers (both
        end when either does)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._run_shared())
            group.create_task(self._sweep_forever())

    async def _run_shared(self) -> None:
        """The shared consumer of unmapped messages (a server without ``server_mappings``): fronted by
        whichever worker fetches them, so two of one device's messages may be decoded out of order."""
        sub = await self._bind_shared()
        warned = 0.0
        while True:
            try:
                msgs = await _fetch(sub, self.batch, 1.0)
            except Exception as e:  # the connection or the consumer's node gone: bind (or make) it again
                log.warning("front: cannot fetch (%s: %s); binding the consumer again", type(e).__name__, e)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    sub = await self._bind_shared()
                continue
            if msgs:
                if time.monotonic() - warned > 60:
                    warned = time.monotonic()
                    log.warning(
                        "front: messages arrive without the server's subject mappings (deploy/nats/"
                        "mappings.conf, for this TRACKER_TOPIC_PREFIX and TRACKER_PARTITIONS): their"
                        " order across workers is not kept, and a node's loss can lose what devices were"
                        " acknowledged"
                    )
                await self._front(msgs, _ack_each, path="unmapped")

    async def take(self, partition: int) -> None:
        """Front partition ``partition`` (a lease on it was taken): its consumer of ``$MQTT_msgs`` made
        anew, so that what its last front fetched and did not acknowledge comes first, in order, then
        the rest; and its QoS 0 messages from now on. One take of a partition at a time (a second one
        meanwhile returns): two at once each made a consumer, and one deleted the other's."""
        if partition in self._held or partition in self._taking:
            return
        task = asyncio.create_task(self._take(partition))
        self._taking[partition] = task

        def ended(t: asyncio.Task[None]) -> None:
            if self._taking.get(partition) is t:
                del self._taking[partition]

        task.add_done_callback(ended)
        await asyncio.wait({task})  # (a give-up cancels the take, not the caller; a caller cancelled
        if not task.cancelled():  #   leaves the take running, still the partition's only one)
            task.result()

    async def _take(self, partition: int) -> None:
        token = self.token_of(partition)
        if token is None:
            return

        def owned() -> bool:
            return self.token_of(partition) == token and partition not in self._held

        delay = 0.5
        while owned():
            sub: JetStreamContext.PullSubscription | None = None
            qos0: Subscription | None = None
            try:
                replicas = await _replicas_of(self.js, MQTT_STREAM)
                sub = await _consumer_anew(
                    self.js,
                    MQTT_STREAM,
                    front_seed(partition),
                    front_filter(partition),
                    replicas=replicas,
                    max_ack_pending=FRONT_MAX_ACK_PENDING,
                    owned=owned,
                    token=token,
                )
                if sub is None:
                    return
                inbox = _AtMostOnce()
                qos0 = await self.nc.subscribe(
                    f"{FRONT_PREFIX}.{partition}.>",
                    cb=inbox.put,
                    pending_msgs_limit=-1,
                    pending_bytes_limit=-1,
                )
            except BaseException as e:  # (the engine away: a take given up would leave it unread)
                await _unsubscribed(sub, qos0)  # (a give-up's cancel too: nothing left subscribed)
                if not isinstance(e, Exception):
                    raise
                log.warning(
                    "front %d: cannot take it (%s: %s); again in %.1f s",
                    partition,
                    type(e).__name__,
                    e,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)
                continue
            if not owned():  # lost meanwhile: its consumer is left to the new owner's take or sweep
                await _unsubscribed(sub, qos0)
                return
            self._held[partition] = _Fronted(
                sub._consumer,  # (its name: nats-py keeps it private)
                asyncio.create_task(_reading(sub, self._read(partition, sub))),
                asyncio.create_task(_reading(qos0, self._read_at_most_once(partition, inbox))),
            )
            return

    def give_up(self, partition: int) -> None:
        """Stop fronting the partition (its lease is lost or handed over): what was fetched and not
        acknowledged goes to its next front, first."""
        taking = self._taking.pop(partition, None)
        if taking is not None:
            taking.cancel()
        fronted = self._held.pop(partition, None)
        if fronted is not None:
            fronted.cancel()

    async def stop(self) -> None:
        ending = [t for f in self._held.values() for t in (f.stored, f.at_most_once)]
        ending += [*self._taking.values(), *self._retakes]
        for partition in list(self._taking) + list(self._held):
            self.give_up(partition)
        for task in ending:
            task.cancel()
        await asyncio.gather(*ending, return_exceptions=True)

    async def _read(self, partition: int, sub: JetStreamContext.PullSubscription) -> None:
        """Fetch and front until given up. Any error (a fetch's: the connection or the consumer's node
        gone; or one while fronting, an acknowledgement on a closed connection) takes the partition
        anew: a reader that ended on one stayed held, and ``take`` found it and did nothing."""
        while True:
            try:
                msgs = await _fetch(sub, self.batch, 1.0)
                if msgs:
                    await self._front(msgs, _ack_last, path="stored")
            except Exception as e:
                log.warning("front %d: cannot read (%s: %s); taking it anew", partition, type(e).__name__, e)
                await asyncio.sleep(0.5)
                fronted = self._held.get(partition)
                if fronted is not None and fronted.stored is asyncio.current_task():
                    del self._held[partition]
                    fronted.at_most_once.cancel()
                    self._spawn_take(partition)
                return

    async def _read_at_most_once(self, partition: int, inbox: _AtMostOnce) -> None:
        dropped = 0
        while True:
            msgs, received = await inbox.take()
            if inbox.dropped > dropped:
                log.warning(
                    "front %d: %d QoS 0 messages dropped (the front could not keep up)",
                    partition,
                    inbox.dropped - dropped,
                )
                dropped = inbox.dropped
            try:
                await self._front(msgs, None, received, path="at_most_once")
            except Exception as e:  # (never met: ``_front`` keeps what fails as a dead letter)
                log.warning("front %d: %d QoS 0 messages lost (%s)", partition, len(msgs), e)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self._sweep()
            except Exception as e:
                log.warning("front: cannot sweep the partitions' consumers (%s: %s)", type(e).__name__, e)

    async def _sweep(self) -> None:
        """Delete the older consumers of the partitions this worker fronts: one made in a race with a
        take (``ensure_streams``' first consumer of a partition, made as a worker took it; a take that
        lost the partition once its consumer was made) would keep the partition's messages in
        ``$MQTT_msgs`` forever. Only while the front's own consumer is listed (one deleted meanwhile
        leaves the others the partition's only ones), and only those made under an older lease token
        (or its own, before a take anew): a worker that lost the partition without knowing it yet never
        deletes its new owner's."""
        names = await _consumers_named(self.js, MQTT_STREAM, "front")
        for p, fronted in list(self._held.items()):
            if fronted.consumer not in names:
                continue
            own = _token_of(fronted.consumer)
            for name in names:
                if _partition_of(name) != p or name == fronted.consumer or _token_of(name) > own:
                    continue
                if self._held.get(p) is not fronted or self.token_of(p) != own:
                    break
                log.info("front %d: deleting consumer %s (its own is %s)", p, name, fronted.consumer)
                with contextlib.suppress(NotFoundError):
                    await self.js.delete_consumer(MQTT_STREAM, name)

    def _spawn_take(self, partition: int) -> None:
        task = asyncio.create_task(self.take(partition))
        self._retakes.add(task)
        task.add_done_callback(self._retakes.discard)
        task.add_done_callback(_report_take)

    async def _front(
        self,
        msgs: list[Msg],
        ack: Callable[[list[Msg]], Awaitable[None]] | None,
        received: list[float] | None = None,
        *,
        path: str,
    ) -> None:
        """Forward a batch of messages, then ``ack`` them. ``received``: when each arrived, for messages
        not stored (QoS 0, None for ``ack``); a stored message was received when the engine stored it.
        ``path``: how they came, for the metrics (``Metrics.fronted``), counted with their ages once
        acknowledged (a batch whose acknowledgement fails comes again: counted then)."""
        fetched = time.time()
        if received is None:
            received = [m.metadata.timestamp.timestamp() for m in msgs]
        messages = [
            RawMessage(topic_of(m.subject), m.data, t, 0, 1, FRONT_SESSION)
            for m, t in zip(msgs, received, strict=True)
        ]
        try:
            await self.forward(messages)
        except Exception:  # a bug met the batch: each message alone, the one that fails kept
            log.exception("front: batch of %d messages failed; one by one", len(messages))
            for message in messages:
                await self._forward_alone(message)
        forwarded = time.time()
        if ack is not None:
            await ack(msgs)
        receipts = np.asarray(received, dtype=np.float64)
        ages = self.metrics.fix_ages
        ages.observe("fetched", fetched - receipts)
        ages.observe("forwarded", forwarded - receipts)
        self.metrics.fronted[path] += len(msgs)

    async def _forward_alone(self, message: RawMessage) -> None:
        """One message of a batch a bug met: forwarded alone, or kept as a dead letter
        (``internal_error``) if it fails alone too; never left to come back forever."""
        try:
            await self.forward([message])
        except Exception as e:
            log.exception("front: message on %s failed; dead-lettered as internal_error", message.topic)
            detail = f"{type(e).__name__}: {e}"
            record = dead_letter(
                Rejection(message.topic, message.payload, Reason.INTERNAL_ERROR, detail, message.received_at)
            )
            await _store_dead_letters(self.pool, [record])

    async def _bind_shared(self) -> JetStreamContext.PullSubscription:
        await ensure_front(self.js, self.settings.nats_replicas, self.settings.topic_prefix)
        return await _retry(
            lambda: self.js.pull_subscribe_bind(durable=FRONT_CONSUMER, stream=IN_STREAM), "the front"
        )

    async def forward(self, messages: list[RawMessage]) -> Routed:
        """Route a batch, publish each partition's fixes and store the dead letters, asking again until
        both are done (nothing of the batch may be acknowledged before)."""
        routed = await asyncio.to_thread(route, messages, self.view(), self.settings, self.partitions)
        delay = 0.2
        while True:
            try:
                await asyncio.gather(
                    *(
                        self.js.publish(part_subject(p), encode_forwarded(fixes), stream=PART_STREAM)
                        for p, fixes in routed.by_partition.items()
                    )
                )
                break
            except (nats.errors.Error, nats.js.errors.Error) as e:
                log.warning("front: cannot publish to the partitions (%s); again in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await _store_dead_letters(self.pool, routed.dead_letters())
        self.forwarded += sum(len(f) for f in routed.by_partition.values())
        return routed


class ClusterHttpIngress(HttpIngress):
    """HTTP ingest on a cluster's worker: the request goes through the front (``FrontStage.forward``),
    and is answered with what the front knows: how many fixes went on to their owners (stored in the
    engine, replicated), or the first part refused here (a payload that does not decode, an unknown
    tag). The owner admits and decides after the answer."""

    def __init__(self, front: FrontStage, devices: Callable[[], Any], *, timeout_s: float) -> None:
        super().__init__(Handoff(asyncio.get_running_loop(), 1), devices, timeout_s=timeout_s)
        self._front = front

    async def submit(self, topic: str, payload: bytes) -> MessageAnswer:
        message = RawMessage(topic, payload, time.time(), 1, 0, HTTP_SESSION)
        routed = await asyncio.wait_for(self._front.forward([message]), self._timeout_s)
        first = next(iter(routed.refused.rejections), None)
        return MessageAnswer(routed.forwarded.get(0, 0), first)


# --- the owner: the partitions this worker holds -------------------------------------------------------
@dataclass
class _Held:
    task: asyncio.Task[None]
    generation: int
    last: dict[int, Msg] = field(default_factory=dict)  # stream sequence -> message, not acknowledged yet


class PartitionIngest:
    """The messages of the partitions this worker owns, into the batch loop's queue; acknowledged once
    the batch is committed.

    ``take`` re-creates the partition's consumer first: whatever its last owner had not acknowledged
    is delivered again, in order, from the first such message. ``give_up`` stops reading it; messages
    of a partition given up (or taken again since: its ``generation``) are never acknowledged by this
    worker, and its commits of them are fenced (tracker.cluster.leases)."""

    def __init__(
        self,
        js: JetStreamContext,
        queue: Handoff[RawMessage],
        pool: asyncpg.Pool,
        *,
        topic_prefix: str,
        replicas: int,
        batch: int,
        owns: Callable[[int], bool] = lambda partition: True,
    ) -> None:
        """``owns``: whether this worker holds a partition's lease now (a partition is read again only
        while it does: re-creating its consumer would take it from its new owner)."""
        self._owns = owns
        self._pool = pool
        self._js = js
        self._queue = queue
        self._prefix = topic_prefix
        self._replicas = replicas
        self._batch = batch
        self._held: dict[int, _Held] = {}
        self._generations: dict[int, int] = {}
        self._acks: set[asyncio.Task[None]] = set()

    @property
    def partitions(self) -> list[int]:
        return sorted(self._held)

    async def take(self, partition: int) -> None:
        if partition in self._held:
            return
        sub = await _consumer_anew(
            self._js,
            PART_STREAM,
            part_consumer(partition),
            part_subject(partition),
            replicas=self._replicas,
            max_ack_pending=100_000,
            owned=lambda: self._owns(partition) and partition not in self._held,
        )
        if sub is None:
            return
        generation = self._generations.get(partition, 0) + 1
        self._generations[partition] = generation
        held = _Held(asyncio.create_task(_reading(sub, self._read(partition, sub, generation))), generation)
        self._held[partition] = held

    def stop_reading(self, partition: int) -> None:
        """Fetch no more of the partition; what was read is still committed and acknowledged (a
        graceful hand-over waits for ``pending`` to be 0, then gives it up)."""
        held = self._held.get(partition)
        if held is not None:
            held.task.cancel()

    async def give_up(self, partition: int) -> None:
        """Forget the partition and cancel its reader, without waiting for the reader to end (``stop``
        does): the service gives up lost partitions one after the other and takes gained ones from
        another task, and a give-up that waited let a ``take`` of the same partition run in between,
        find the old reader still held, and return; the give-up then removed it, and the partition
        stayed owned and read by nobody (seen under load: 10 partitions of 15 taken back)."""
        self._drop(partition)

    def _drop(self, partition: int) -> None:
        """``give_up``'s work, done at once: the partition's reader cancelled, its generation moved on."""
        held = self._held.pop(partition, None)
        if held is None:
            return
        self._generations[partition] = held.generation + 1  # queued messages of it are never acknowledged
        held.task.cancel()
        self._acks.add(held.task)  # (a reader's fetch may take a moment to unwind; stop waits for it)
        held.task.add_done_callback(self._acks.discard)

    def pending(self, partition: int) -> int:
        """Messages of the partition read and not yet acknowledged (a hand-over waits for none)."""
        held = self._held.get(partition)
        return len(held.last) if held is not None else 0

    async def _read(self, partition: int, sub: JetStreamContext.PullSubscription, generation: int) -> None:
        topic = f"{forwarded_topic(self._prefix, partition)}/{generation}"
        held = self._held
        while True:
            if len(self._queue) >= self._queue.maxsize:
                await asyncio.sleep(0.01)  # the pipeline is behind: the engine keeps the rest
                continue
            try:
                msgs = await _fetch(sub, self._batch, 1.0)
            except Exception as e:  # the connection or the consumer's node gone: take the partition anew
                log.warning("partition %d: cannot fetch (%s: %s)", partition, type(e).__name__, e)
                await asyncio.sleep(0.5)
                mine = held.get(partition)
                if mine is not None and mine.generation == generation:  # (not a newer reader's)
                    self._read_again(partition)
                return
            mine = held.get(partition)
            if mine is None or mine.generation != generation:
                return
            for m in msgs:
                if m.headers and MQTT_HEADER in m.headers:
                    await self._refuse(m)
                    continue
                seq = m.metadata.sequence.stream
                mine.last[seq] = m
                self._queue.put_nowait(RawMessage(topic, m.data, time.time(), seq, 1, FORWARDED_SESSION))

    def ack(self, messages: Iterable[RawMessage]) -> None:
        """The batch is committed: acknowledge its messages (per partition, every message read up to
        the batch's last). A partition whose earlier messages were read and not committed (a batch
        fenced for another partition held them) is read again from its first unacknowledged message
        instead: the engine would give them again only after ``ack_wait``, and out of order."""
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for m in messages:
            p = self._current_partition(m)
            if p is None:
                continue
            last[p] = max(last.get(p, 0), m.mid)
            first[p] = min(first.get(p, m.mid), m.mid)
        for p, seq in last.items():
            held = self._held.get(p)
            if held is None:
                continue
            if min(held.last, default=first[p]) < first[p]:
                self._read_again(p)
                continue
            done = [held.last.pop(s) for s in [s for s in held.last if s <= seq]]
            if done:
                self._spawn(_ack(done))

    def not_committed(self, messages: Iterable[RawMessage]) -> None:
        """A batch was fenced (a partition of it changed hands): of the partitions in it that this worker
        still reads, under the generation the messages were read in, read each again from its first
        unacknowledged message now. The engine would deliver them again only after ``PART_ACK_WAIT_S``,
        after what came later; and a partition with nothing more to read would wait that long (the
        node-cut test stalled two minutes so, tests/e2e/test_cluster_cut.py)."""
        for p in sorted({p for m in messages if (p := self._current_partition(m)) is not None}):
            self._read_again(p)

    def current(self, messages: list[RawMessage]) -> list[RawMessage]:
        """Without the messages of partitions given up or read again since they were read: those come
        again, from the first unacknowledged, in order (or go to the partition's new owner). A batch
        after a fenced one held later messages of a partition read again; judged first, they made the
        re-read ones "older than the child's last decided fix", and a departure among them went
        unalerted (tests/e2e/test_cluster_cut.py)."""
        return [
            m for m in messages if m.session != FORWARDED_SESSION or self._current_partition(m) is not None
        ]

    def _current_partition(self, m: RawMessage) -> int | None:
        """The partition of a message this ingest read, if it was read under the partition's current
        generation (its topic ends ``/<partition>/<generation>``); None for any other."""
        if m.session != FORWARDED_SESSION:
            return None
        _, partition, generation = m.topic.rsplit("/", 2)
        p = int(partition)
        return p if self._generations.get(p) == int(generation) else None

    async def _refuse(self, m: Msg) -> None:
        """A device's MQTT message on a partition's subject (nats-server marks what its MQTT listener
        took): never read as a front's fixes. Dead-lettered, then acknowledged."""
        record = dead_letter(
            Rejection(
                topic_of(m.subject),
                m.data,
                Reason.UNKNOWN_TOPIC,
                "an MQTT client published on the workers' partition stream: refused (give devices no "
                "permission to publish there: deploy/nats/auth.conf)",
                m.metadata.timestamp.timestamp(),
            )
        )
        await _store_dead_letters(self._pool, [record])
        await _ack([m])

    def _read_again(self, partition: int) -> None:
        """Give the partition up now (its generation moves on: what was read of it is not ``current``)
        and take it again: its consumer, made anew, delivers everything not acknowledged, in order
        (what is committed already changes nothing the second time)."""
        if partition in self._held and self._owns(partition):
            log.info("partition %d read again from its first unacknowledged message", partition)
            self._drop(partition)
            self._spawn(self.take(partition))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
        task.add_done_callback(_report_take)

    async def stop(self) -> None:
        for p in list(self._held):
            await self.give_up(p)
        ending = [t for t in self._acks if not t.done()]  # readers given up, acks on their way
        if ending:
            _, stuck = await asyncio.wait(ending, timeout=5.0)
            for t in stuck:
                t.cancel()


def _report_take(task: asyncio.Task[None]) -> None:
    """A spawned take (or acknowledgement) that raised: said, not dropped (its partition would be owned
    and read by nobody without a word)."""
    if not task.cancelled() and (e := task.exception()) is not None:
        log.error("a partition's take or acknowledgement failed", exc_info=e)


async def _ack_each(msgs: list[Msg]) -> None:
    """One ack per message (a work-queue stream takes only explicit acks), awaited one after the other:
    an ack is a publish into the client's buffer that does not wait for the server, so a task per ack
    (``asyncio.gather``) only added the event loop's cost: 9 µs of CPU per message against 2.3 µs here
    (500 acks at a time on a local nats-server)."""
    for m in msgs:
        await m.ack()


async def _unsubscribed(*subs: JetStreamContext.PullSubscription | Subscription | None) -> None:
    """Each subscription made (not None) ended in the client, whatever the connection's state."""
    for sub in subs:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _ack_last(msgs: list[Msg]) -> None:
    """A batch of a consumer that acknowledges all up to a message (``AckPolicy.ALL``): its last."""
    await msgs[-1].ack()


async def _ack(msgs: list[Msg]) -> None:
    try:
        await _ack_each(msgs)
    except Exception as e:  # the engine gives them again to the partition's owner: a repeat changes nothing
        log.warning("cannot acknowledge partition messages (%s)", e)
