-- Web Push (issue 17): a guardian's browsers subscribed to the service's push messages, the service's
-- VAPID key pair (RFC 8292) when it is kept here rather than in TRACKER_VAPID_KEY_FILE, and 'push' as
-- a delivery channel beside the websocket, SMS and the school's webhook.

-- One row per browser (its push service's endpoint is unique to it). A browser whose subscription is
-- posted by another guardian (a shared tablet, signed in by the other parent) moves to that guardian:
-- it is told what its last signed-in guardian is told, never both. A browser is told only while the
-- sign-in (token) that subscribed it is valid: a revoked or expired token silences it.
CREATE TABLE push_subscriptions (
    id               bigserial PRIMARY KEY,
    guardian_id      bigint NOT NULL REFERENCES guardians (id) ON DELETE CASCADE,
    token_id         bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    endpoint         text NOT NULL UNIQUE CHECK (length(endpoint) <= 2048),
    p256dh           text NOT NULL,              -- the browser's P-256 public key, base64url (RFC 8291)
    auth             text NOT NULL,              -- its 16-byte authentication secret, base64url
    vapid_public_key text NOT NULL,              -- the service key it was made with; another one cannot use it
    user_agent       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_success_at  timestamptz,
    last_failure_at  timestamptz,
    last_error       text
);
CREATE INDEX push_subscriptions_guardian_idx ON push_subscriptions (guardian_id);

-- The service's VAPID key pair: made once, by whichever tracker process starts first (one row). The
-- private key is a PKCS#8 PEM; the public key the uncompressed P-256 point, base64url, as browsers take
-- it (applicationServerKey). A new key pair makes every subscription useless (docs/operations.md).
CREATE TABLE vapid_keys (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    private_pem text NOT NULL,
    public_key  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('websocket', 'sms', 'webhook', 'push'));
