-- Tenant isolation enforced by PostgreSQL (issue #15): row-level security on every
-- table that holds a tenant's data, FORCEd, so a route that forgets a filter still
-- cannot read or write another tenant's rows.
--
-- The application role (ledger_app) sees and writes only the rows of the tenant its
-- transaction names (`ledger.tenant`, set per transaction by acting.act_in, never per
-- session): `tenant = ledger_tenant_named()`. A transaction that names no tenant sees
-- no tenant row at all. Appending stays with events_append (SECURITY DEFINER, owned by
-- the migrating role, which must bypass row security: a superuser or BYPASSRLS); it
-- decides each event's tenant itself (sql/0063).
--
-- Workers act for every tenant (they claim whatever is due), and the operator's probes
-- (/health, /metrics) count every tenant. They do so through one role, ledger_dispatch:
-- NOLOGIN, no member, not BYPASSRLS. It owns the few SECURITY DEFINER functions below,
-- fixed bodies that claim, lease and count, and it has policies on exactly the tables
-- those bodies touch. It reads no event (only the tenant column, to list tenants), it
-- can lock but never change a jobs or queues row (the claimed event changes them,
-- through events_append), and the application cannot touch job_leases but through
-- these functions. worker_processes and schema_migrations hold no tenant data.
--
-- Old processes: stop them before migrating (their worker queries read job_leases and
-- join queues as the application role, which now sees none of it).

-- The migrating role owns the tables and events_append; row security must not bind it.
DO $$
BEGIN
    IF NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'the role that migrates (%) must be a superuser or have BYPASSRLS: '
            'it owns the tables, which row-level security binds from 0068 on', current_user;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_dispatch') THEN
        CREATE ROLE ledger_dispatch NOLOGIN NOINHERIT NOBYPASSRLS;
    END IF;
END
$$;
-- The migrating role hands functions to ledger_dispatch (a superuser may anyway).
GRANT ledger_dispatch TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO ledger_dispatch;

-- Row security on every tenant table; the application sees its transaction's tenant.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'events', 'jobs', 'queues', 'queue_buckets', 'queue_key_turns',
        'job_counts', 'job_count_deltas', 'job_throughput', 'job_throughput_deltas',
        'audit_checkpoints', 'audit_tree_nodes', 'audit_tree_marks', 'audit_tree_heads'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON %I TO ledger_app'
            ' USING (tenant = ledger_tenant_named())'
            ' WITH CHECK (tenant = ledger_tenant_named())',
            t || '_in_tenant', t);
    END LOOP;
END
$$;

-- The application writes the queue tables only through the claim (ledger_dispatch) and
-- the queues projection (under events_append); leases only through the functions below.
REVOKE INSERT, UPDATE, DELETE ON queues, queue_buckets, queue_key_turns FROM ledger_app;
REVOKE ALL ON job_leases FROM ledger_app;

-- What ledger_dispatch may do, table by table.
GRANT SELECT (tenant) ON events TO ledger_dispatch;
CREATE POLICY events_tenants_listed ON events FOR SELECT TO ledger_dispatch USING (true);

GRANT SELECT, UPDATE (status) ON jobs TO ledger_dispatch;
CREATE POLICY jobs_dispatched ON jobs FOR SELECT TO ledger_dispatch USING (true);
-- FOR UPDATE SKIP LOCKED needs the UPDATE privilege and policy; WITH CHECK (false):
-- it can lock a job, never change one.
CREATE POLICY jobs_locked_for_claim ON jobs FOR UPDATE TO ledger_dispatch
    USING (true) WITH CHECK (false);

GRANT SELECT, UPDATE (paused) ON queues TO ledger_dispatch;
CREATE POLICY queues_dispatched ON queues FOR SELECT TO ledger_dispatch USING (true);
CREATE POLICY queues_locked_for_claim ON queues FOR UPDATE TO ledger_dispatch
    USING (true) WITH CHECK (false);

GRANT SELECT, INSERT, UPDATE, DELETE ON queue_buckets, queue_key_turns TO ledger_dispatch;
CREATE POLICY queue_buckets_dispatched ON queue_buckets TO ledger_dispatch
    USING (true) WITH CHECK (true);
CREATE POLICY queue_key_turns_dispatched ON queue_key_turns TO ledger_dispatch
    USING (true) WITH CHECK (true);

GRANT SELECT ON job_counts, job_count_deltas TO ledger_dispatch;
CREATE POLICY job_counts_counted ON job_counts FOR SELECT TO ledger_dispatch USING (true);
CREATE POLICY job_count_deltas_counted ON job_count_deltas FOR SELECT TO ledger_dispatch
    USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON job_leases TO ledger_dispatch;
GRANT SELECT ON worker_processes TO ledger_dispatch;

-- The claim and its helpers run as ledger_dispatch.
GRANT EXECUTE ON FUNCTION jobs_claim_from_queue(queues, integer, text[]),
    jobs_due_in_group(text, text, text, text[], uuid[], integer, boolean),
    jobs_groups_of(text, text),
    jobs_queue_has_due(text, text, text[]),
    jobs_claimable(integer, text[]),
    jobs_claim_next(integer, text[]),
    jobs_next_due(text[], double precision),
    queue_buckets_tokens()
    TO ledger_dispatch;
ALTER FUNCTION jobs_claimable(integer, text[]) OWNER TO ledger_dispatch;
ALTER FUNCTION jobs_claim_next(integer, text[]) OWNER TO ledger_dispatch;
ALTER FUNCTION jobs_next_due(text[], double precision) OWNER TO ledger_dispatch;
ALTER FUNCTION queue_buckets_tokens() OWNER TO ledger_dispatch;

-- The claim with each job's queue settings version (the join the application made
-- itself before; it sees no queue row outside a tenant now).
CREATE FUNCTION jobs_claim(max_jobs integer, job_types text[])
RETURNS TABLE (job jobs, queue_version integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j, q.version
    FROM jobs_claim_next(max_jobs, job_types) AS j
    LEFT JOIN queues AS q
        ON q.tenant = j.tenant
       AND q.name = j.queue
$$;

-- Leases: an attempt's first renewal makes its row (the claim's lease is in its event).
CREATE FUNCTION job_leases_renew(worker text, seconds double precision, job_ids uuid[])
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO job_leases (job_id, worker_id, attempt, lease_until)
    SELECT j.job_id, j.worker_id, j.attempt, now() + make_interval(secs => seconds)
    FROM jobs AS j
    WHERE j.job_id = ANY(job_ids)
      AND j.worker_id = worker
      AND j.status = 'processing'
    ON CONFLICT (job_id) DO UPDATE
    SET worker_id = excluded.worker_id,
        attempt = excluded.attempt,
        lease_until = excluded.lease_until
$$;

-- Those attempts of the worker ended: their leases go with them.
CREATE FUNCTION job_leases_end(worker text, job_ids uuid[], attempts integer[])
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    DELETE FROM job_leases AS l
    USING unnest(job_ids, attempts) AS e (job_id, attempt)
    WHERE l.job_id = e.job_id
      AND l.attempt = e.attempt
      AND l.worker_id = worker
$$;

-- Leases left behind by attempts that ended some other way (expired, cancelled).
CREATE FUNCTION job_leases_prune()
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    DELETE FROM job_leases AS l
    WHERE NOT EXISTS (
        SELECT
        FROM jobs AS j
        WHERE j.job_id = l.job_id
          AND j.status = 'processing'
          AND j.worker_id = l.worker_id
          AND j.attempt = l.attempt
    )
$$;

-- Running attempts, of any tenant, whose lease ran out: neither the claim's lease nor
-- a renewal covers now (greatest ignores a missing renewal).
CREATE FUNCTION jobs_lease_expired(max_jobs integer)
RETURNS SETOF jobs
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j.*
    FROM jobs AS j
    LEFT JOIN job_leases AS l
        ON l.job_id = j.job_id
       AND l.worker_id = j.worker_id
       AND l.attempt = j.attempt
    WHERE j.status = 'processing'
      AND greatest(j.lease_until, l.lease_until) < now()
    ORDER BY j.lease_until
    LIMIT max_jobs
$$;

-- Of the given jobs, those the worker holds now, as they are (recording outcomes).
CREATE FUNCTION jobs_held_by(worker text, job_ids uuid[])
RETURNS SETOF jobs
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j.*
    FROM jobs AS j
    WHERE j.job_id = ANY(job_ids)
      AND j.worker_id = worker
      AND j.status = 'processing'
$$;

-- Of the attempts the worker runs, those it no longer holds (cancelled, expired, ...).
CREATE FUNCTION jobs_running_lost(worker text, job_ids uuid[], attempts integer[])
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT r.job_id
    FROM unnest(job_ids, attempts) AS r (job_id, attempt)
    LEFT JOIN jobs AS j
        ON j.job_id = r.job_id
    WHERE j.job_id IS NULL
       OR j.status <> 'processing'
       OR j.worker_id IS DISTINCT FROM worker
       OR j.attempt <> r.attempt
$$;

-- Live worker processes, their slots, and how many run a job now (metrics).
CREATE FUNCTION worker_slots_usage()
RETURNS TABLE (processes bigint, slots bigint, busy bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH live AS (
        SELECT worker_id, slots
        FROM worker_processes
        WHERE heartbeat_at > now() - make_interval(secs => lease_seconds)
    )
    SELECT (SELECT count(*) FROM live),
           (SELECT coalesce(sum(slots), 0) FROM live)::bigint,
           (SELECT count(*)
            FROM jobs AS j
            JOIN live AS l ON l.worker_id = j.worker_id
            WHERE j.status = 'processing')
$$;

-- Every tenant's jobs by queue and status from the counters (folded and not yet
-- folded): what the operator's /health and /metrics count, a few rows per tenant and
-- queue whatever the size of the ledger.
CREATE FUNCTION job_counts_all()
RETURNS TABLE (tenant text, queue text, status text, jobs bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT c.tenant, c.queue, c.status, sum(c.n)::bigint
    FROM (
        SELECT k.tenant, k.queue, k.status, k.n FROM job_counts AS k
        UNION ALL
        SELECT d.tenant, d.queue, d.status, d.n FROM job_count_deltas AS d
    ) AS c
    GROUP BY c.tenant, c.queue, c.status
    HAVING sum(c.n) <> 0
$$;

-- Every tenant's configured queues with their limits beside their runnable and
-- running jobs and, when rate-limited, their tokens now (the /metrics scrape).
CREATE FUNCTION queues_limits_all()
RETURNS TABLE (tenant text, name text, paused boolean, concurrency integer,
               rate_limit integer, runnable bigint, running bigint,
               tokens double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT q.tenant, q.name, q.paused, q.concurrency, q.rate_limit,
           coalesce(c.runnable, 0)::bigint,
           coalesce(c.running, 0)::bigint,
           b.tokens
    FROM queues AS q
    LEFT JOIN (
        SELECT a.tenant, a.queue,
               sum(a.jobs) FILTER (WHERE a.status IN ('pending', 'retrying')) AS runnable,
               sum(a.jobs) FILTER (WHERE a.status = 'processing') AS running
        FROM job_counts_all() AS a
        GROUP BY a.tenant, a.queue
    ) AS c ON c.tenant = q.tenant AND c.queue = q.name
    LEFT JOIN queue_buckets_tokens() AS b ON b.tenant = q.tenant AND b.queue = q.name
    ORDER BY q.tenant, q.name
$$;

-- The tenants that have events, by a skip scan of the tenant-first feed index (one
-- probe a tenant): the checkpoint scheduler visits each in turn.
CREATE FUNCTION ledger_tenants()
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH RECURSIVE tenants (tenant) AS (
        (SELECT e.tenant FROM events AS e ORDER BY e.tenant LIMIT 1)
        UNION ALL
        SELECT (SELECT e.tenant FROM events AS e WHERE e.tenant > t.tenant
                ORDER BY e.tenant LIMIT 1)
        FROM tenants AS t
        WHERE t.tenant IS NOT NULL
    )
    SELECT t.tenant FROM tenants AS t WHERE t.tenant IS NOT NULL
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'jobs_claim(integer, text[])',
        'job_leases_renew(text, double precision, uuid[])',
        'job_leases_end(text, uuid[], integer[])',
        'job_leases_prune()',
        'jobs_lease_expired(integer)',
        'jobs_held_by(text, uuid[])',
        'jobs_running_lost(text, uuid[], integer[])',
        'worker_slots_usage()',
        'job_counts_all()',
        'queues_limits_all()',
        'ledger_tenants()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ledger_dispatch', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO ledger_app', f);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION job_counts_all(), queue_buckets_tokens() TO ledger_dispatch;
