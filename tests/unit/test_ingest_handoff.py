"""The handoff between paho's thread and the event loop: batches, waiting, and back-pressure."""

from __future__ import annotations

import asyncio
import threading
import time

from tracker.ingest.handoff import Handoff


async def test_a_batch_takes_what_waits_and_what_comes_within_the_wait() -> None:
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), maxsize=100)
    for i in range(3):
        handoff.put(i)

    def later() -> None:
        time.sleep(0.02)
        handoff.put(3)

    threading.Thread(target=later).start()
    assert await handoff.batch(4, wait_s=1.0) == [0, 1, 2, 3]  # the fourth came within the wait
    # the deadline ends a batch that is not full
    handoff.put(7)
    t0 = time.monotonic()
    assert await handoff.batch(10, wait_s=0.05) == [7]
    assert time.monotonic() - t0 >= 0.04


async def test_a_full_batch_returns_at_once_and_leaves_the_rest() -> None:
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), maxsize=100)
    for i in range(25):
        handoff.put(i)
    t0 = time.monotonic()
    assert await handoff.batch(10, wait_s=5.0) == list(range(10))
    assert time.monotonic() - t0 < 1.0
    assert len(handoff) == 15


async def test_an_empty_handoff_waits_for_the_first_message_from_another_thread() -> None:
    handoff: Handoff[str] = Handoff(asyncio.get_running_loop(), maxsize=10)
    threading.Timer(0.05, handoff.put, args=("hello",)).start()
    assert await asyncio.wait_for(handoff.batch(5, wait_s=0.0), 5) == ["hello"]


async def test_put_waits_while_full_until_the_loop_takes_a_batch() -> None:
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), maxsize=4)
    done = threading.Event()

    def producer() -> None:
        for i in range(10):
            handoff.put(i)
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    await asyncio.sleep(0.1)
    assert not done.is_set() and len(handoff) == 4 and handoff.blocked >= 1
    got: list[int] = []
    while len(got) < 10:
        got += await asyncio.wait_for(handoff.batch(3, wait_s=0.0), 5)
    assert got == list(range(10)) and done.wait(5)


async def test_put_many_fills_to_the_limit_then_waits_and_keeps_the_order() -> None:
    """paho's thread hands on a buffer's messages at once: as many as there is room for, the rest
    once the loop has taken some (a batch waiting for messages is woken first)."""
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), maxsize=4)
    done = threading.Event()
    first = asyncio.ensure_future(handoff.batch(3, wait_s=0.0))  # waits for the first message
    await asyncio.sleep(0.01)
    threading.Thread(target=lambda: (handoff.put_many(list(range(10))), done.set()), daemon=True).start()
    got = await asyncio.wait_for(first, 5)
    while len(got) < 10:
        got += await asyncio.wait_for(handoff.batch(3, wait_s=0.0), 5)
    assert got == list(range(10)) and done.wait(5) and handoff.blocked >= 1


async def test_close_lets_a_waiting_put_go() -> None:
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), maxsize=1)
    handoff.put(0)
    finished = threading.Event()
    threading.Thread(target=lambda: (handoff.put(1), finished.set()), daemon=True).start()
    await asyncio.sleep(0.05)
    assert not finished.is_set()
    handoff.close()
    assert await asyncio.to_thread(finished.wait, 5)


async def test_a_batch_stops_at_its_weight_but_takes_one_heavy_item_alone() -> None:
    handoff: Handoff[bytes] = Handoff(asyncio.get_running_loop(), maxsize=100, size=len)
    for n in (400, 400, 400, 5000, 10):
        handoff.put(b"x" * n)
    t0 = time.monotonic()
    first = await handoff.batch(10, wait_s=5.0, max_size=1000)
    assert [len(m) for m in first] == [400, 400]  # the third would weigh too much: no waiting for more
    assert time.monotonic() - t0 < 1.0
    assert [len(m) for m in await handoff.batch(10, wait_s=0.0, max_size=1000)] == [400]
    assert [len(m) for m in await handoff.batch(10, wait_s=0.0, max_size=1000)] == [5000]
    assert [len(m) for m in await handoff.batch(10, wait_s=0.0, max_size=1000)] == [10]


async def test_the_event_loop_can_add_without_waiting_and_wakes_the_batch() -> None:
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), maxsize=1)
    waiting = asyncio.create_task(handoff.batch(5, wait_s=0.0))
    await asyncio.sleep(0.01)
    handoff.put_nowait(1)
    handoff.put_nowait(2)  # over maxsize: an HTTP request is never made to wait here
    assert await asyncio.wait_for(waiting, 5) == [1, 2]  # both were there when the batch woke
