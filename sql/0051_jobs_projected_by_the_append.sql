-- The current-state view is projected by the database inside the very INSERT that appends the events: a round trip less per append, and no writer can append events without their state (invariant 2 held by the database, not by each caller).
-- Until now the event store ran a second statement after each insert (the JobView
-- projection). This statement-level trigger does the same set-based work over the
-- statement's new rows: first events become new rows, later events (at most one per
-- job in a statement, as the store appends them) are folded into theirs, each by the
-- same job_view_evolve the rebuilds use. A statement holding several events of one job
-- is applied one event at a time, in position order. A later event whose job has no
-- row fails with the fold's own error, and the whole append with it.
CREATE FUNCTION jobs_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    later bigint;
    applied bigint;
BEGIN
    IF EXISTS (
        SELECT FROM appended GROUP BY job_id HAVING count(*) > 1
    ) THEN
        PERFORM job_view_apply(e::events) FROM (SELECT * FROM appended ORDER BY position) AS e;
        RETURN NULL;
    END IF;

    INSERT INTO jobs
    SELECT s.*
    FROM appended AS e
    CROSS JOIN LATERAL job_view_evolve(NULL::jobs, e::events) AS s
    WHERE e.version = 1;

    SELECT count(*) INTO later FROM appended WHERE version > 1;
    IF later = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE jobs AS j
    SET (version, type, queue, priority, status, payload, result, error, attempt,
         max_attempts, timeout_seconds, backoff_base_seconds, backoff_cap_seconds, run_at,
         worker_id, lease_until, idempotency_key, replay_of, submitted_by, created_at,
         updated_at, started_at, completed_at)
      = (SELECT s.version, s.type, s.queue, s.priority, s.status, s.payload, s.result,
                s.error, s.attempt, s.max_attempts, s.timeout_seconds,
                s.backoff_base_seconds, s.backoff_cap_seconds, s.run_at, s.worker_id,
                s.lease_until, s.idempotency_key, s.replay_of, s.submitted_by,
                s.created_at, s.updated_at, s.started_at, s.completed_at
         FROM job_view_evolve(j, e::events) AS s)
    FROM appended AS e
    WHERE e.version > 1
      AND j.job_id = e.job_id;
    GET DIAGNOSTICS applied = ROW_COUNT;
    IF applied < later THEN
        -- Some later event's job has no row: the per-row fold raises its error for it.
        PERFORM job_view_apply(e::events)
        FROM appended AS e
        WHERE e.version > 1
          AND NOT EXISTS (SELECT FROM jobs AS j WHERE j.job_id = e.job_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_project_jobs
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION jobs_project_appended();
