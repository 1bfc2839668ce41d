"""Which JetStream answers a worker's start asks again (tracker.ingest.jetstream._retry): a cluster
without its leaders (a timeout, 503) always; "stream not found" only where the caller says it may be
a moment's (two workers starting together on a new cluster: the stream one of them just made was not
yet known to the node that answered the other, and that worker died at its start)."""

from collections.abc import Callable

import pytest
from nats.js.errors import NotFoundError, ServiceUnavailableError

from tracker.ingest import jetstream


def failing(times: int, error: Callable[[], Exception]) -> tuple[Callable[[], object], list[int]]:
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error()
        return "done"

    return step, calls


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(jetstream.asyncio, "sleep", instant)


async def test_a_cluster_without_its_leaders_is_asked_again() -> None:
    step, calls = failing(2, lambda: ServiceUnavailableError(code=503, description="no leader"))
    assert await jetstream._retry(step, "a stream") == "done" and len(calls) == 3


async def test_not_found_is_an_answer_unless_the_caller_says_it_may_pass() -> None:
    step, calls = failing(2, lambda: NotFoundError(code=404, err_code=10059, description="stream not found"))
    with pytest.raises(NotFoundError):
        await jetstream._retry(step, "a stream")
    assert len(calls) == 1
    step, calls = failing(2, lambda: NotFoundError(code=404, err_code=10059, description="stream not found"))
    assert await jetstream._retry(step, "the partitions' fronts", also=(NotFoundError,)) == "done"
    assert len(calls) == 3


async def test_asked_again_only_until_the_deadline() -> None:
    step, calls = failing(
        10**6, lambda: NotFoundError(code=404, err_code=10059, description="stream not found")
    )
    with pytest.raises(NotFoundError):
        await jetstream._retry(step, "the partitions' fronts", timeout=0.0, also=(NotFoundError,))
    assert len(calls) == 1
