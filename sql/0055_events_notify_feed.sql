-- The live feed (GET /api/v1/events/stream) is woken by a NOTIFY when events are appended instead of polling every 0.5 s: a wake-up only, never data.
-- One notification per INSERT statement, not per row, with an empty payload, so
-- PostgreSQL folds all of one transaction's notifications into one, delivered after
-- its commit. Readers still read only below the snapshot's xmin (DESIGN.md invariant 5):
-- the notification says "look again", never what to read.
CREATE FUNCTION events_notify_feed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ledger_feed', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_feed
AFTER INSERT ON events
FOR EACH STATEMENT
EXECUTE FUNCTION events_notify_feed();
