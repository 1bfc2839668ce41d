"""The contract: schemathesis generates requests from the app's own OpenAPI schema and sends them to
the running service (real PostgreSQL, real broker); no answer may be a 5xx, and every answer must
match the schema (status code, content type, body). Bounded: a few examples per operation, so the
run takes well under a minute on two cores.

It acts as the city's administrator (who may call everything, so the generated data reaches the
handlers) and then as a guardian (whose answers are mostly 403 and 404, which must be documented too).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.test_api_support import build_city
from tracker.store.tokens import issue_token

MAX_EXAMPLES = int(os.environ.get("TRACKER_CONTRACT_EXAMPLES", "20"))
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def _run(base_url: str, token: str, max_examples: int, seen: Counter[str]) -> list[str]:
    """Every operation of the schema with generated data; returns what went wrong (as text) and counts
    the answers by status class in ``seen``."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    problems: list[str] = []
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}

    def exercise(operation: Any, name: str) -> None:
        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=hypothesis.Verbosity.quiet,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            seen[f"{response.status_code // 100}xx"] += 1
            seen[name] += 1
            if response.status_code >= 500:
                raise AssertionError(f"{response.status_code}: {response.text[:500]}")
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()

    for result in schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        try:
            exercise(operation, name)
        except (Exception, BaseExceptionGroup) as e:  # each failing operation, with the minimal example
            problems.append(f"{name}: {type(e).__name__}: {str(e)[:1500]}")
    return problems


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ["admin", "guardian"])
async def test_no_5xx_and_every_answer_matches_the_schema(service, role: str) -> None:  # type: ignore[no-untyped-def]
    city = await build_city(service.pool)
    async with service.pool.acquire() as conn:
        # a token with an id no generated path parameter will hit, so revoking "a token" spares this one
        await conn.execute("SELECT setval('api_tokens_id_seq', 8000000000)")
        token = (
            await issue_token(conn, role="admin", label="contract")
            if role == "admin"
            else await issue_token(conn, role="guardian", guardian_id=city.a.guardian_id)
        )
    base_url = f"http://127.0.0.1:{service.settings.http_port}"
    seen: Counter[str] = Counter()
    problems = await asyncio.to_thread(_run, base_url, token, MAX_EXAMPLES, seen)
    assert problems == [], "\n\n".join(problems)
    operations = [k for k in seen if " " in k]
    assert len(operations) >= 50  # every operation was called
    if role == "admin":  # the generated data got past validation into the handlers, not only 4xx
        assert seen["2xx"] >= len(operations), seen
    print(dict(seen))
