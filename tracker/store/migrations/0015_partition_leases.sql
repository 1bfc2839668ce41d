-- Workers (issue 16, tracker.cluster): the children are split into partitions (child id modulo
-- TRACKER_PARTITIONS), and each partition is owned by one worker at a time through a lease here.
-- `token` goes up by one every time a partition changes hands; a batch's commit checks, in its own
-- transaction, that the tokens it was prepared under are still the current ones (fencing: a worker
-- that lost a partition while paused or cut off commits nothing for it). The rows are made by the
-- first worker that starts (one per partition, 0 .. partitions-1), not here: the count is a setting.
CREATE TABLE partition_leases (
    partition smallint PRIMARY KEY CHECK (partition >= 0),
    owner text,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz
);

-- Which workers are alive (seen within the lease TTL and not stopping): each takes
-- ceil(partitions / live workers) partitions at most.
CREATE TABLE cluster_workers (
    worker text PRIMARY KEY,
    seen_at timestamptz NOT NULL,
    stopping boolean NOT NULL DEFAULT false
);
