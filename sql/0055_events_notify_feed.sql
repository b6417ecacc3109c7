-- The live feed (GET /api/v1/events/stream) is woken by a NOTIFY when events are appended instead of polling every 0.5 s: a wake-up only, never data.
-- One notification per INSERT statement, not per row, with an empty payload, so
-- PostgreSQL folds all of one transaction's notifications into one, delivered after
-- its commit. Readers still read only below the snapshot's xmin (DESIGN.md invariant 5):
-- the notification says "look again", never what to read.
--
-- Only while someone follows the feed: an API process with live readers holds advisory
-- lock 7164857355 in share mode (projections.live), so the exclusive try fails and the
-- append notifies; with no reader anywhere it succeeds, is released at once, and the
-- append skips the NOTIFY, whose commit-time lock and wake-ups of every listening
-- backend cost the workers' claims and outcomes measurably (BENCHMARKS.md).
CREATE FUNCTION events_notify_feed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_try_advisory_lock(7164857355) THEN
        PERFORM pg_advisory_unlock(7164857355);
    ELSE
        PERFORM pg_notify('ledger_feed', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_feed
AFTER INSERT ON events
FOR EACH STATEMENT
EXECUTE FUNCTION events_notify_feed();
