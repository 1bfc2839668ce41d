"""The contract: requests built from the app's own OpenAPI schema go to the running service (real
PostgreSQL, real broker); no answer may be a 5xx, and every answer must match the schema (status code,
content type, body).

Random requests alone rarely get past a 404 or a 422 (random ids, bodies about schools that do not
exist), so a success body would seldom be checked. The test therefore acts in a seeded world
(contract_world.py) and sends, per operation:

1. a valid request about the world, which must succeed: every operation answers 2xx at least once and
   its body is checked against the documented response;
2. generated requests (schemathesis, positive mode), half of them aimed at the world's rows (valid ids,
   shapes near a school, references that exist) so that varied valid data reaches the handlers, half
   as generated (random ids: documented 404s and 422s);
3. generated invalid requests (negative mode): documented 4xx, never a 5xx.

Operations go reads first, then creations, changes and deletions (deletions on rows made to be
deleted), so no request removes what a later one needs. The test fails naming every operation that was
never called or never answered 2xx. It acts as the city's administrator (a guardian where only a
guardian may call, a device for the phone apps' ingest) and then as a guardian, whose answers are
mostly 403 and 404, which must be documented too.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.contract_world import ContractWorld, aim, build_contract_world, caller, valid_requests
from tests.integration.test_api_support import bearer, build_city, line, running_api

# Generated requests per operation and mode (as a guardian: half as many). The same ones every run,
# unless TRACKER_CONTRACT_RANDOM=1 draws new ones: with more examples, a longer hunt for bugs.
MAX_EXAMPLES = int(os.environ.get("TRACKER_CONTRACT_EXAMPLES", "8"))
RANDOM = os.environ.get("TRACKER_CONTRACT_RANDOM") == "1"
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
_METHOD_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 2, "DELETE": 3}


def _order(key: str) -> tuple[int, bool]:
    """Reads, creations, changes, deletions; a school last of all (it takes its rows with it)."""
    method, path = key.split(" ", 1)
    return _METHOD_ORDER[method], path == "/api/v1/schools/{school_id}"


@dataclass
class Answers:
    """What the run saw: status codes by operation ("METHOD /path"), and what went wrong."""

    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    generated_2xx: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def unchecked(self, keys: list[str], *, need_2xx: bool) -> list[str]:
        """Operations never called, or (``need_2xx``) never answered 2xx, with the answers they got."""
        missing = []
        for key in keys:
            seen = self.statuses.get(key)
            if not seen:
                missing.append(f"{key}: never called")
            elif need_2xx and not any(200 <= s < 300 for s in seen):
                missing.append(f"{key}: never answered 2xx (answers {dict(sorted(seen.items()))})")
        return missing


def _run(base_url: str, world: ContractWorld, role: str, max_examples: int) -> tuple[list[str], Answers]:
    """Every operation of the schema: its valid requests (as the administrator), then generated ones."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = {
        f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())
    }
    keys = sorted(operations, key=_order)
    answers = Answers()
    session = requests.Session()

    def send(key: str, case: Any, *, must_succeed: bool = False) -> int:
        headers = {"Authorization": f"Bearer {caller(key, world, role)}"}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        answers.statuses[key][response.status_code] += 1
        if response.status_code >= 500 or (must_succeed and not 200 <= response.status_code < 300):
            raise AssertionError(f"{response.status_code}: {response.text[:500]}")
        case.validate_response(response, checks=CHECKS, headers=headers)
        return int(response.status_code)

    if role == "admin":
        valid = valid_requests(world)
        answers.problems += [
            f"{key}: a valid request for an operation the schema lacks"
            for key in valid
            if key not in operations
        ]
        for key in keys:
            if key not in valid:
                answers.problems.append(f"{key}: no valid request in contract_world.valid_requests")
            for request in valid.get(key, []):
                case = operations[key].Case(
                    path_parameters=request.path_parameters,
                    query=request.query,
                    headers=request.headers,
                    body=request.body if request.body is not None else schemathesis.core.NOT_SET,
                    media_type=request.media_type,
                )
                try:
                    send(key, case, must_succeed=True)
                except (Exception, BaseExceptionGroup) as e:
                    answers.problems.append(f"{key} (valid request): {type(e).__name__}: {str(e)[:1500]}")

    def generated(key: str, mode: GenerationMode) -> None:
        @given(case=operations[key].as_strategy(generation_mode=mode), data=st.data())
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=not RANDOM,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=hypothesis.Verbosity.quiet,
        )
        def check(case: Any, data: st.DataObject) -> None:
            if mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="aimed at the world"):
                aim(key, case, world, data.draw)
            if 200 <= send(key, case) < 300:
                answers.generated_2xx.add(key)

        check()

    for key in keys:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                generated(key, mode)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, key
            except (Exception, BaseExceptionGroup) as e:  # each failing operation, with its example
                answers.problems.append(f"{key} ({mode.value}): {type(e).__name__}: {str(e)[:1500]}")
    return keys, answers


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ["admin", "guardian"])
async def test_no_5xx_and_every_answer_matches_the_schema(service, role: str) -> None:  # type: ignore[no-untyped-def]
    world = await build_contract_world(service.pool)
    await service.reload_registry()  # the ingest knows the phone app's identities
    base_url = f"http://127.0.0.1:{service.settings.http_port}"
    examples = MAX_EXAMPLES if role == "admin" else max(1, MAX_EXAMPLES // 2)
    keys, answers = await asyncio.to_thread(_run, base_url, world, role, examples)
    unchecked = answers.unchecked(keys, need_2xx=role == "admin")
    assert answers.problems == [] and unchecked == [], "\n\n".join(answers.problems + unchecked)
    calls = sum(sum(c.values()) for c in answers.statuses.values())
    ok = sum(1 for k in keys if any(200 <= s < 300 for s in answers.statuses[k]))
    print(
        f"{role}: {len(keys)} operations, {calls} requests; {ok} operations answered 2xx,"
        f" {len(answers.generated_2xx)} of them to a generated request"
    )


async def test_a_body_that_is_not_utf8_is_the_documented_422(database_url: str, tmp_path: Path) -> None:
    """JSON is UTF-8 (RFC 8259): other bytes are malformed JSON, answered like a syntax error (FastAPI's
    own answer is a 400 that no operation documents)."""
    async with running_api(database_url, tmp_path) as api:
        city = await build_city(api.pool)
        r = await api.http.post(
            "/api/v1/tags",
            content=b'{"id": "\xff\xfe", "child_id": 1}',
            headers={**bearer(city.admin), "Content-Type": "application/json"},
        )
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [
        {
            "loc": ["body"],
            "msg": "the body is not UTF-8 text (invalid start byte at byte 8)",
            "type": "json_invalid",
        }
    ]


async def test_a_corridor_too_narrow_to_store_is_refused(database_url: str, tmp_path: Path) -> None:
    """A corridor is kept as a PostgreSQL ``real``: 1e-300 m, "greater than 0" as the schema once said,
    became 0 there and broke the table's check (a 500, found by the contract test). Under a metre a
    corridor is narrower than any GPS fix's error: every way in refuses it as bad input."""
    async with running_api(database_url, tmp_path) as api:
        city = await build_city(api.pool)
        admin = bearer(city.admin)
        route = {
            "type": "Feature",
            "geometry": line((-500, 0), (0, 0)),
            "properties": {"name": "Hair-thin walk", "school_id": city.a.school_id, "corridor_m": 1e-300},
        }
        created = await api.http.post("/api/v1/routes", headers=admin, json=route)
        patched = await api.http.patch(
            f"/api/v1/routes/{city.a.route_id}", headers=admin, json={"properties": {"corridor_m": 0.5}}
        )
        imported = await api.http.post(
            "/api/v1/import",
            params={"corridor_m": 1e-300},
            headers=admin,
            json={"type": "FeatureCollection", "features": [route | {"properties": {"name": "x"}}]},
        )
        kept = await api.pool.fetchval("SELECT corridor_m FROM routes WHERE id = $1", city.a.route_id)
    assert [r.status_code for r in (created, patched, imported)] == [422, 422, 422], created.text
    assert created.json()["detail"][0]["loc"] == ["body", "properties", "corridor_m"]
    assert patched.json()["detail"][0]["loc"] == ["body", "properties", "corridor_m"]
    assert imported.json()["detail"][0]["loc"] == ["query", "corridor_m"]
    assert kept == 30
