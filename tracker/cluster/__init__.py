"""Workers (issue 16): the children split into partitions, each owned by one worker at a time through
a lease in PostgreSQL, with a fencing token checked in every commit. Independent of the engine that
carries the messages; one process (``make run``, the plain service) uses none of it.

- ``partitions``: a child is in partition ``child_id % TRACKER_PARTITIONS``; ``Share`` is a worker's
  ownership at one moment (partition -> token); ``Ownership`` is what the pipeline asks of a keeper.
- ``leases``: ``LeaseKeeper`` heartbeats, renews, takes up to its fair share, gives up what is above
  it, considers itself fenced before a lease it could not renew can lapse on the server, and hands
  everything over on ``stop``.
- ``keeper_thread``: ``ThreadedLeaseKeeper``, the keeper a worker runs: a ``LeaseKeeper`` on a thread,
  event loop and connections of its own, so that a worker whose event loop is busy keeps its leases.
- ``fencing``: ``fence(conn, tokens)``, the first statement of a batch's (and the clock's) transaction,
  raising ``Fenced``.

How a worker is meant to be wired (tracker.service, with the engine):

    keeper = ThreadedLeaseKeeper(database_url, settings.worker_id or default_worker_id(),
                                 settings.partitions, settings.lease_ttl_s,
                                 on_gained=..., on_lost=..., before_release=...)
    pipeline = Pipeline(..., ownership=keeper)      # batches carry tokens, commits are fenced,
                                                    # the clock looks at owned children only
    on_gained(ps): pipeline.forget_partitions(ps), then start consuming partitions ps
                   (their states are read from the checkpoints the old owner left, after the bump)
    on_lost(ps):   stop consuming ps (no ack for what is in flight), pipeline.forget_partitions(ps)
    before_release(ps): stop consuming ps and wait until the batch in flight is committed
    clock loop:    pipeline.tick(); escalate_due(pool, escalation, share=keeper.share())
    spawn keeper.run(); on a graceful shutdown await keeper.stop() before closing the pool

The batch loop needs nothing more: a ``Fenced`` commit is neither acknowledged nor dead-lettered, the
states prepared on it are discarded and ``pipeline.fenced`` tells the keeper.
"""
