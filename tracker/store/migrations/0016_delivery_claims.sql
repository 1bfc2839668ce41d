-- Several tracker processes on one PostgreSQL (issue 16, point 4): who claimed a delivery, and when.
--
-- Each process names itself on its PostgreSQL connections with the session setting
-- `tracker.worker_id` (tracker.store.db.create_pool(worker_id=...); the service's worker id).
-- tracker_worker() reads it (NULL on a connection that set none: tests, tools, a single process of
-- old). A row becomes 'sending' in two places, and both record the claimer:
--   * a dispatcher's round claims it (tracker.store.alerts.claim_due_deliveries sets both columns);
--   * a commit writes a critical alert's websocket delivery 'sending' (claimed at once, to be sent
--     as soon as the commit is done): the trigger below fills them in.
-- What the columns are for (tracker.store.alerts):
--   * a starting process releases the rows it claimed itself in an earlier life, and those whose
--     claim is older than the claim timeout (a dead process's); never the fresh claims of another
--     live process;
--   * a dispatcher that is still sending refreshes claimed_at of what it holds (a heartbeat), so a
--     slow delivery is not taken for a dead process's;
--   * an outcome is written only where the row's last claimer is the one writing it: a process that
--     was taken for dead, whose rows another one claimed again, does not overwrite their outcome.
-- Rows left 'sending' before this migration have no claim time: they are a dead process's (there
-- was one process, and it is the one starting now), released at once.
ALTER TABLE deliveries ADD COLUMN claimed_by text, ADD COLUMN claimed_at timestamptz;

CREATE FUNCTION tracker_worker() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('tracker.worker_id', true), '') $$;

CREATE FUNCTION deliveries_claimed_in_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.claimed_by := tracker_worker();
    NEW.claimed_at := now();
    RETURN NEW;
END $$;

-- only rows written 'sending' call it (the WHEN is evaluated without calling the function)
CREATE TRIGGER deliveries_claimed_in_commit BEFORE INSERT ON deliveries
    FOR EACH ROW WHEN (NEW.state = 'sending') EXECUTE FUNCTION deliveries_claimed_in_commit();
