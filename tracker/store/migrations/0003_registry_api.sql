-- The registry API (issue 5): what schools, the city and parents register and read over HTTP,
-- device tokens bound to tags, RFID readers, and the audit log of staff reading children's positions.

-- Schools: their commute windows (a route without windows of its own uses its school's) and the
-- days the school is closed (holidays, vacation days).
ALTER TABLE schools
    ADD COLUMN windows     jsonb  NOT NULL DEFAULT '[]',
    ADD COLUMN closed_days date[] NOT NULL DEFAULT '{}';

-- Routes: expected arrival times at the route's end, [{"days": [0,1,2,3,4], "time": "08:40"}].
ALTER TABLE routes
    ADD COLUMN arrivals jsonb NOT NULL DEFAULT '[]';

-- Danger zones: hours when the zone is dangerous (a school-zone road at rush hour), as commute-window
-- style entries in the city's time zone; NULL: at every hour.
ALTER TABLE danger_zones
    ADD COLUMN hours jsonb;

-- Tags: the MQTT password of a GPS tag, kept only as a Mosquitto PBKDF2-SHA512 hash ($7$...), so
-- that the broker's password file can be written from the registry; the username is the tag id.
ALTER TABLE tags
    ADD COLUMN mqtt_password_hash text;

-- Guardians: the school that registered them (school staff see the guardians they registered and
-- those of their school's children); NULL: registered by the city.
ALTER TABLE guardians
    ADD COLUMN school_id bigint REFERENCES schools (id) ON DELETE SET NULL;
CREATE INDEX guardians_school_idx ON guardians (school_id);

-- RFID readers at school gates and crossings: the id is the one in the reader's MQTT topic
-- (tracker/v1/readers/{id}/sightings).
CREATE TABLE readers (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    school_id   bigint NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('gate', 'checkpoint')),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX readers_school_idx ON readers (school_id);
CREATE TRIGGER readers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON readers
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();

-- Device tokens speak for one tag; deleting the tag deletes its tokens. (NOT VALID: device tokens
-- issued before this migration, without a tag, stay as they are but can never be made again.)
ALTER TABLE api_tokens
    ADD COLUMN tag_id text REFERENCES tags (id) ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE api_tokens
    ADD CONSTRAINT api_tokens_device_has_tag CHECK (role <> 'device' OR tag_id IS NOT NULL) NOT VALID;
CREATE INDEX api_tokens_tag_idx ON api_tokens (tag_id);
CREATE INDEX api_tokens_guardian_idx ON api_tokens (guardian_id);
CREATE INDEX api_tokens_school_idx ON api_tokens (school_id);

-- Every read of a child's position by staff (school staff, city administrators): who, when, what.
-- No foreign keys: the log outlives the token, the school and the child it names.
CREATE TABLE position_reads (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    token_id    bigint NOT NULL,
    role        text NOT NULL,
    school_id   bigint,              -- the reader's school (school staff)
    label       text NOT NULL DEFAULT '',
    child_id    bigint NOT NULL,
    endpoint    text NOT NULL,       -- e.g. 'GET /api/v1/children/{child_id}/track'
    fixes       integer NOT NULL     -- how many positions of the child the response held
);
CREATE INDEX position_reads_child_idx ON position_reads (child_id, at DESC);
CREATE INDEX position_reads_at_idx ON position_reads (at DESC);

-- Retention: positions older than TRACKER_POSITIONS_RETENTION_DAYS are purged by the service. Rows
-- arrive roughly in time order, so a BRIN index finds the old ones at almost no cost to the writes.
CREATE INDEX positions_ts_brin_idx ON positions USING brin (ts);
CREATE INDEX dead_letters_received_brin_idx ON dead_letters USING brin (received_at);
