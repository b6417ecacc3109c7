-- Schedules (issue #17): a schedule is an event stream like a queue's (sql/0059) and each of its slots' outcomes is an event of that stream, so the database decides that a slot is recorded once, whatever number of processes race to record it.
-- A schedule's events (`schedule.*`, ledger/events.py; the `job_id` column holds the
-- stream id, ledger/schedules.py `stream_id` of the tenant and the schedule id) are
-- appended in its tenant: hash-chained, in the feed, covered by checkpoints. The append
-- projects them into `schedules` (its current state) and `schedule_slots` (one row per
-- recorded slot outcome; a skipped run of slots, e.g. a downtime longer than the
-- catch-up window, is one event and one row: every slot from `slot` up to its
-- `next_slot`). Slot events carry the schedule's next slot (computed from its
-- cron or interval by the process that records it), and the projection refuses a slot
-- event for any other slot than the schedule's next one (or its oldest buffered one):
-- the slots are recorded in order, none twice (and UNIQUE (tenant, schedule_id, slot)
-- guards that too). Two processes racing to record one slot append the same stream
-- version: one wins, the other gets a VersionConflict.
--
-- Processes that fire schedules act in no tenant: they list the due schedules of every
-- tenant through `schedules_due` and their earliest next slot through
-- `schedules_next_slot` (SECURITY DEFINER, owned by ledger_dispatch, sql/0068), then act
-- in each schedule's tenant to record its slots. A change of a schedule NOTIFYs
-- `ledger_schedules` (no payload: only a wake-up call).

CREATE TABLE schedules (
    tenant text NOT NULL,
    schedule_id text NOT NULL CHECK (schedule_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL CHECK (version >= 1),
    spec jsonb NOT NULL,
    paused boolean NOT NULL,
    note text,
    deleted boolean NOT NULL,
    next_slot timestamptz,
    last_slot timestamptz,
    last_job_id uuid,
    buffered timestamptz[] NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, schedule_id)
);

CREATE INDEX schedules_next_slot ON schedules (next_slot)
    WHERE NOT deleted AND NOT paused AND next_slot IS NOT NULL;
CREATE INDEX schedules_buffering ON schedules (tenant, schedule_id)
    WHERE NOT deleted AND cardinality(buffered) > 0;

CREATE TABLE schedule_slots (
    tenant text NOT NULL,
    schedule_id text NOT NULL,
    slot timestamptz NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('fired', 'skipped', 'buffered')),
    reason text,
    until timestamptz,     -- skipped: every slot from `slot` up to (not with) this one
    job_id uuid,
    version integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    CONSTRAINT schedule_slots_once UNIQUE (tenant, schedule_id, slot)
);

-- Written only by the append's projection; the app role reads its own tenant's rows.
REVOKE ALL ON schedules, schedule_slots FROM ledger_app;
GRANT SELECT ON schedules, schedule_slots TO ledger_app;
ALTER TABLE schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY schedules_in_tenant ON schedules TO ledger_app
    USING (tenant = ledger_tenant_named())
    WITH CHECK (tenant = ledger_tenant_named());
ALTER TABLE schedule_slots ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedule_slots FORCE ROW LEVEL SECURITY;
CREATE POLICY schedule_slots_in_tenant ON schedule_slots TO ledger_app
    USING (tenant = ledger_tenant_named())
    WITH CHECK (tenant = ledger_tenant_named());

GRANT SELECT ON schedules TO ledger_dispatch;
CREATE POLICY schedules_dispatched ON schedules FOR SELECT TO ledger_dispatch USING (true);

-- One fold step of a schedule (the same rule as ledger.schedules.evolve).
CREATE FUNCTION schedule_view_step(s schedules, e events) RETURNS schedules
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n schedules := s;
    slot timestamptz := (e.data->>'slot')::timestamptz;
BEGIN
    IF s.schedule_id IS NULL AND e.type <> 'schedule.created.v1' THEN
        RAISE EXCEPTION 'event % for schedule stream % before its creation', e.type, e.job_id;
    END IF;
    IF e.type <> 'schedule.created.v1' AND s.deleted THEN
        RAISE EXCEPTION 'event % for deleted schedule %', e.type, s.schedule_id;
    END IF;
    n.version := e.version;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    CASE e.type
    WHEN 'schedule.created.v1' THEN
        IF s.schedule_id IS NOT NULL AND NOT s.deleted THEN
            RAISE EXCEPTION 'schedule % exists', s.schedule_id;
        END IF;
        n.tenant := e.tenant;
        n.schedule_id := e.data->>'schedule_id';
        n.stream_id := e.job_id;
        n.spec := e.data->'spec';
        n.paused := (e.data->>'paused')::boolean;
        n.note := e.data->>'note';
        n.deleted := false;
        n.next_slot := (e.data->>'next_slot')::timestamptz;
        n.last_job_id := NULL;
        n.buffered := '{}';
        n.created_by := e.actor;
        n.created_at := e.occurred_at;
    WHEN 'schedule.updated.v1' THEN
        n.spec := e.data->'spec';
        n.next_slot := (e.data->>'next_slot')::timestamptz;
    WHEN 'schedule.paused.v1' THEN
        n.paused := true;
        n.note := e.data->>'note';
    WHEN 'schedule.resumed.v1' THEN
        n.paused := false;
        n.note := e.data->>'note';
    WHEN 'schedule.deleted.v1' THEN
        n.deleted := true;
        n.note := e.data->>'note';
        n.buffered := '{}';
    WHEN 'schedule.triggered.v1' THEN
        n.last_job_id := (e.data->>'job')::uuid;
    WHEN 'schedule.backfilled.v1' THEN
        n.last_job_id := coalesce((e.data->>'last_job')::uuid, s.last_job_id);
    WHEN 'schedule.slot_fired.v1' THEN
        IF cardinality(s.buffered) > 0 AND slot = s.buffered[1] THEN
            n.buffered := s.buffered[2:];
        ELSIF slot IS DISTINCT FROM s.next_slot THEN
            RAISE EXCEPTION 'schedule % slot % recorded out of order (next is %)',
                s.schedule_id, slot, s.next_slot USING ERRCODE = 'LQ409';
        ELSE
            n.last_slot := slot;
            n.next_slot := (e.data->>'next_slot')::timestamptz;
        END IF;
        n.last_job_id := (e.data->>'job')::uuid;
    WHEN 'schedule.slot_buffered.v1', 'schedule.slot_skipped.v1' THEN
        IF slot IS DISTINCT FROM s.next_slot THEN
            RAISE EXCEPTION 'schedule % slot % recorded out of order (next is %)',
                s.schedule_id, slot, s.next_slot USING ERRCODE = 'LQ409';
        END IF;
        n.last_slot := slot;
        n.next_slot := (e.data->>'next_slot')::timestamptz;
        IF e.type = 'schedule.slot_buffered.v1' THEN
            n.buffered := s.buffered || slot;
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown event type % (schedule stream %)', e.type, e.job_id;
    END CASE;
    RETURN n;
END;
$$;

CREATE AGGREGATE schedule_view_fold(events) (
    SFUNC = schedule_view_step,
    STYPE = schedules
);

-- Projects the statement's schedule events into `schedules` and `schedule_slots`, in order.
CREATE FUNCTION schedules_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e events;
    s schedules;
    changed boolean := false;
BEGIN
    FOR e IN SELECT * FROM appended WHERE type LIKE 'schedule.%' ORDER BY position LOOP
        SELECT * INTO s FROM schedules WHERE stream_id = e.job_id FOR UPDATE;
        IF NOT FOUND THEN
            s := NULL;
        END IF;
        s := schedule_view_step(s, e);
        INSERT INTO schedules SELECT s.*
        ON CONFLICT (tenant, schedule_id) DO UPDATE
        SET version = excluded.version, spec = excluded.spec, paused = excluded.paused,
            note = excluded.note, deleted = excluded.deleted, next_slot = excluded.next_slot,
            last_slot = excluded.last_slot, last_job_id = excluded.last_job_id,
            buffered = excluded.buffered, created_by = excluded.created_by,
            created_at = excluded.created_at, updated_by = excluded.updated_by,
            updated_at = excluded.updated_at;
        CASE e.type
        WHEN 'schedule.slot_fired.v1' THEN
            INSERT INTO schedule_slots (tenant, schedule_id, slot, outcome, job_id, version,
                                        recorded_at)
            VALUES (s.tenant, s.schedule_id, (e.data->>'slot')::timestamptz, 'fired',
                    (e.data->>'job')::uuid, e.version, e.occurred_at)
            ON CONFLICT ON CONSTRAINT schedule_slots_once DO UPDATE
            SET outcome = 'fired', job_id = excluded.job_id, version = excluded.version,
                recorded_at = excluded.recorded_at
            WHERE schedule_slots.outcome = 'buffered';
        WHEN 'schedule.slot_skipped.v1', 'schedule.slot_buffered.v1' THEN
            INSERT INTO schedule_slots (tenant, schedule_id, slot, outcome, reason, until,
                                        version, recorded_at)
            VALUES (s.tenant, s.schedule_id, (e.data->>'slot')::timestamptz,
                    CASE WHEN e.type = 'schedule.slot_skipped.v1' THEN 'skipped'
                         ELSE 'buffered' END,
                    e.data->>'reason',
                    CASE WHEN e.type = 'schedule.slot_skipped.v1'
                         THEN (e.data->>'next_slot')::timestamptz END,
                    e.version, e.occurred_at);
        ELSE
            changed := true;
        END CASE;
    END LOOP;
    IF changed THEN
        PERFORM pg_notify('ledger_schedules', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_project_schedules
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION schedules_project_appended();

-- The schedules of every tenant with a slot due at `now` (or a buffered slot waiting on
-- its previous job), earliest first, for the processes that fire them.
CREATE FUNCTION schedules_due(now timestamptz, max_schedules integer)
RETURNS TABLE (tenant text, schedule_id text, next_slot timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT d.tenant, d.schedule_id, d.next_slot
    FROM (
        (SELECT s.tenant, s.schedule_id, s.next_slot
         FROM schedules AS s
         WHERE NOT s.deleted AND NOT s.paused AND s.next_slot <= now
         ORDER BY s.next_slot
         LIMIT max_schedules)
        UNION
        (SELECT s.tenant, s.schedule_id, s.next_slot
         FROM schedules AS s
         WHERE NOT s.deleted AND cardinality(s.buffered) > 0
         LIMIT max_schedules)
    ) AS d
    ORDER BY d.next_slot NULLS LAST
    LIMIT max_schedules
$$;

-- The earliest next slot of every tenant's live schedules (the alarm clock's next time).
CREATE FUNCTION schedules_next_slot()
RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT min(next_slot)
    FROM schedules
    WHERE NOT deleted AND NOT paused AND next_slot IS NOT NULL
$$;

ALTER FUNCTION schedules_due(timestamptz, integer) OWNER TO ledger_dispatch;
ALTER FUNCTION schedules_next_slot() OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION schedules_due(timestamptz, integer), schedules_next_slot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION schedules_due(timestamptz, integer), schedules_next_slot()
    TO ledger_app;
