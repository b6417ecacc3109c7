-- Fair shares across tenants, enforced in the claim (issue #15): a tenant's
-- `max_running` and `weight` (sql/0069) now bind every worker process.
--
-- `jobs_claim` (sql/0068) calls `jobs_claim_fair` instead of `jobs_claim_next`:
--
-- * One tenant (every deployment that never mentions tenants): a skip scan of the two
--   tenant-first group indexes, bounded at two tenants, finds at most one tenant with
--   runnable jobs; when that tenant has no `max_running`, today's claim runs as it was
--   (`jobs_claim_next`), nothing else read or written.
-- * Several tenants with runnable jobs, or a tenant with a `max_running`: each
--   tenant's room is `max_running` less its processing jobs, read from its counters
--   (job_counts + job_count_deltas, sql/0064: a few rows, never a count of jobs) under
--   a lock on its `tenants` row, taken in tenant order (so the claimers of a limited
--   tenant take turns and each counts what the previous ones committed, like a limited
--   queue's row lock). Its demand is how many of its jobs are due now (at most
--   max_jobs, by its group indexes). The claim's slots then go one at a time by stride
--   scheduling: to the tenant with the lowest pass (`tenant_turns`), whose pass grows
--   by 1/weight a slot, so under contention each tenant's share follows its weight.
--   A tenant returning from idle (or new) starts at most one pass behind the tenants
--   with jobs, so it gets no burst of credit, yet its first job goes in the next claim.
--   Each tenant's slots are claimed by `jobs_claim_next_in` (today's claim within one
--   tenant: its queues' limits and fairness as before), in tenant order; slots a
--   tenant leaves unused (its queues' limits, rows another claimer holds) go on to the
--   tenants after it, within their caps. The passes advance by the jobs each tenant
--   actually got (a turn another claimer is writing is left to that claimer).
--
-- ledger_dispatch (sql/0068) reads `tenants` and locks its rows (never changes one),
-- and keeps `tenant_turns`; the application's role reads its own tenant's turn only.

CREATE TABLE tenant_turns (
    tenant text PRIMARY KEY,
    pass double precision NOT NULL
);

-- The application's role reads its own tenant's turn (row-level security as on every
-- tenant table, sql/0068); only the claim writes them.
REVOKE ALL ON tenant_turns FROM PUBLIC;
REVOKE ALL ON tenant_turns FROM ledger_app;
GRANT SELECT ON tenant_turns TO ledger_app;
ALTER TABLE tenant_turns ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_turns FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_turns_in_tenant ON tenant_turns TO ledger_app
    USING (tenant = ledger_tenant_named())
    WITH CHECK (tenant = ledger_tenant_named());
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_turns TO ledger_dispatch;
CREATE POLICY tenant_turns_dispatched ON tenant_turns TO ledger_dispatch
    USING (true) WITH CHECK (true);

GRANT SELECT, UPDATE (max_running) ON tenants TO ledger_dispatch;
CREATE POLICY tenants_dispatched ON tenants FOR SELECT TO ledger_dispatch USING (true);
-- FOR UPDATE needs the UPDATE privilege and policy; WITH CHECK (false): lock, never change.
CREATE POLICY tenants_locked_for_claim ON tenants FOR UPDATE TO ledger_dispatch
    USING (true) WITH CHECK (false);

-- Today's claim (jobs_claim_next, sql/0059 as amended by sql/0062 and sql/0065) within
-- one tenant: its restricted queues under their locks, then the oldest due jobs of its
-- unrestricted groups.
CREATE FUNCTION jobs_claim_next_in(tenant_id text, max_jobs integer, job_types text[])
RETURNS SETOF jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    q queues;
    taken integer := 0;
    n integer;
    open_queues text[];
    keyed_queues text[];
BEGIN
    IF max_jobs <= 0 THEN
        RETURN;
    END IF;
    FOR q IN
        SELECT * FROM queues AS c
        WHERE c.tenant = tenant_id AND c.restricted AND NOT c.paused
          AND jobs_queue_has_due(c.tenant, c.name, job_types)
        ORDER BY c.tenant, c.name
    LOOP
        EXIT WHEN taken >= max_jobs;
        SELECT * INTO q FROM queues WHERE tenant = q.tenant AND name = q.name;
        CONTINUE WHEN NOT FOUND;
        IF q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL
           OR q.per_key_concurrency IS NOT NULL THEN
            SELECT * INTO q FROM queues WHERE tenant = q.tenant AND name = q.name FOR UPDATE;
            CONTINUE WHEN NOT FOUND;
        END IF;
        CONTINUE WHEN q.paused OR NOT q.restricted;
        RETURN QUERY SELECT * FROM jobs_claim_from_queue(q, max_jobs - taken, job_types);
        GET DIAGNOSTICS n = ROW_COUNT;
        taken := taken + n;
    END LOOP;
    IF taken >= max_jobs THEN
        RETURN;
    END IF;
    WITH RECURSIVE u (queue) AS (
        (SELECT queue FROM jobs
         WHERE tenant = tenant_id AND concurrency_key IS NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT queue FROM jobs
            WHERE tenant = tenant_id AND queue > u.queue AND concurrency_key IS NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    SELECT array_agg(u.queue) INTO open_queues FROM u
    WHERE NOT EXISTS (SELECT FROM queues AS r
                      WHERE r.tenant = tenant_id AND r.name = u.queue AND r.restricted);
    WITH RECURSIVE u (queue) AS (
        (SELECT queue FROM jobs
         WHERE tenant = tenant_id AND concurrency_key IS NOT NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT queue FROM jobs
            WHERE tenant = tenant_id AND queue > u.queue AND concurrency_key IS NOT NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    SELECT array_agg(u.queue) INTO keyed_queues FROM u
    WHERE NOT EXISTS (SELECT FROM queues AS r
                      WHERE r.tenant = tenant_id AND r.name = u.queue AND r.restricted);
    RETURN QUERY
    SELECT c.* FROM (
        SELECT o.*
        FROM unnest(coalesce(open_queues, '{}')) AS u (queue)
        CROSS JOIN LATERAL jobs_due_in_group(
            tenant_id, u.queue, NULL, job_types, '{}', max_jobs - taken, true) AS o
        UNION ALL
        SELECT k.* FROM (
            SELECT * FROM jobs
            WHERE keyed_queues IS NOT NULL
              AND tenant = tenant_id AND queue = ANY(keyed_queues)
              AND concurrency_key IS NOT NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
              AND run_at <= now() AND type = ANY(job_types)
            ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at
            LIMIT max_jobs - taken
            FOR UPDATE SKIP LOCKED
        ) AS k
    ) AS c
    ORDER BY c.run_at, c.priority, c.created_at
    LIMIT max_jobs - taken;
END;
$$;

-- How many of a tenant's jobs of these types are due now outside paused queues,
-- counting at most n (the claim's demand of that tenant; locks nothing, the queues'
-- other limits not applied).
CREATE FUNCTION jobs_tenant_due(tenant_id text, n integer, job_types text[])
RETURNS integer
LANGUAGE sql STABLE
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    WITH RECURSIVE u (queue) AS (
        (SELECT queue FROM jobs
         WHERE tenant = tenant_id AND concurrency_key IS NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT queue FROM jobs
            WHERE tenant = tenant_id AND queue > u.queue AND concurrency_key IS NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    SELECT least(n, (
        SELECT count(*) FROM (
            SELECT FROM u
            CROSS JOIN LATERAL (
                SELECT FROM jobs
                WHERE tenant = tenant_id AND queue = u.queue AND concurrency_key IS NULL
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                  AND run_at <= now() AND type = ANY(job_types)
                ORDER BY tenant, queue, run_at, priority, created_at
                LIMIT n
            ) AS d
            WHERE NOT EXISTS (SELECT FROM queues AS r
                              WHERE r.tenant = tenant_id AND r.name = u.queue AND r.paused)
            LIMIT n
        ) AS plain
    ) + (
        SELECT count(*) FROM (
            SELECT FROM jobs AS j
            WHERE j.tenant = tenant_id AND j.concurrency_key IS NOT NULL
              AND j.status NOT IN ('processing', 'completed', 'failed', 'cancelled')
              AND j.run_at <= now() AND j.type = ANY(job_types)
              AND NOT EXISTS (SELECT FROM queues AS r
                              WHERE r.tenant = tenant_id AND r.name = j.queue AND r.paused)
            LIMIT n
        ) AS keyed
    ))::integer
$$;

-- The claim, fair across tenants (see the top of this file).
CREATE FUNCTION jobs_claim_fair(max_jobs integer, job_types text[])
RETURNS SETOF jobs
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    few text[];
    names text[];
    weights integer[];
    limits integer[];
    passes double precision[];
    caps integer[];
    shares integer[];
    got integer[];
    front double precision;
    best integer;
    i integer;
    n integer;
    s integer;
    running bigint;
    room integer;
BEGIN
    -- At most two tenants with runnable jobs: a skip scan of each group index.
    WITH RECURSIVE p (tenant, k) AS (
        (SELECT tenant, 1 FROM jobs
         WHERE concurrency_key IS NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.tenant, p.k + 1
        FROM p CROSS JOIN LATERAL (
            SELECT tenant FROM jobs
            WHERE tenant > p.tenant AND concurrency_key IS NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
        ) AS x
        WHERE p.k < 2
    ), k (tenant, k) AS (
        (SELECT tenant, 1 FROM jobs
         WHERE concurrency_key IS NOT NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.tenant, k.k + 1
        FROM k CROSS JOIN LATERAL (
            SELECT tenant FROM jobs
            WHERE tenant > k.tenant AND concurrency_key IS NOT NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
        ) AS x
        WHERE k.k < 2
    )
    SELECT array_agg(DISTINCT t.tenant) INTO few
    FROM (SELECT tenant FROM p UNION ALL SELECT tenant FROM k) AS t;
    IF few IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(few) = 1
       AND NOT EXISTS (SELECT FROM tenants
                       WHERE tenant = few[1] AND max_running IS NOT NULL) THEN
        RETURN QUERY SELECT * FROM jobs_claim_next(max_jobs, job_types);
        RETURN;
    END IF;

    -- Every tenant with runnable jobs, in tenant order, with its settings.
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
    ), a (tenant) AS (
        SELECT DISTINCT tenant FROM (SELECT tenant FROM p UNION ALL SELECT tenant FROM k) AS u
    )
    SELECT array_agg(a.tenant ORDER BY a.tenant),
           array_agg(coalesce(t.weight, 1) ORDER BY a.tenant),
           array_agg(t.max_running ORDER BY a.tenant),
           array_agg(r.pass ORDER BY a.tenant)
    INTO names, weights, limits, passes
    FROM a
    LEFT JOIN tenants AS t ON t.tenant = a.tenant
    LEFT JOIN tenant_turns AS r ON r.tenant = a.tenant;

    -- Each tenant's cap: its due jobs, and its room under max_running (its row locked,
    -- in tenant order, the running count read after the lock).
    caps := array_fill(0, ARRAY[cardinality(names)]);
    FOR i IN 1 .. cardinality(names) LOOP
        n := jobs_tenant_due(names[i], max_jobs, job_types);
        IF n > 0 AND limits[i] IS NOT NULL THEN
            SELECT max_running INTO room FROM tenants WHERE tenant = names[i] FOR UPDATE;
            IF room IS NOT NULL THEN
                SELECT coalesce(sum(c.n), 0) INTO running
                FROM (
                    SELECT j.n FROM job_counts AS j
                    WHERE j.tenant = names[i] AND j.status = 'processing'
                    UNION ALL
                    SELECT d.n FROM job_count_deltas AS d
                    WHERE d.tenant = names[i] AND d.status = 'processing'
                ) AS c;
                n := least(n, greatest(0, room - running)::integer);
            END IF;
        END IF;
        caps[i] := n;
    END LOOP;

    -- No burst: every pass at least one behind the furthest (a new tenant at it).
    SELECT max(x) INTO front FROM unnest(passes) AS x;
    front := coalesce(front, 0);
    FOR i IN 1 .. cardinality(names) LOOP
        passes[i] := CASE WHEN passes[i] IS NULL THEN front
                          ELSE greatest(passes[i], front - 1) END;
    END LOOP;

    -- The slots one at a time to the lowest pass with room (ties: tenant order).
    shares := array_fill(0, ARRAY[cardinality(names)]);
    FOR s IN 1 .. max_jobs LOOP
        best := NULL;
        FOR i IN 1 .. cardinality(names) LOOP
            IF shares[i] < caps[i]
               AND (best IS NULL OR passes[i] + shares[i]::double precision / weights[i]
                                    < passes[best] + shares[best]::double precision / weights[best]) THEN
                best := i;
            END IF;
        END LOOP;
        EXIT WHEN best IS NULL;
        shares[best] := shares[best] + 1;
    END LOOP;

    -- Claimed in tenant order (the lock order of every claimer); the slots a tenant
    -- leaves unused (its queues' limits, rows other claimers hold) go on to the next
    -- ones, within their caps.
    got := array_fill(0, ARRAY[cardinality(names)]);
    s := 0;
    FOR i IN 1 .. cardinality(names) LOOP
        n := least(shares[i] + s, caps[i]);
        s := s + shares[i] - n;
        CONTINUE WHEN n = 0;
        RETURN QUERY SELECT * FROM jobs_claim_next_in(names[i], n, job_types);
        GET DIAGNOSTICS best = ROW_COUNT;
        got[i] := best;
        s := s + n - best;
    END LOOP;

    -- The passes advance by what each tenant got; a turn another claimer is writing
    -- is left to it.
    INSERT INTO tenant_turns (tenant, pass)
    SELECT u.tenant, u.pass
    FROM unnest(names, passes) AS u (tenant, pass)
    ORDER BY u.tenant
    ON CONFLICT (tenant) DO NOTHING;
    UPDATE tenant_turns AS r
    SET pass = u.pass + u.got::double precision / u.weight
    FROM unnest(names, passes, got, weights) AS u (tenant, pass, got, weight)
    WHERE r.tenant = u.tenant
      AND r.tenant IN (SELECT l.tenant FROM tenant_turns AS l
                       WHERE l.tenant = ANY(names) ORDER BY l.tenant FOR UPDATE SKIP LOCKED);
END;
$$;

ALTER FUNCTION jobs_claim_next_in(text, integer, text[]) OWNER TO ledger_dispatch;
ALTER FUNCTION jobs_tenant_due(text, integer, text[]) OWNER TO ledger_dispatch;
ALTER FUNCTION jobs_claim_fair(integer, text[]) OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION jobs_claim_next_in(text, integer, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_tenant_due(text, integer, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_claim_fair(integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_next_in(text, integer, text[]),
    jobs_tenant_due(text, integer, text[]),
    jobs_claim_fair(integer, text[])
    TO ledger_dispatch;

-- sql/0068's claim, fair across tenants, with each job's tenant settings version too
-- (NULL: a tenant without settings), recorded in its job.claimed.v1.
DROP FUNCTION jobs_claim(integer, text[]);
CREATE FUNCTION jobs_claim(max_jobs integer, job_types text[])
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j, q.version, t.version
    FROM jobs_claim_fair(max_jobs, job_types) AS j
    LEFT JOIN queues AS q
        ON q.tenant = j.tenant
       AND q.name = j.queue
    LEFT JOIN tenants AS t
        ON t.tenant = j.tenant
$$;

ALTER FUNCTION jobs_claim(integer, text[]) OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION jobs_claim(integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim(integer, text[]) TO ledger_app;
