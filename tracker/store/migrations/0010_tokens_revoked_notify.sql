-- Sockets at scale (issue 18): a guardian token that stops resolving by a change in PostgreSQL
-- (revoked: the API, `UPDATE ... SET revoked_at` by hand or from another tracker process; deleted:
-- the guardian deleted, ON DELETE CASCADE) wakes every tracker process listening on `tokens_revoked`,
-- whichever path made the change, and each closes its own websockets opened with it. The payload is
-- the token ids, comma-separated, at most 300 in one notification (well under PostgreSQL's 8,000-byte
-- limit on a payload). A token expiring changes no row: the trackers' periodic check catches it (and
-- anything missed while a listener was reconnecting).
-- Only guardian tokens: they are the only ones a websocket is opened with.

CREATE FUNCTION notify_tokens_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        PERFORM pg_notify('tokens_revoked', ids)
        FROM (SELECT string_agg(id::text, ',') AS ids
              FROM (SELECT a.id, (row_number() OVER (ORDER BY a.id) - 1) / 300 AS chunk
                    FROM tokens_after a JOIN tokens_before b ON b.id = a.id
                    WHERE a.role = 'guardian' AND b.revoked_at IS NULL AND a.revoked_at IS NOT NULL) t
              GROUP BY chunk) c;
    ELSE
        PERFORM pg_notify('tokens_revoked', ids)
        FROM (SELECT string_agg(id::text, ',') AS ids
              FROM (SELECT b.id, (row_number() OVER (ORDER BY b.id) - 1) / 300 AS chunk
                    FROM tokens_before b WHERE b.role = 'guardian') t
              GROUP BY chunk) c;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER api_tokens_revoked AFTER UPDATE ON api_tokens
    REFERENCING OLD TABLE AS tokens_before NEW TABLE AS tokens_after
    FOR EACH STATEMENT EXECUTE FUNCTION notify_tokens_revoked();
CREATE TRIGGER api_tokens_deleted AFTER DELETE ON api_tokens
    REFERENCING OLD TABLE AS tokens_before
    FOR EACH STATEMENT EXECUTE FUNCTION notify_tokens_revoked();
