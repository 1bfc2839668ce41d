-- The school's live map pushed (issue 17.4).
--
-- 1. The position-read audit log, one row per staff session, child, day and endpoint instead of one
--    per read: a live map polled every 5 s (or a socket pushing every 3 s) wrote a row per child per
--    poll, hundreds of thousands a day for one school, and drowned the reads a family wants to see.
--    A row now says: this token (a staff member's session) read this child's positions through this
--    endpoint on this day (in the time zone of the child's school), `reads` times, `fixes` positions in
--    all, first at `at` and last at `last_at`. The rows written before this migration keep their
--    meaning (one read each): their `day` is NULL, and no row is ever merged into them.
ALTER TABLE position_reads
    ADD COLUMN day     date,
    ADD COLUMN reads   integer NOT NULL DEFAULT 1,
    ADD COLUMN last_at timestamptz;
CREATE UNIQUE INDEX position_reads_per_day_idx ON position_reads (token_id, child_id, day, endpoint)
    WHERE day IS NOT NULL;

-- 2. Staff tokens close their websockets too: the school's live map (/ws/school) is opened with a
--    school staff or administrator token, so their revocation or deletion is notified on
--    `tokens_revoked` like a guardian's (migration 0010). Device tokens open no socket.
CREATE OR REPLACE FUNCTION notify_tokens_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM pg_notify('tokens_revoked', ids)
        FROM (SELECT string_agg(id::text, ',') AS ids
              FROM (SELECT a.id, (row_number() OVER (ORDER BY a.id) - 1) / 300 AS chunk
                    FROM tokens_after a JOIN tokens_before b ON b.id = a.id
                    WHERE a.role IN ('guardian', 'school', 'admin')
                      AND b.revoked_at IS NULL AND a.revoked_at IS NOT NULL) t
              GROUP BY chunk) c;
    ELSE
        PERFORM pg_notify('tokens_revoked', ids)
        FROM (SELECT string_agg(id::text, ',') AS ids
              FROM (SELECT b.id, (row_number() OVER (ORDER BY b.id) - 1) / 300 AS chunk
                    FROM tokens_before b WHERE b.role IN ('guardian', 'school', 'admin')) t
              GROUP BY chunk) c;
    END IF;
    RETURN NULL;
END $$;
