-- Issue 8: phone apps and other devices as tags, and broker credentials of RFID readers.

-- A device identity in a protocol that is not the native one, mapped to the registered tag it speaks
-- for: OwnTracks ('owntracks', 'user/device') and Traccar Client / OsmAnd ('osmand', its id). An
-- identity that is not here is refused (counted and dead-lettered), never created on the fly.
CREATE TABLE tag_devices (
    protocol    text NOT NULL CHECK (protocol IN ('owntracks', 'osmand')),
    device      text NOT NULL CHECK (length(device) BETWEEN 1 AND 200),
    tag_id      text NOT NULL REFERENCES tags (id) ON DELETE CASCADE ON UPDATE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (protocol, device)
);
CREATE INDEX tag_devices_tag_idx ON tag_devices (tag_id);
CREATE TRIGGER tag_devices_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tag_devices
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();

-- RFID readers publish to the broker too: their MQTT password, kept only as a Mosquitto $7$ hash
-- (`tracker broker-config` writes it into the broker's password file; the username is the reader id).
ALTER TABLE readers
    ADD COLUMN mqtt_password_hash text;
