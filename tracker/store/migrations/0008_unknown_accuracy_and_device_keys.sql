-- Issue 19.3: phone apps as they send.

-- A fix whose sender stated no accuracy (the OwnTracks app leaves `acc` out when it is 0; the OsmAnd
-- app's URL template may have no `hdop`) is stored, not refused: its accuracy is NULL ("unknown"),
-- and the monitor lets it decide nothing about zones, routes or places (tracker.monitor.machine).
-- The native format still requires `acc`.
ALTER TABLE positions ALTER COLUMN acc DROP NOT NULL;

-- The key of an OwnTracks device that encrypts its payloads (the app's secret, cut or zero-padded to
-- the 32 bytes of a libsodium secretbox key, as the app does). It must be kept usable to decrypt, so
-- it cannot be hashed like a password: it is written through PUT /api/v1/tags/{id}/devices, read
-- only by the registry view that decodes, and never returned by the API.
ALTER TABLE tag_devices
    ADD COLUMN secret_key bytea
        CHECK (secret_key IS NULL OR (length(secret_key) = 32 AND protocol = 'owntracks'));
