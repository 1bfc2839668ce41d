-- A month of the city (issue 16.9): `positions` partitioned by the fix's time, one partition per UTC
-- day, so that retention drops whole days (DROP TABLE: no DELETE of a billion rows, no dead tuples for
-- VACUUM, no index bloat) and a day's indexes stay the size of a day.
--
-- The partitions, always contiguous, from the oldest time to the newest:
--   positions_before    [MINVALUE, first day)   fixes older than every day partition (a watch whose
--                                               clock reset to 1980, a device that kept fixes offline
--                                               for weeks): stored, and purged row by row once older
--                                               than the retention period
--   positions_YYYYMMDD  [day, day + 1)          one per UTC day, made some days ahead
--   positions_after     [last day + 1, MAXVALUE) fixes later than every day partition (the ingest
--                                               refuses fixes more than max_future_s ahead, so only
--                                               when no partition was made for days)
-- so that no fix, whatever its timestamp, fails to find a partition (a batch that cannot store one fix
-- stores none). Not a DEFAULT partition: with one, PostgreSQL cannot read the partitions in time order
-- (its "ordered append"), and "the child's last fix" (ORDER BY ts DESC LIMIT 1: the live view, the
-- child's page, GET .../position) would probe every day's index instead of stopping at the newest day
-- that has one (bench/positions_copy.py measures the difference); DETACH ... CONCURRENTLY is not allowed
-- with one either.
--
-- Idempotency stays: the primary key (tag_id, ts) holds the partition key, so a redelivered fix (same
-- tag and time) is routed to the partition that holds the first copy and collides there (the COPY
-- raises unique_violation, the INSERT ... ON CONFLICT (tag_id, ts) skips it). Rows only ever move
-- between partitions when positions_ensure_partitions narrows positions_before or positions_after, into
-- a partition made in the same transaction.
--
-- Cheaper rows: the columns in the order that wastes no alignment padding (8-byte ones first, the
-- varlena tag last), and no BRIN index on ts (it served the DELETE that retention no longer runs).
--
-- Partitions are made and dropped by the functions below, called by the service's retention loop
-- (tracker.store.retention) with a lock timeout: adding or dropping a partition takes an ACCESS
-- EXCLUSIVE lock on `positions` for a moment, once a day.

ALTER TABLE positions RENAME TO positions_unpartitioned;
ALTER INDEX positions_pkey RENAME TO positions_unpartitioned_pkey;
ALTER INDEX positions_child_ts_idx RENAME TO positions_unpartitioned_child_ts_idx;
DROP INDEX positions_ts_brin_idx;

CREATE TABLE positions (
    ts               timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    child_id         bigint NOT NULL,
    seq              bigint,
    lon              double precision NOT NULL,
    lat              double precision NOT NULL,
    acc              real,              -- NULL: the device did not say (migration 0008)
    route_distance_m real,
    batt             smallint,
    sos              boolean NOT NULL DEFAULT false,
    tag_id           text NOT NULL,
    PRIMARY KEY (tag_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX positions_child_ts_idx ON positions (child_id, ts DESC);

-- The day partitions: (day, table).
CREATE FUNCTION positions_days() RETURNS TABLE (day date, rel oid) LANGUAGE sql STABLE AS $$
    SELECT to_date(substr(c.relname, 11), 'YYYYMMDD'), c.oid
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'positions'::regclass AND c.relname ~ '^positions_[0-9]{8}$'
$$;

-- The advisory lock that partition changes take (each worker's retention loop may try at once).
CREATE FUNCTION positions_partitions_lock() RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT x'706f736974696f6e'::bigint  -- 'position'
$$;

-- A UTC day's first instant.
CREATE FUNCTION positions_day_start(day date) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT day::timestamp AT TIME ZONE 'UTC'
$$;

-- Make the day partitions from `since` (or the oldest there is) to today + `ahead` (UTC), narrowing
-- positions_before and positions_after and moving into the new days the fixes they held of those days.
-- Returns the partitions made; makes none (and takes no lock on positions) when they are all there.
CREATE FUNCTION positions_ensure_partitions(ahead integer, since date DEFAULT NULL)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    today  date := (now() AT TIME ZONE 'UTC')::date;
    first  date;
    last   date;
    lo     date;
    hi     date;
    d      date;
BEGIN
    PERFORM pg_advisory_xact_lock(positions_partitions_lock());  -- one at a time: every worker runs the loop
    SELECT min(p.day), max(p.day) INTO first, last FROM positions_days() p;
    IF first IS NULL THEN  -- a new table: one day, and the two ends around it
        first := coalesce(least(since, today), today);
        last := first;
        EXECUTE format('CREATE TABLE positions_before PARTITION OF positions FOR VALUES FROM (MINVALUE) TO (%L)',
                       positions_day_start(first));
        EXECUTE format('CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                       'positions_' || to_char(first, 'YYYYMMDD'), positions_day_start(first),
                       positions_day_start(first + 1));
        EXECUTE format('CREATE TABLE positions_after PARTITION OF positions FOR VALUES FROM (%L) TO (MAXVALUE)',
                       positions_day_start(first + 1));
        RETURN NEXT 'positions_' || to_char(first, 'YYYYMMDD');
    END IF;
    lo := least(coalesce(since, first), first);
    hi := greatest(today + ahead, last);
    IF lo < first THEN
        ALTER TABLE positions DETACH PARTITION positions_before;
        d := lo;
        WHILE d < first LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                           'positions_' || to_char(d, 'YYYYMMDD'), positions_day_start(d),
                           positions_day_start(d + 1));
            RETURN NEXT 'positions_' || to_char(d, 'YYYYMMDD');
            d := d + 1;
        END LOOP;
        WITH moved AS (DELETE FROM positions_before WHERE ts >= positions_day_start(lo) RETURNING *)
        INSERT INTO positions SELECT * FROM moved;
        EXECUTE format('ALTER TABLE positions ATTACH PARTITION positions_before FOR VALUES FROM (MINVALUE) TO (%L)',
                       positions_day_start(lo));
    END IF;
    IF hi > last THEN
        ALTER TABLE positions DETACH PARTITION positions_after;
        d := last + 1;
        WHILE d <= hi LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                           'positions_' || to_char(d, 'YYYYMMDD'), positions_day_start(d),
                           positions_day_start(d + 1));
            RETURN NEXT 'positions_' || to_char(d, 'YYYYMMDD');
            d := d + 1;
        END LOOP;
        WITH moved AS (DELETE FROM positions_after WHERE ts < positions_day_start(hi + 1) RETURNING *)
        INSERT INTO positions SELECT * FROM moved;
        EXECUTE format('ALTER TABLE positions ATTACH PARTITION positions_after FOR VALUES FROM (%L) TO (MAXVALUE)',
                       positions_day_start(hi + 1));
    END IF;
END $$;

-- Retention: drop the day partitions whose whole day is older than `keep` (a fix is kept at least
-- `keep`, and at most a day longer), and with them positions_before, made again (empty) below the oldest
-- partition left. Returns each dropped partition with its row count as PostgreSQL last estimated it
-- (pg_class.reltuples; counting a day of the city's fixes would read the whole day; counted when there
-- is no estimate yet). The rows of positions_before and positions_after older than `keep` are deleted
-- by the caller.
CREATE FUNCTION positions_drop_partitions(keep interval)
RETURNS TABLE (name text, rows_estimate bigint) LANGUAGE plpgsql AS $$
DECLARE
    cutoff date := ((now() - keep) AT TIME ZONE 'UTC')::date;  -- days before it ended `keep` ago
    last   date;
    r      record;
    bottom date;
BEGIN
    PERFORM pg_advisory_xact_lock(positions_partitions_lock());
    last := (SELECT max(p.day) FROM positions_days() p);
    FOR r IN SELECT c.relname::text AS rel, c.reltuples::bigint AS n
             FROM positions_days() p JOIN pg_class c ON c.oid = p.rel
             WHERE p.day < cutoff ORDER BY p.day
    LOOP
        name := r.rel;
        rows_estimate := r.n;
        IF rows_estimate < 0 THEN  -- never vacuumed nor analyzed: a small table, counted
            EXECUTE format('SELECT count(*) FROM %I', r.rel) INTO rows_estimate;
        END IF;
        EXECUTE format('DROP TABLE %I', r.rel);
        RETURN NEXT;
    END LOOP;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- positions_before held only fixes older than the first day dropped: all older than `keep`
    bottom := coalesce((SELECT min(p.day) FROM positions_days() p), last + 1);
    name := 'positions_before';
    SELECT count(*) INTO rows_estimate FROM positions_before;  -- fixes with unusual timestamps: few
    DROP TABLE positions_before;
    EXECUTE format('CREATE TABLE positions_before PARTITION OF positions FOR VALUES FROM (MINVALUE) TO (%L)',
                   positions_day_start(bottom));
    RETURN NEXT;
END $$;

-- Today's partition and three days ahead, the days of the fixes stored so far (at most 62 days back: older
-- ones go to positions_before, and retention purges them), and the fixes moved in.
SELECT positions_ensure_partitions(
    3, greatest(coalesce((SELECT (min(ts) AT TIME ZONE 'UTC')::date FROM positions_unpartitioned),
                         (now() AT TIME ZONE 'UTC')::date),
                (now() AT TIME ZONE 'UTC')::date - 62));
INSERT INTO positions (ts, received_at, child_id, seq, lon, lat, acc, route_distance_m, batt, sos, tag_id)
SELECT ts, received_at, child_id, seq, lon, lat, acc, route_distance_m, batt, sos, tag_id
FROM positions_unpartitioned;
DROP TABLE positions_unpartitioned;
