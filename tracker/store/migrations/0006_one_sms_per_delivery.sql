-- One SMS record per delivery, held by the database whatever is killed when. A delivery that a killed
-- tracker left 'sending' is sent again after the restart (tracker.store.alerts.release_stuck_deliveries:
-- never missed); the SMS providers record a message with ON CONFLICT (delivery_id) DO NOTHING, so a
-- delivery whose message was recorded before the kill gets no second row (the stub: no second
-- message at all), and the apprise provider reads the record before it calls its gateway (see
-- tracker/alerts/channels.py). NULLs stay allowed: a deleted delivery leaves its messages unlinked.
--
-- Records that a crash duplicated before this migration stay in the table (they say what a phone was
-- sent), unlinked from their delivery like a deleted delivery's: the earliest keeps the link.
UPDATE sms_messages s
   SET delivery_id = NULL
 WHERE EXISTS (SELECT 1 FROM sms_messages t WHERE t.delivery_id = s.delivery_id AND t.id < s.id);
ALTER TABLE sms_messages ADD CONSTRAINT sms_messages_one_per_delivery UNIQUE (delivery_id);
