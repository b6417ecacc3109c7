-- The job counters (sql/0058) are kept per tenant (issue #15, DESIGN invariant 11), so a tenant's stats and queue counts read its own few rows, whatever other tenants hold or did.
-- Each counter table gets a `tenant` (`default` for every row stored before: a column
-- default, so no table is rewritten), its key leads with the tenant, and the triggers
-- and the fold group by it: the jobs view's transition tables carry `jobs.tenant`, the
-- appended events `events.tenant`. A reader of one tenant reads that tenant's index
-- range and the unfolded deltas (a few hundred rows at most); the operator-wide
-- readers (/metrics, /health) sum over the tenants as before.
--
-- The counters are counted again from the view and the last day's events, by tenant:
-- jobs stored in another tenant since 0063 were counted as `default`'s. Appends wait
-- for the migration (`events` and `jobs` are locked against writes first, in the
-- order an append takes them; reads go on), so none is counted twice, lost, or
-- counted by the triggers' bodies of before.
LOCK TABLE events, jobs IN SHARE MODE;
LOCK TABLE job_throughput_deltas, job_count_deltas, job_counts, job_throughput
IN ACCESS EXCLUSIVE MODE;

ALTER TABLE job_counts ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE job_count_deltas ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE job_throughput ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE job_throughput_deltas ADD COLUMN tenant text NOT NULL DEFAULT 'default';

ALTER TABLE job_counts DROP CONSTRAINT job_counts_pkey;
ALTER TABLE job_counts ADD CONSTRAINT job_counts_pkey PRIMARY KEY (tenant, queue, status);
ALTER TABLE job_throughput DROP CONSTRAINT job_throughput_pkey;
ALTER TABLE job_throughput ADD CONSTRAINT job_throughput_pkey PRIMARY KEY (tenant, minute);

CREATE OR REPLACE FUNCTION job_counters_fold() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(7164857356) THEN
        RETURN;
    END IF;
    WITH gone AS (
        DELETE FROM job_count_deltas
        RETURNING tenant, queue, status, n
    )
    INSERT INTO job_counts AS c (tenant, queue, status, n)
    SELECT tenant, queue, status, sum(n)
    FROM gone
    GROUP BY tenant, queue, status
    ORDER BY tenant, queue, status
    ON CONFLICT (tenant, queue, status) DO UPDATE SET n = c.n + excluded.n;
    DELETE FROM job_counts WHERE n = 0;

    WITH gone AS (
        DELETE FROM job_throughput_deltas
        RETURNING tenant, minute, submitted, completed, failed
    )
    INSERT INTO job_throughput AS t (tenant, minute, submitted, completed, failed)
    SELECT tenant, minute, sum(submitted), sum(completed), sum(failed)
    FROM gone
    GROUP BY tenant, minute
    ORDER BY tenant, minute
    ON CONFLICT (tenant, minute) DO UPDATE
    SET submitted = t.submitted + excluded.submitted,
        completed = t.completed + excluded.completed,
        failed = t.failed + excluded.failed;
    DELETE FROM job_throughput WHERE minute < now() - interval '1 day';
END;
$$;

CREATE OR REPLACE FUNCTION job_counts_project() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_count_deltas (tenant, queue, status, n)
        SELECT tenant, queue, status, count(*)
        FROM after_rows
        GROUP BY tenant, queue, status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_count_deltas (tenant, queue, status, n)
        SELECT tenant, queue, status, -count(*)
        FROM before_rows
        GROUP BY tenant, queue, status;
    ELSE
        INSERT INTO job_count_deltas (tenant, queue, status, n)
        SELECT tenant, queue, status, sum(d)
        FROM (
            SELECT tenant, queue, status, -1 AS d FROM before_rows
            UNION ALL
            SELECT tenant, queue, status, 1 AS d FROM after_rows
        ) AS moves
        GROUP BY tenant, queue, status
        HAVING sum(d) <> 0;
    END IF;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION job_throughput_project() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    counted bigint;
BEGIN
    INSERT INTO job_throughput_deltas (tenant, minute, submitted, completed, failed)
    SELECT tenant,
           date_trunc('minute', occurred_at, 'UTC'),
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
    GROUP BY 1, 2;
    GET DIAGNOSTICS counted = ROW_COUNT;
    IF counted > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    RETURN NULL;
END;
$$;

DELETE FROM job_count_deltas;
DELETE FROM job_counts;
INSERT INTO job_counts (tenant, queue, status, n)
SELECT tenant, queue, status, count(*)
FROM jobs
GROUP BY tenant, queue, status;

DELETE FROM job_throughput_deltas;
DELETE FROM job_throughput;
INSERT INTO job_throughput (tenant, minute, submitted, completed, failed)
SELECT tenant,
       date_trunc('minute', occurred_at, 'UTC'),
       count(*) FILTER (WHERE type = 'job.submitted.v1'),
       count(*) FILTER (WHERE type = 'job.completed.v1'),
       count(*) FILTER (
           WHERE type = 'job.failed.v1'
              OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
       )
FROM events
WHERE occurred_at >= now() - interval '1 day'
GROUP BY 1, 2;
