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
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from tracker.config import Settings
from tracker.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
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


@pytest.fixture
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"tracker_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(pg_admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
