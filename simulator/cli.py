"""``python -m simulator``: virtual children walking a world's routes, published over MQTT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from simulator.incidents import KINDS
from simulator.runner import SimOptions, Simulator
from simulator.world import WorldError


def parse_start(text: str) -> float:
    """Unix seconds, or an ISO 8601 date-time (UTC when it names no offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not Unix seconds nor an ISO 8601 date-time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_kinds(text: str) -> dict[str, float]:
    """'leave_route,enter_zone' (equal weights) or 'leave_route=2,sos=1'."""
    weights: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = item.partition("=")
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown incident kind {name!r}; known: {', '.join(KINDS)}")
        weights[name] = float(weight) if weight else 1.0
    if not weights:
        raise argparse.ArgumentTypeError("name at least one incident kind")
    return weights


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Virtual children walking their school routes with GPS noise and scripted incidents, "
        "published to the tracker over MQTT; ground truth of the incidents goes to a JSONL file.",
    )
    p.add_argument("--world", required=True, help="world.v1 GeoJSON: a file or an http(s) URL")
    p.add_argument("--token", help="Bearer token for a world URL")
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883", help="mqtt://[user:pass@]host:port")
    p.add_argument("--prefix", default="", help="topic prefix, put verbatim before 'tracker/v1/...'")
    p.add_argument(
        "--children", type=int, help="default: all in the world; more: replicas with tags suffixed '-r{k}'"
    )
    p.add_argument("--interval", type=float, default=15.0, help="seconds between a child's fixes (±20%%)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--duration", type=float, help="simulated seconds to run (default: until Ctrl-C)")
    p.add_argument(
        "--start", type=parse_start, help="simulated start: Unix seconds or ISO 8601 (default: now)"
    )
    p.add_argument("--seed", type=int, default=1, help="the same seed reproduces the same run")
    p.add_argument("--incidents-per-hour", type=float, default=0.5, help="per child per simulated hour")
    p.add_argument(
        "--incident-fraction",
        type=float,
        default=0.0,
        help="besides the rate: this fraction of the children has exactly one incident in the run",
    )
    p.add_argument(
        "--incident-kinds",
        type=parse_kinds,
        help=f"weights, e.g. 'leave_route=2,sos=1' (kinds: {', '.join(KINDS)})",
    )
    p.add_argument("--batch", type=int, default=0, help="0: a message per fix; N: gateway batches of N")
    p.add_argument(
        "--format",
        choices=("native", "owntracks"),
        default="native",
        help="native: tracker/v1/tags/{tag}/position; owntracks: the OwnTracks app's _type=location JSON "
        "to owntracks/{tag}/{device}",
    )
    p.add_argument("--owntracks-device", default="tag", help="the {device} of OwnTracks topics")
    p.add_argument(
        "--rfid",
        action="store_true",
        help="also publish RFID sightings of each school's gate reader 'sim-gate-{school id}' when "
        "children arrive and leave (register those readers in the tracker)",
    )
    p.add_argument("--duplicates", type=float, default=0.005, help="fraction of fixes sent twice")
    p.add_argument(
        "--late", type=float, default=0.005, help="fraction of fixes sent 20-120 s late (out of order)"
    )
    p.add_argument(
        "--gaps", type=float, default=0.002, help="chance per fix of a 20-90 s gap (tunnel, subway)"
    )
    p.add_argument("--truth", help="write the incidents' ground truth to this JSONL file")
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--client-id", help="MQTT client id (default: simulator-<random>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    return p


def options_from_args(args: argparse.Namespace) -> SimOptions:
    return SimOptions(
        world=args.world,
        token=args.token,
        mqtt_url=args.mqtt_url,
        prefix=args.prefix,
        children=args.children,
        interval_s=args.interval,
        speed=args.speed,
        duration_s=args.duration,
        start_ts=args.start,
        seed=args.seed,
        incidents_per_hour=args.incidents_per_hour,
        incident_fraction=args.incident_fraction,
        incident_kinds=args.incident_kinds,
        batch=args.batch,
        format=args.format,
        owntracks_device=args.owntracks_device,
        rfid=args.rfid,
        duplicates=args.duplicates,
        late=args.late,
        gaps=args.gaps,
        truth_path=args.truth,
        qos=args.qos,
        client_id=args.client_id,
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        Simulator(options).run(stop)
    except (WorldError, ConnectionError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    return 0
