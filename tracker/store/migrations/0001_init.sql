-- The registry, positions, alerts and their delivery. Geometry is kept as GeoJSON (RFC 7946, lon/lat):
-- the geofence index is built in the tracker from it; PostgreSQL needs no spatial extension.

CREATE TABLE schools (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'Asia/Seoul',
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE routes (
    id          bigserial PRIMARY KEY,
    school_id   bigint NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    name        text NOT NULL,
    geometry    jsonb NOT NULL,                  -- LineString or MultiLineString
    corridor_m  real NOT NULL CHECK (corridor_m > 0),
    -- commute windows in the school's time zone: [{"days": [0,1,2,3,4], "start": "07:30", "end": "09:00"}]
    windows     jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE danger_zones (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL,                   -- construction, river, arterial_road, ...
    severity    text NOT NULL DEFAULT 'critical' CHECK (severity IN ('warning', 'critical')),
    geometry    jsonb NOT NULL,                  -- Polygon or MultiPolygon, holes allowed
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE children (
    id          bigserial PRIMARY KEY,
    school_id   bigint NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    route_id    bigint REFERENCES routes (id) ON DELETE SET NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX children_route_idx ON children (route_id);

CREATE TABLE tags (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    child_id    bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    kind        text NOT NULL DEFAULT 'gps' CHECK (kind IN ('gps', 'rfid')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tags_child_idx ON tags (child_id);

CREATE TABLE guardians (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    phone       text,
    language    text NOT NULL DEFAULT 'ko' CHECK (language IN ('ko', 'en')),
    channels    text[] NOT NULL DEFAULT '{websocket,sms}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE child_guardians (
    child_id    bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    guardian_id bigint NOT NULL REFERENCES guardians (id) ON DELETE CASCADE,
    priority    integer NOT NULL DEFAULT 1,      -- escalation order: 1 first
    PRIMARY KEY (child_id, guardian_id)
);
CREATE INDEX child_guardians_guardian_idx ON child_guardians (guardian_id);

-- Bearer tokens: only a SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'school', 'guardian', 'device')),
    guardian_id bigint REFERENCES guardians (id) ON DELETE CASCADE,
    school_id   bigint REFERENCES schools (id) ON DELETE CASCADE,
    label       text NOT NULL DEFAULT '',
    expires_at  timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'guardian' OR guardian_id IS NOT NULL),
    CHECK (role <> 'school' OR school_id IS NOT NULL)
);

-- Every fix of a known tag, stored in batches (COPY into a staging table, then one INSERT):
-- idempotent on (tag, ts), so a redelivered MQTT message stores nothing twice.
CREATE TABLE positions (
    tag_id           text NOT NULL,
    ts               timestamptz NOT NULL,
    child_id         bigint NOT NULL,
    lon              double precision NOT NULL,
    lat              double precision NOT NULL,
    acc              real NOT NULL,
    batt             smallint,
    seq              bigint,
    sos              boolean NOT NULL DEFAULT false,
    received_at      timestamptz NOT NULL,
    route_distance_m real,
    PRIMARY KEY (tag_id, ts)
);
CREATE INDEX positions_child_ts_idx ON positions (child_id, ts DESC);

-- Messages that decided nothing because they were bad: kept with the reason, never silently dropped.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at DESC);

-- The monitor's per-child state, checkpointed with the batch that changed it.
CREATE TABLE child_state (
    child_id    bigint PRIMARY KEY REFERENCES children (id) ON DELETE CASCADE,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    child_id         bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    zone_id          bigint REFERENCES danger_zones (id) ON DELETE SET NULL,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    resolved_at      timestamptz,
    acknowledged_at  timestamptz,
    acknowledged_by  bigint REFERENCES guardians (id) ON DELETE SET NULL,
    fix_count        integer NOT NULL DEFAULT 1,
    last_lon         double precision,
    last_lat         double precision,
    last_acc         real,
    last_fix_ts      timestamptz,
    fix_received_at  timestamptz,              -- when the deciding fix reached the tracker
    detail           jsonb NOT NULL DEFAULT '{}'
);
-- One incident, one alert: at most one open alert per child, kind and zone.
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (child_id, kind, coalesce(zone_id, 0)) WHERE state = 'open';
CREATE INDEX alerts_child_idx ON alerts (child_id, opened_at DESC);

-- The outbox: one row per (alert, transition, guardian, channel), written in the alert's transaction.
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    transition      text NOT NULL CHECK (transition IN ('opened', 'resolved')),
    guardian_id     bigint NOT NULL REFERENCES guardians (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('websocket', 'sms')),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'offline', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (alert_id, transition, guardian_id, channel)
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE state IN ('pending', 'sending');

-- What the SMS stub "sent": the demo's and the tests' phone.
CREATE TABLE sms_messages (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint REFERENCES deliveries (id) ON DELETE SET NULL,
    phone        text NOT NULL,
    body         text NOT NULL,
    provider     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Registry changes wake the tracker's index builder (LISTEN registry_changed).
CREATE FUNCTION notify_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registry_changed', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER schools_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON schools
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER zones_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON danger_zones
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER children_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON children
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER tags_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tags
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER guardians_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON guardians
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER child_guardians_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON child_guardians
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
