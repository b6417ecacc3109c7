-- A claim for quiet tenants, into a worker's reserve of slots (issue #15: a quiet
-- tenant's latency beside another tenant's backlog).
--
-- While tenant A's backlog holds every slot of a worker, the fair claim (sql/0070)
-- gives tenant B a slot only when A's jobs free some, and the worker claims A's jobs in
-- cohorts: B's next job waits for the cohort to finish and for the next claim of a
-- full cohort. A worker with many slots keeps a few in reserve (workers.pool): the
-- bulk claim never fills them, and a NOTIFY that arrives while the bulk claim cannot
-- serve it claims into them through `jobs_claim_quiet` on a connection of its own.
--
-- `jobs_claim_quiet(max_jobs, job_types, quiet)` claims only jobs of quiet tenants:
-- those whose processing jobs (their counters, sql/0064: job_counts + job_count_deltas)
-- and due jobs together number at most `quiet` (the worker's reserve), so a tenant
-- with a backlog never gets a reserve slot, whether its jobs are running or between
-- two claims. Tenants in tenant order; within a tenant its jobs are claimed as in the
-- fair claim (`jobs_claim_next_in`: its queues' pauses, limits and fairness); a
-- tenant's `max_running` is checked under its row's lock, as there; its stride pass
-- (`tenant_turns`) advances by the jobs it got, unless another claimer is writing it.

CREATE FUNCTION jobs_claim_quiet_tenants(max_jobs integer, job_types text[], quiet integer)
RETURNS SETOF jobs
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    t text;
    taken integer := 0;
    n integer;
    running bigint;
    due integer;
    room integer;
    w integer;
BEGIN
    IF max_jobs <= 0 THEN
        RETURN;
    END IF;
    FOR t IN
        WITH RECURSIVE p (tenant) AS (
            (SELECT tenant FROM jobs
             WHERE concurrency_key IS NULL
               AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
             ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1)
            UNION ALL
            SELECT x.tenant
            FROM p CROSS JOIN LATERAL (
                SELECT tenant FROM jobs
                WHERE tenant > p.tenant AND concurrency_key IS NULL
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
            ) AS x
        ), k (tenant) AS (
            (SELECT tenant FROM jobs
             WHERE concurrency_key IS NOT NULL
               AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
             ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1)
            UNION ALL
            SELECT x.tenant
            FROM k CROSS JOIN LATERAL (
                SELECT tenant FROM jobs
                WHERE tenant > k.tenant AND concurrency_key IS NOT NULL
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
            ) AS x
        )
        SELECT DISTINCT u.tenant FROM (SELECT tenant FROM p UNION ALL SELECT tenant FROM k) AS u
        ORDER BY u.tenant
    LOOP
        EXIT WHEN taken >= max_jobs;
        due := jobs_tenant_due(t, quiet + 1, job_types);
        CONTINUE WHEN due = 0 OR due > quiet;
        SELECT max_running, weight INTO room, w FROM tenants WHERE tenant = t;
        IF room IS NOT NULL THEN
            SELECT max_running INTO room FROM tenants WHERE tenant = t FOR UPDATE;
            SELECT coalesce(sum(c.n), 0) INTO running
            FROM (
                SELECT j.n FROM job_counts AS j WHERE j.tenant = t AND j.status = 'processing'
                UNION ALL
                SELECT d.n FROM job_count_deltas AS d
                WHERE d.tenant = t AND d.status = 'processing'
            ) AS c;
            CONTINUE WHEN room IS NOT NULL AND running >= room;
        END IF;
        RETURN QUERY SELECT * FROM jobs_claim_next_in(
            t, least(max_jobs - taken, due, coalesce(room - running, due))::integer, job_types);
        GET DIAGNOSTICS n = ROW_COUNT;
        CONTINUE WHEN n = 0;
        taken := taken + n;
        UPDATE tenant_turns AS r
        SET pass = r.pass + n::double precision / coalesce(w, 1)
        WHERE r.tenant = t
          AND r.tenant IN (SELECT l.tenant FROM tenant_turns AS l
                           WHERE l.tenant = t FOR UPDATE SKIP LOCKED);
    END LOOP;
END;
$$;

-- The quiet tenants' claim with each job's queue and tenant settings versions, like
-- `jobs_claim` (sql/0070).
CREATE FUNCTION jobs_claim_quiet(max_jobs integer, job_types text[], quiet integer)
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j, q.version, t.version
    FROM jobs_claim_quiet_tenants(max_jobs, job_types, quiet) AS j
    LEFT JOIN queues AS q
        ON q.tenant = j.tenant
       AND q.name = j.queue
    LEFT JOIN tenants AS t
        ON t.tenant = j.tenant
$$;

ALTER FUNCTION jobs_claim_quiet_tenants(integer, text[], integer) OWNER TO ledger_dispatch;
ALTER FUNCTION jobs_claim_quiet(integer, text[], integer) OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION jobs_claim_quiet_tenants(integer, text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_claim_quiet(integer, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_quiet_tenants(integer, text[], integer) TO ledger_dispatch;
GRANT EXECUTE ON FUNCTION jobs_claim_quiet(integer, text[], integer) TO ledger_app;

-- Room freed in a restricted queue (sql/0065) rings `ledger_jobs` with the payload
-- 'room' instead of '' (submissions and retries due keep ''), so a worker does not
-- claim into its reserve for every outcome of a limited or round-robin queue: room
-- freed is the bulk claim's to fill. Older workers ignore the payload. Only the
-- payload changed from sql/0065's definition.
CREATE OR REPLACE FUNCTION jobs_notify_room() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM queues WHERE restricted) AND EXISTS (
        SELECT FROM before_rows AS o
        JOIN after_rows AS n ON n.job_id = o.job_id
        JOIN queues AS q ON q.tenant = o.tenant AND q.name = o.queue
        WHERE o.status = 'processing' AND n.status <> 'processing' AND q.restricted
    ) THEN
        PERFORM pg_notify('ledger_jobs', 'room');
    END IF;
    RETURN NULL;
END;
$$;
