-- Families across schools (issue 19): a child moving school mid-year, and a guardian unlinked from a
-- child. The rules these rows serve are in tracker/store/scope.py (time-bounded visibility).

-- A child's school has a start: `school_since` is when the child's current school took over (the
-- start of the day of the move, in the receiving school's time zone); NULL: since the child was
-- registered. School staff see a child's positions, alerts and status only from the periods when the
-- child was at their school.
ALTER TABLE children ADD COLUMN school_since timestamptz;

-- The schools a child was at before the current one, each with its period [since, until) (since NULL:
-- from the child's registration). The periods of a child, with the current school's, follow each other
-- without gap or overlap: the trigger below writes a row on every change of children.school_id, from
-- whatever path it comes (the API, an import, SQL by hand), so no move can leave a period unrecorded.
CREATE TABLE child_school_history (
    id          bigserial PRIMARY KEY,
    child_id    bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    school_id   bigint NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    since       timestamptz,
    until       timestamptz NOT NULL,
    moved_at    timestamptz NOT NULL DEFAULT now(),   -- when the move was made
    CHECK (since IS NULL OR since <= until)
);
CREATE INDEX child_school_history_child_idx ON child_school_history (child_id, school_id);
CREATE INDEX child_school_history_school_idx ON child_school_history (school_id);

-- The rule of a move, in one place for every path: unless it says from when (school_since set with
-- it), a move takes effect from the start of today in the receiving school's time zone; it never
-- starts before the current school's own start (two moves on one day leave the middle school an empty
-- period).
CREATE FUNCTION record_school_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.school_id IS DISTINCT FROM OLD.school_id THEN
        IF NEW.school_since IS NOT DISTINCT FROM OLD.school_since THEN
            SELECT date_trunc('day', now() AT TIME ZONE s.timezone) AT TIME ZONE s.timezone
              INTO NEW.school_since FROM schools s WHERE s.id = NEW.school_id;
            NEW.school_since := coalesce(NEW.school_since, now());
        END IF;
        IF OLD.school_since IS NOT NULL AND NEW.school_since < OLD.school_since THEN
            NEW.school_since := OLD.school_since;
        END IF;
        INSERT INTO child_school_history (child_id, school_id, since, until)
        VALUES (OLD.id, OLD.school_id, OLD.school_since, NEW.school_since);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER children_school_moved BEFORE UPDATE OF school_id ON children
    FOR EACH ROW EXECUTE FUNCTION record_school_move();

-- A delivery to a guardian who is no longer linked to the alert's child is cancelled, never sent
-- (tracker.store.alerts.cancel_deliveries when the link is removed, the dispatcher for any that is
-- due after it); its alert's history says why.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'offline', 'failed', 'suppressed', 'cancelled'));

-- A guardian deleted takes their deliveries with them (ON DELETE CASCADE): nothing can send them any
-- more. The alerts' history keeps a 'cancelled' step for each one that was still to be sent.
CREATE FUNCTION note_guardian_deliveries_cancelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_history (alert_id, step, detail)
    SELECT d.alert_id, 'cancelled',
           jsonb_build_object('guardian_id', d.guardian_id, 'channel', d.channel,
                              'transition', d.transition, 'reason', 'guardian deleted')
      FROM deliveries d
     WHERE d.guardian_id = OLD.id AND d.state = 'pending'
     ORDER BY d.id;
    RETURN OLD;
END $$;
CREATE TRIGGER guardians_deleted_cancel_deliveries BEFORE DELETE ON guardians
    FOR EACH ROW EXECUTE FUNCTION note_guardian_deliveries_cancelled();
