"""Real servers for the tests, never mocks.

PostgreSQL: TRACKER_TEST_DATABASE_URL (an admin URL; each test gets a fresh database on that server,
dropped afterwards), else an embedded PostgreSQL in a temporary directory.
MQTT: TRACKER_TEST_MQTT_URL, else a broker started here on a free port (mosquitto if installed and
TRACKER_TEST_BROKER is not "amqtt", else amqtt).
Each test uses its own topic prefix and client ids, so tests can run twice in a row.

Every skip in this suite is for a missing prerequisite (a `mosquitto` binary for the crash and broker-ACL
tests, Chromium and playwright for the browser tests, a dev extra such as pyproj): on a developer's machine
the run goes on without them and `-ra` lists what was skipped and why. In CI (the environment variable CI
is `true` or `1`, as CI services and `.ci/run` set it) a skip would hide a test that never ran behind a
green run, so there every skip is reported as a failure, naming the test and the reason. (A test that
is not meant to run in some setting is left out of the collection there, not skipped.)
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from tests.helpers import CLUSTER_PARTITIONS
from tracker.config import Settings
from tracker.embedded import EmbeddedBroker, EmbeddedNats, EmbeddedPostgres, free_port
from tracker.ingest.mqtt import BrokerAddress
from tracker.store.db import apply_migrations

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")


def _skip_reason(longrepr: object) -> str:
    # A skip's report carries (file, line, "Skipped: <reason>").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _as_ci_failure(report: pytest.TestReport) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"{_skip_reason(report.longrepr)} [CI: a test that cannot run fails the run; `.ci/run` installs "
        "the system packages the tests need, `pip install -e '.[dev]'` the Python ones]"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    # An expected failure is reported as skipped too; it carries `wasxfail` and is no missing prerequisite.
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        _as_ci_failure(report)
    return report


# Modules skipped whole at collection (a module-level `pytest.importorskip`), with the reason. Turning
# such a report into a failure would stop the session before any test runs; they are kept as skips,
# named at the end, and the run's exit status is set to failed.
_skipped_modules: list[tuple[str, str]] = []


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report: pytest.CollectReport = yield
    if IN_CI and report.skipped:
        _skipped_modules.append((report.nodeid, _skip_reason(report.longrepr)))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_modules and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_modules:
        terminalreporter.section("CI: modules that could not run fail the run", red=True)
        for nodeid, reason in _skipped_modules:
            terminalreporter.line(f"{nodeid}: {reason}")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("TRACKER_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="tracker-test-pg-") as tmp:
        os.chmod(tmp, 0o755)
        server = EmbeddedPostgres(Path(tmp) / "data")
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    url = os.environ.get("TRACKER_TEST_MQTT_URL")
    if url:
        yield url
        return
    broker = EmbeddedBroker(free_port(), use_mosquitto=os.environ.get("TRACKER_TEST_BROKER") != "amqtt")
    try:
        yield broker.start()
    finally:
        broker.stop()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
async def _databases(pg_admin_url: str) -> AsyncIterator[_Databases]:
    """The session's migrated template and the drops of the tests' databases (see database_url)."""
    databases = _Databases(pg_admin_url)
    await databases.make_template()
    try:
        yield databases
    finally:
        await databases.close()


class _Databases:
    """Every test's database is a copy of one migrated template (CREATE DATABASE ... TEMPLATE: the
    migrations run once a session, not once a test), and is dropped in a task of its own while the next
    tests run (a DROP DATABASE waits on PostgreSQL's disk for up to a second or more); the session's end
    waits for every drop and the template's."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"tracker_test_template_{uuid.uuid4().hex[:8]}"
        self._drops: set[asyncio.Task[None]] = set()

    async def make_template(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.template}"')
        conn = await asyncpg.connect(_with_database(self.admin_url, self.template))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def copy(self) -> str:
        name = f"tracker_test_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop_soon(self, name: str) -> None:
        """Drop a test's database in the background (TRACKER_TEST_KEEP_DB=1 keeps it, and prints its
        name, for a failure to be read afterwards: its positions, alerts and checkpoints)."""
        if os.environ.get("TRACKER_TEST_KEEP_DB"):
            print(f"\nkept test database {name}")
            return
        task = asyncio.ensure_future(self._drop(name))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    async def _drop(self, name: str, tries: int = 3) -> None:
        """Drop a test's database, tried again if PostgreSQL does not answer in time (a loaded CI
        machine: a connect once timed out after the whole suite had passed); one left behind after
        that is warned of, and fails nothing."""
        for attempt in range(1, tries + 1):
            try:
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (OSError, TimeoutError, asyncpg.PostgresError) as e:
                if attempt == tries:
                    warnings.warn(f"test database {name} left behind: {type(e).__name__}: {e}", stacklevel=1)
                    return
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        try:
            if self._drops:  # (a drop that failed leaves one database behind, never the template)
                await asyncio.gather(*self._drops, return_exceptions=True)
        finally:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    async def _admin(self, sql: str) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()


@pytest.fixture
async def database_url(_databases: _Databases) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = await _databases.copy()
    yield _with_database(_databases.admin_url, name)
    _databases.drop_soon(name)


@pytest.fixture
def nats_nodes(tmp_path: Path) -> Iterator[list[EmbeddedNats]]:
    """Three nats-server processes of the test's own, routed to each other, with the subject mappings
    for the cluster tests' partitions (tests.helpers.CLUSTER_PARTITIONS)."""
    nodes = EmbeddedNats.cluster(3, tmp_path / "nats", partitions=CLUSTER_PARTITIONS)
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
def topic_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}/"


def forget_mqtt_session(url: str, client_id: str) -> None:
    """Remove a persistent session from the broker (connect once with clean_session=True)."""
    a = BrokerAddress.parse(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if a.username:
        c.username_pw_set(a.username, a.password)
    c.connect(a.host, a.port)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def settings_for(topic_prefix: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings of a service under test: its own topic prefix, client id and HTTP port."""

    def make(database_url: str, mqtt_url: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "mqtt_url": mqtt_url,
            "topic_prefix": topic_prefix,
            "mqtt_client_id": f"tracker-{topic_prefix.strip('/')}",
            "http_port": free_port(),
            "data_dir": tmp_path,
            "batch_wait_ms": 5.0,
            # the shared test broker keeps Mosquitto's defaults: tests/integration/test_broker_settings.py
            # probes brokers of its own
            "broker_probe_interval_s": 0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def service(database_url: str, mqtt_url: str, settings_for) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    from tracker.service import Service

    settings = settings_for(database_url, mqtt_url)
    svc = Service(settings, database_url, mqtt_url)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        await asyncio.to_thread(forget_mqtt_session, mqtt_url, settings.mqtt_client_id)
