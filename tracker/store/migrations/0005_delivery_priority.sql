-- The dispatcher claims critical alerts' deliveries first, then warnings', then notices' (at the start
-- of a commute thousands of 'arrived' notices wait in the outbox; an SOS must not wait behind them).
-- The order is kept on the row, so that an index gives it: sorting the whole backlog by the alerts'
-- severity in every round of 200 cost time in the square of the backlog after an outage.
-- 0 critical, 1 warning, 2 info: see tracker/store/alert_lifecycle.py (_PRIORITY).
ALTER TABLE deliveries ADD COLUMN priority smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 2);
UPDATE deliveries d
   SET priority = CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END
  FROM alerts a
 WHERE a.id = d.alert_id AND d.state IN ('pending', 'sending');
CREATE INDEX deliveries_claim_idx ON deliveries (priority, next_attempt_at, id) WHERE state = 'pending';
