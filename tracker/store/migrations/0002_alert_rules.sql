-- Alert rules (issue 4): school fences, escalation contacts and webhooks, escalation state,
-- per-alert history, and deliveries to a school as well as to a guardian.
-- (Closed days, school windows, arrival times and danger-zone hours come with 0003, the registry API.)

ALTER TABLE schools
    ADD COLUMN fence_m        real NOT NULL DEFAULT 60 CHECK (fence_m > 0),  -- radius of the school's fence
    ADD COLUMN staff_phone    text,                           -- the duty phone escalations reach
    ADD COLUMN webhook_url    text,                           -- the school's own system (signed with HMAC)
    ADD COLUMN webhook_secret text;

ALTER TABLE alerts
    ADD COLUMN escalation_level   integer NOT NULL DEFAULT 0,  -- 0: first guardians; 1, 2..: next ones; then the school
    ADD COLUMN next_escalation_at timestamptz;                 -- NULL: does not escalate (info, acknowledged, resolved)
CREATE INDEX alerts_escalation_idx ON alerts (next_escalation_at) WHERE state = 'open' AND acknowledged_at IS NULL;

-- Every step of an alert: opened, updated, delivered, suppressed, escalated, acknowledged, resolved.
CREATE TABLE alert_history (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    step      text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_history_alert_idx ON alert_history (alert_id, id);

-- A delivery goes to a guardian or to a school (its duty phone, its webhook).
ALTER TABLE deliveries ALTER COLUMN guardian_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN school_id bigint REFERENCES schools (id) ON DELETE CASCADE;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_one_recipient
    CHECK ((guardian_id IS NULL) <> (school_id IS NULL));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check CHECK (channel IN ('websocket', 'sms', 'webhook'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'offline', 'failed', 'suppressed'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_transition_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_transition_check
    CHECK (transition IN ('opened', 'resolved', 'escalated'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_alert_id_transition_guardian_id_channel_key;
CREATE UNIQUE INDEX deliveries_once_idx
    ON deliveries (alert_id, transition, coalesce(guardian_id, 0), coalesce(school_id, 0), channel);
CREATE INDEX deliveries_recent_idx ON deliveries (guardian_id, channel, sent_at) WHERE state = 'sent';
