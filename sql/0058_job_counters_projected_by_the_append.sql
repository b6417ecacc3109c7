-- /health, /metrics and GET /api/v1/stats counted every job (or every recent event) on each request; jobs by queue and status and the per-minute throughput are now counters kept by the append itself, so those reads cost the same at any size (DESIGN invariant 11).
-- Replaces the reads of projections/queries.sql's jobs_count_runnable,
-- jobs_depth_by_queue_status, jobs_count_by_queue_status and events_throughput_by_minute.
--
-- Race-free without row locks: each statement that changes the jobs view only INSERTs
-- its net deltas (one row per (queue, status) that moved) into job_count_deltas, a
-- table with no unique key, so concurrent appenders never wait on one another and
-- cannot deadlock on a counter (a transaction may append in several statements, so
-- per-row upserts in key order would not be enough). A reader sums job_counts (one row
-- per queue and status) and the deltas not yet folded. Every 64th delta-writing
-- statement (read committed only) folds the deltas into job_counts, under a try-lock
-- (one folder at a time, none waits): the deltas it deletes are visible and deleted
-- only by it, so it never waits either. The deltas stay a few hundred rows at most.
--
-- The counts come from the jobs view's own row changes (statement triggers with
-- transition tables: -1 for the old (queue, status), +1 for the new), so they move in
-- the same statement as the view, whichever path wrote it (the set-based projection,
-- the per-event fold, a rebuild). The throughput (submitted, completed and failed for
-- good, per UTC minute, as events_throughput_by_minute counted them) comes from the
-- appended events, and keeps one day of minutes.
--
-- Only the append (running as the owner) and the owner's rebuild write these tables;
-- the application's role reads them.
CREATE TABLE job_counts (
    queue text NOT NULL,
    status text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (queue, status)
);

CREATE TABLE job_count_deltas (
    queue text NOT NULL,
    status text NOT NULL,
    n bigint NOT NULL
);

CREATE TABLE job_throughput (
    minute timestamptz PRIMARY KEY,
    submitted bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL
);

CREATE TABLE job_throughput_deltas (
    minute timestamptz NOT NULL,
    submitted bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL
);

-- Counts the statements that wrote deltas: every 64th folds them.
CREATE SEQUENCE job_counter_writes;

CREATE FUNCTION job_counters_fold() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(7164857356) THEN
        RETURN;
    END IF;
    WITH gone AS (
        DELETE FROM job_count_deltas
        RETURNING queue, status, n
    )
    INSERT INTO job_counts AS c (queue, status, n)
    SELECT queue, status, sum(n)
    FROM gone
    GROUP BY queue, status
    ORDER BY queue, status
    ON CONFLICT (queue, status) DO UPDATE SET n = c.n + excluded.n;
    DELETE FROM job_counts WHERE n = 0;

    WITH gone AS (
        DELETE FROM job_throughput_deltas
        RETURNING minute, submitted, completed, failed
    )
    INSERT INTO job_throughput AS t (minute, submitted, completed, failed)
    SELECT minute, sum(submitted), sum(completed), sum(failed)
    FROM gone
    GROUP BY minute
    ORDER BY minute
    ON CONFLICT (minute) DO UPDATE
    SET submitted = t.submitted + excluded.submitted,
        completed = t.completed + excluded.completed,
        failed = t.failed + excluded.failed;
    DELETE FROM job_throughput WHERE minute < now() - interval '1 day';
END;
$$;

CREATE FUNCTION job_counters_wrote() RETURNS void
LANGUAGE sql AS $$
    SELECT job_counters_fold()
    WHERE nextval('job_counter_writes') % 64 = 0
$$;

CREATE FUNCTION job_counts_project() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_count_deltas (queue, status, n)
        SELECT queue, status, count(*)
        FROM after_rows
        GROUP BY queue, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_count_deltas (queue, status, n)
        SELECT queue, status, -count(*)
        FROM before_rows
        GROUP BY queue, status;
    ELSE
        INSERT INTO job_count_deltas (queue, status, n)
        SELECT queue, status, sum(d)
        FROM (
            SELECT queue, status, -1 AS d FROM before_rows
            UNION ALL
            SELECT queue, status, 1 AS d FROM after_rows
        ) AS moves
        GROUP BY queue, status
        HAVING sum(d) <> 0;
    END IF;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_count_inserted
AFTER INSERT ON jobs
REFERENCING NEW TABLE AS after_rows
FOR EACH STATEMENT
EXECUTE FUNCTION job_counts_project();

CREATE TRIGGER jobs_count_updated
AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
FOR EACH STATEMENT
EXECUTE FUNCTION job_counts_project();

CREATE TRIGGER jobs_count_deleted
AFTER DELETE ON jobs
REFERENCING OLD TABLE AS before_rows
FOR EACH STATEMENT
EXECUTE FUNCTION job_counts_project();

-- Named to fire before events_project_jobs: every writer takes job_throughput_deltas,
-- then jobs, then job_count_deltas, the order the rebuild locks them in.
CREATE FUNCTION job_throughput_project() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    counted bigint;
BEGIN
    INSERT INTO job_throughput_deltas (minute, submitted, completed, failed)
    SELECT date_trunc('minute', occurred_at, 'UTC'),
           count(*) FILTER (WHERE type = 'job.submitted.v1'),
           count(*) FILTER (WHERE type = 'job.completed.v1'),
           count(*) FILTER (
               WHERE type = 'job.failed.v1'
                  OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
           )
    FROM appended
    WHERE type = 'job.submitted.v1'
       OR type = 'job.completed.v1'
       OR type = 'job.failed.v1'
       OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
    GROUP BY 1;
    GET DIAGNOSTICS counted = ROW_COUNT;
    IF counted > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_count_throughput
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION job_throughput_project();

-- The counters of the jobs that exist now: the view's own count, for a fresh database
-- and for one migrated with history.
INSERT INTO job_counts (queue, status, n)
SELECT queue, status, count(*)
FROM jobs
GROUP BY queue, status;

INSERT INTO job_throughput (minute, submitted, completed, failed)
SELECT date_trunc('minute', occurred_at, 'UTC'),
       count(*) FILTER (WHERE type = 'job.submitted.v1'),
       count(*) FILTER (WHERE type = 'job.completed.v1'),
       count(*) FILTER (
           WHERE type = 'job.failed.v1'
              OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
       )
FROM events
WHERE occurred_at >= now() - interval '1 day'
GROUP BY 1;

REVOKE ALL ON job_counts, job_count_deltas, job_throughput, job_throughput_deltas FROM ledger_app;
GRANT SELECT ON job_counts, job_count_deltas, job_throughput, job_throughput_deltas TO ledger_app;
REVOKE ALL ON SEQUENCE job_counter_writes FROM ledger_app;
REVOKE ALL ON FUNCTION job_counters_fold() FROM PUBLIC, ledger_app;
REVOKE ALL ON FUNCTION job_counters_wrote() FROM PUBLIC, ledger_app;
