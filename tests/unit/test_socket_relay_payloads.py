"""The socket relay's notifications (tracker.alerts.relay): ids only, each under PostgreSQL's limit."""

from __future__ import annotations

from tracker.alerts.relay import parse, payloads

# (what, worker id, pairs)
PAYLOADS = [
    ("none told, none sent", "w", []),
    ("one pair", "worker-a", [(1, 2)]),
    ("a thousand of the longest ids", "w" * 64, [(2**63 - 1 - i, 2**63 - 2 - i) for i in range(1000)]),
    ("a long worker id", "tracker-" + "x" * 500, [(10**9 + i, 7) for i in range(2000)]),
]


def test_payloads_hold_every_pair_and_stay_under_postgresqls_limit() -> None:
    for what, worker, pairs in PAYLOADS:
        told = payloads(worker, pairs)
        assert all(len(p.encode()) < 8000 for p in told), what
        assert [pair for p in told for pair in parse(p)[1]] == pairs, what
        assert {parse(p)[0] for p in told} <= {worker}, what
        assert (told == []) == (pairs == []), what
    assert parse("w\n") == ("w", [])
