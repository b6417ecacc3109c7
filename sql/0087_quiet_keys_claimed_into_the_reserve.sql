-- A quiet concurrency key's job is claimed into a worker's reserve, as a quiet tenant's is.
--
-- In a round-robin queue (sql/0059) a key with 50,000 queued jobs fills every bulk
-- claim's slots: another key's next job is first in the next round, but waits for a
-- slot and for that round (on the 2-core machine of 2026-12-01, p99 159-209 ms beside
-- the backlog, BENCHMARKS.md). The tenants' reserve (sql/0079) does not help: both
-- keys are one tenant, and a tenant with a backlog is not quiet. Now:
--
-- * The doorbell names the key. A statement that makes runnable jobs of at most eight
--   keys of round-robin queues rings `key:["<tenant>","<queue>","<key>"]` for each
--   (a JSON array: any text in any part) and `tenant:<id>` for its other jobs' tenants;
--   more keys than that, or a payload that would not fit, ring as before. Older workers
--   take a payload they do not know as the plain doorbell.
-- * `jobs_claim_quiet_key(tenant, queue, key, max_jobs, job_types, quiet)` claims that
--   key's due jobs when they number at most `quiet` (the worker's reserve), within every
--   limit a bulk claim keeps: the queue's pause, `concurrency`, `rate_limit` and
--   `per_key_concurrency` (the same code: `jobs_claim_from_queue` with `only_key`), the
--   tenant's `max_running`, its pass in the tenants' turns, the key's turn in the queue.
--   A key of a queue that is not round-robin has no reserve of its own (FIFO order
--   holds): the tenant's quiet claim is tried instead, as for `tenant:`.
-- * `jobs_claim_recorded` takes the queue and key (an overload; the old signature
--   calls it, for workers not yet replaced).
-- * `jobs_claim_from_queue` counts each key's running jobs only when the queue has a
--   `per_key_concurrency` (before, every claim of a limited or round-robin queue
--   counted them: a walk over the queue's running jobs that decided nothing without
--   that limit).

CREATE FUNCTION jobs_claim_from_queue(q queues, room integer, job_types text[], only_key text)
RETURNS SETOF jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    running integer;
    b queue_buckets;
    since timestamptz;
    at timestamptz := clock_timestamp();
    keys text[];
    allowance integer[];
    taken uuid[] := '{}';
    j jobs;
    i integer;
    n integer;
    active integer[];
    progress boolean;
    served text[] := '{}';
BEGIN
    IF q.concurrency IS NOT NULL THEN
        SELECT count(*) INTO running FROM jobs
        WHERE status = 'processing' AND tenant = q.tenant AND queue = q.name;
        room := least(room, q.concurrency - running);
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        SELECT * INTO b FROM queue_buckets WHERE tenant = q.tenant AND queue = q.name;
        IF NOT FOUND THEN
            b.tenant := q.tenant;
            b.queue := q.name;
            b.tokens := q.rate_burst;
            b.refilled_at := at;
            b.last_claimed := '{}';
        ELSE
            -- Refilled from the recorded claim time of the last claim's jobs (later
            -- than its clock), so the limit holds on the times the ledger shows.
            SELECT greatest(b.refilled_at, max(started_at)) INTO since
            FROM jobs WHERE job_id = ANY(b.last_claimed);
            b.tokens := least(q.rate_burst::double precision,
                              b.tokens + greatest(0, extract(epoch FROM at - coalesce(since, b.refilled_at)))
                                         * q.rate_limit / q.rate_period_seconds);
        END IF;
        room := least(room, floor(b.tokens)::integer);
    END IF;
    IF room > 0 THEN
        SELECT array_agg(g.key ORDER BY t.served_at NULLS FIRST, g.key NULLS FIRST),
               array_agg(coalesce(q.per_key_concurrency - coalesce(r.n, 0), room)
                         ORDER BY t.served_at NULLS FIRST, g.key NULLS FIRST)
        INTO keys, allowance
        FROM unnest(CASE WHEN only_key IS NULL THEN jobs_groups_of(q.tenant, q.name)
                         ELSE ARRAY[only_key] END) AS g (key)
        LEFT JOIN queue_key_turns AS t
            ON t.tenant = q.tenant AND t.queue = q.name AND t.concurrency_key = coalesce(g.key, '')
        LEFT JOIN (
            SELECT concurrency_key AS key, count(*)::integer AS n FROM jobs
            WHERE q.per_key_concurrency IS NOT NULL  -- the keys' running counts: only for a limit
              AND status = 'processing' AND tenant = q.tenant AND queue = q.name GROUP BY 1
        ) AS r ON r.key IS NOT DISTINCT FROM g.key;
        LOOP
            EXIT WHEN room <= 0 OR keys IS NULL;
            progress := false;
            SELECT array_agg(o) INTO active FROM generate_subscripts(allowance, 1) AS o
            WHERE allowance[o] > 0;
            EXIT WHEN active IS NULL;
            IF cardinality(active) = 1 THEN
                -- One group left with room (a backlog of one key): its jobs at once.
                i := active[1];
                n := room;
                FOR j IN
                    SELECT * FROM jobs_due_in_group(
                        q.tenant, q.name, keys[i], job_types, taken, least(room, allowance[i]), true)
                LOOP
                    taken := taken || j.job_id;
                    room := room - 1;
                    RETURN NEXT j;
                END LOOP;
                IF room < n THEN
                    served := served || coalesce(keys[i], '');
                END IF;
                EXIT;
            END IF;
            IF q.fairness = 'round_robin' THEN
                FOREACH i IN ARRAY active LOOP
                    EXIT WHEN room <= 0;
                    SELECT * INTO j
                    FROM jobs_due_in_group(q.tenant, q.name, keys[i], job_types, taken, 1, true);
                    IF NOT FOUND THEN
                        allowance[i] := 0;
                        CONTINUE;
                    END IF;
                    allowance[i] := allowance[i] - 1;
                    room := room - 1;
                    taken := taken || j.job_id;
                    progress := true;
                    served := served || coalesce(keys[i], '');
                    RETURN NEXT j;
                END LOOP;
            ELSE
                SELECT h.* INTO j
                FROM unnest(active) AS a (i)
                CROSS JOIN LATERAL jobs_due_in_group(
                    q.tenant, q.name, keys[a.i], job_types, taken, 1, false) AS h
                ORDER BY h.run_at, h.priority, h.created_at
                LIMIT 1;
                IF FOUND THEN
                    taken := taken || j.job_id;
                    i := array_position(keys, j.concurrency_key);
                    allowance[i] := allowance[i] - 1;
                    progress := true;
                    PERFORM FROM jobs WHERE job_id = j.job_id
                        AND status NOT IN ('processing', 'completed', 'failed', 'cancelled') FOR UPDATE SKIP LOCKED;
                    IF FOUND THEN
                        room := room - 1;
                        RETURN NEXT j;
                    END IF;
                ELSE
                    EXIT;
                END IF;
            END IF;
            EXIT WHEN NOT progress;
        END LOOP;
    END IF;
    IF q.fairness = 'round_robin' AND cardinality(served) > 0 AND cardinality(keys) > 1 THEN
        -- The turns, in serving order, written in key order (sql/0059, sql/0062).
        INSERT INTO queue_key_turns (tenant, queue, concurrency_key, served_at)
        SELECT q.tenant, q.name, s.key, at + make_interval(secs => max(s.turn) * 1e-6)
        FROM unnest(served) WITH ORDINALITY AS s (key, turn)
        GROUP BY s.key
        ORDER BY s.key
        ON CONFLICT (tenant, queue, concurrency_key) DO UPDATE
        SET served_at = excluded.served_at;
    ELSIF q.fairness = 'round_robin' AND cardinality(served) > 0 THEN
        -- Alone, a group's turn is rewritten only when another group was served after
        -- it (sql/0062).
        UPDATE queue_key_turns AS t SET served_at = at
        WHERE t.tenant = q.tenant AND t.queue = q.name AND t.concurrency_key = served[1]
          AND t.served_at < (SELECT max(o.served_at) FROM queue_key_turns AS o
                             WHERE o.tenant = q.tenant AND o.queue = q.name);
        IF NOT FOUND THEN
            INSERT INTO queue_key_turns (tenant, queue, concurrency_key, served_at)
            VALUES (q.tenant, q.name, served[1], at)
            ON CONFLICT (tenant, queue, concurrency_key) DO NOTHING;
        END IF;
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        INSERT INTO queue_buckets (tenant, queue, tokens, refilled_at, last_claimed)
        VALUES (q.tenant, q.name, b.tokens - coalesce(array_length(taken, 1), 0), at, taken)
        ON CONFLICT (tenant, queue) DO UPDATE
        SET tokens = excluded.tokens, refilled_at = excluded.refilled_at,
            last_claimed = CASE WHEN cardinality(excluded.last_claimed) > 0
                                THEN excluded.last_claimed ELSE queue_buckets.last_claimed END;
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION jobs_claim_from_queue(queues, integer, text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_from_queue(queues, integer, text[], text)
    TO ledger_app, ledger_dispatch;

-- Every group of the queue, as before: one copy of the rules.
CREATE OR REPLACE FUNCTION jobs_claim_from_queue(q queues, room integer, job_types text[])
RETURNS SETOF jobs
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM jobs_claim_from_queue(q, room, job_types, NULL);
END;
$$;

-- One tenant's share in a claim into the reserve, for both quiet claims (one copy).
-- How many more of the tenant's jobs may start now, up to `want`: `want` without a
-- `max_running`, else what it leaves, the tenant's row locked so that concurrent
-- claims count each other's jobs (0 or less: none).
CREATE FUNCTION jobs_tenant_room(tenant_id text, want integer) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    room integer;
    running bigint;
BEGIN
    SELECT t.max_running INTO room FROM tenants AS t WHERE t.tenant = tenant_id;
    IF room IS NULL THEN
        RETURN want;
    END IF;
    SELECT t.max_running INTO room FROM tenants AS t WHERE t.tenant = tenant_id FOR UPDATE;
    IF room IS NULL THEN
        RETURN want;
    END IF;
    SELECT coalesce(sum(c.n), 0) INTO running
    FROM (
        SELECT j.n FROM job_counts AS j
        WHERE j.tenant = tenant_id AND j.status = 'processing'
        UNION ALL
        SELECT d.n FROM job_count_deltas AS d
        WHERE d.tenant = tenant_id AND d.status = 'processing'
    ) AS c;
    RETURN least(want, room - running)::integer;
END;
$$;

-- The tenant's pass moves on by the `n` jobs it was given, in proportion to its
-- weight (a row another claim is moving is left to it).
CREATE FUNCTION jobs_tenant_served(tenant_id text, n integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF n > 0 THEN
        UPDATE tenant_turns AS r
        SET pass = r.pass + n::double precision
                   / coalesce((SELECT t.weight FROM tenants AS t WHERE t.tenant = tenant_id), 1)
        WHERE r.tenant = tenant_id
          AND r.tenant IN (SELECT l.tenant FROM tenant_turns AS l
                           WHERE l.tenant = tenant_id FOR UPDATE SKIP LOCKED);
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION jobs_tenant_room(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_tenant_served(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_tenant_room(text, integer), jobs_tenant_served(text, integer)
    TO ledger_dispatch;

-- sql/0084's quiet claim for one tenant, its tenant rules now the helpers above.
CREATE OR REPLACE FUNCTION jobs_claim_quiet_in(tenant_id text, max_jobs integer,
                                               job_types text[], quiet integer)
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    due integer;
    room integer;
    n integer;
BEGIN
    IF max_jobs <= 0 THEN
        RETURN;
    END IF;
    due := jobs_tenant_due(tenant_id, quiet + 1, job_types);
    IF due = 0 OR due > quiet THEN
        RETURN;
    END IF;
    room := jobs_tenant_room(tenant_id, least(max_jobs, due));
    IF room <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT j, q.version, t.version
    FROM jobs_claim_next_in(tenant_id, room, job_types) AS j
    LEFT JOIN queues AS q ON q.tenant = j.tenant AND q.name = j.queue
    LEFT JOIN tenants AS t ON t.tenant = j.tenant;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM jobs_tenant_served(tenant_id, n);
END;
$$;

CREATE FUNCTION jobs_claim_quiet_key(tenant_id text, queue_name text, group_key text,
                                     max_jobs integer, job_types text[], quiet integer)
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    q queues;
    due integer;
    room integer;
    n integer;
BEGIN
    IF max_jobs <= 0 THEN
        RETURN;
    END IF;
    SELECT * INTO q FROM queues AS c WHERE c.tenant = tenant_id AND c.name = queue_name;
    IF NOT FOUND OR q.fairness <> 'round_robin' OR group_key IS NULL THEN
        RETURN QUERY SELECT * FROM jobs_claim_quiet_in(tenant_id, max_jobs, job_types, quiet);
        RETURN;
    END IF;
    IF q.paused THEN
        RETURN;
    END IF;
    SELECT count(*)::integer INTO due
    FROM jobs_due_in_group(tenant_id, queue_name, group_key, job_types, '{}', quiet + 1, false);
    IF due = 0 OR due > quiet THEN
        RETURN;
    END IF;
    room := jobs_tenant_room(tenant_id, least(max_jobs, due));
    IF room <= 0 THEN
        RETURN;
    END IF;
    IF q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL
       OR q.per_key_concurrency IS NOT NULL THEN
        SELECT * INTO q FROM queues AS c
        WHERE c.tenant = tenant_id AND c.name = queue_name FOR UPDATE;
        IF NOT FOUND OR q.paused OR q.fairness <> 'round_robin' THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT j, q.version, t.version
    FROM jobs_claim_from_queue(q, room, job_types, group_key) AS j
    LEFT JOIN tenants AS t ON t.tenant = j.tenant;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM jobs_tenant_served(tenant_id, n);
END;
$$;

ALTER FUNCTION jobs_claim_quiet_key(text, text, text, integer, text[], integer)
    OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION jobs_claim_quiet_key(text, text, text, integer, text[], integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_quiet_key(text, text, text, integer, text[], integer)
    TO ledger_app;

CREATE FUNCTION jobs_claim_recorded(worker text, lease_seconds double precision,
                                    max_jobs integer, job_types text[], quiet integer,
                                    tenant_id text, queue_name text, group_key text)
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer, "position" bigint,
               txid bigint, occurred_at timestamptz, prev_hash bytea, hash bytea,
               lease_until timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    claimed jobs[];
    queue_versions integer[];
    tenant_versions integer[];
    until timestamptz;
    until_text text;
BEGIN
    IF quiet IS NULL THEN
        SELECT array_agg(c.job), array_agg(c.queue_version), array_agg(c.tenant_version)
        INTO claimed, queue_versions, tenant_versions
        FROM jobs_claim(max_jobs, job_types) AS c;
    ELSIF tenant_id IS NULL THEN
        SELECT array_agg(c.job), array_agg(c.queue_version), array_agg(c.tenant_version)
        INTO claimed, queue_versions, tenant_versions
        FROM jobs_claim_quiet(max_jobs, job_types, quiet) AS c;
    ELSIF queue_name IS NULL THEN
        SELECT array_agg(c.job), array_agg(c.queue_version), array_agg(c.tenant_version)
        INTO claimed, queue_versions, tenant_versions
        FROM jobs_claim_quiet_in(tenant_id, max_jobs, job_types, quiet) AS c;
    ELSE
        SELECT array_agg(c.job), array_agg(c.queue_version), array_agg(c.tenant_version)
        INTO claimed, queue_versions, tenant_versions
        FROM jobs_claim_quiet_key(tenant_id, queue_name, group_key, max_jobs, job_types,
                                  quiet) AS c;
    END IF;
    IF claimed IS NULL THEN
        RETURN;
    END IF;
    -- Taken once the jobs are: a claim that waited on a queue's lock is recorded at
    -- the time it claimed (events_append's time is the call's, taken after this one).
    until := clock_timestamp() + make_interval(secs => lease_seconds);
    until_text := to_char(until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    RETURN QUERY
    SELECT claimed[i], queue_versions[i], tenant_versions[i], a.position, a.txid,
           a.occurred_at, a.prev_hash, a.hash, until
    FROM events_append(
        ARRAY(SELECT (claimed[k]).job_id FROM generate_subscripts(claimed, 1) AS k ORDER BY k),
        ARRAY(SELECT (claimed[k]).version + 1
              FROM generate_subscripts(claimed, 1) AS k ORDER BY k),
        array_fill('job.claimed.v1'::text, ARRAY[cardinality(claimed)]),
        array_fill(worker, ARRAY[cardinality(claimed)]),
        ARRAY(SELECT jsonb_strip_nulls(jsonb_build_object(
                  'worker_id', worker,
                  'attempt', (claimed[k]).attempt + 1,
                  'lease_until', until_text,
                  'queue_version', queue_versions[k],
                  'tenant_version', tenant_versions[k]))
              FROM generate_subscripts(claimed, 1) AS k ORDER BY k)
    ) AS a
    JOIN generate_subscripts(claimed, 1) AS i ON (claimed[i]).job_id = a.job_id;
END;
$$;

REVOKE ALL ON FUNCTION jobs_claim_recorded(text, double precision, integer, text[], integer,
                                           text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_recorded(text, double precision, integer, text[],
                                              integer, text, text, text) TO ledger_app;

-- The old signature: the same claim, for a worker that names no key.
CREATE OR REPLACE FUNCTION jobs_claim_recorded(worker text, lease_seconds double precision,
                                               max_jobs integer, job_types text[],
                                               quiet integer, tenant_id text)
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer, "position" bigint,
               txid bigint, occurred_at timestamptz, prev_hash bytea, hash bytea,
               lease_until timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM jobs_claim_recorded(
        worker, lease_seconds, max_jobs, job_types, quiet, tenant_id, NULL, NULL);
END;
$$;

-- The doorbell names the keys of round-robin queues (few of them), the tenants else. A
-- statement without keyed jobs (the common case) costs what it did: one statement rings
-- its tenants and finds there is no key to look at.
CREATE OR REPLACE FUNCTION jobs_inserted_project() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    moved bigint;
    keyed boolean;
    keys text[];
BEGIN
    INSERT INTO job_count_deltas (tenant, queue, status, n)
    SELECT tenant, queue, status, count(*)
    FROM after_rows
    GROUP BY tenant, queue, status;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    -- Each tenant with new runnable jobs, none of them keyed, is rung here.
    SELECT coalesce(bool_or(n.keyed), false) INTO keyed
    FROM (SELECT tenant, bool_or(concurrency_key IS NOT NULL) AS keyed
          FROM after_rows
          WHERE status IN ('pending', 'retrying')
          GROUP BY tenant) AS n
    LEFT JOIN LATERAL (
        SELECT pg_notify('ledger_jobs', 'tenant:' || n.tenant) WHERE NOT n.keyed
    ) AS rung ON true;
    IF NOT keyed THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(k.payload) INTO keys
    FROM (
        SELECT 'key:' || json_build_array(a.tenant, a.queue, a.concurrency_key)::text AS payload
        FROM (SELECT DISTINCT tenant, queue, concurrency_key FROM after_rows
              WHERE status IN ('pending', 'retrying') AND concurrency_key IS NOT NULL) AS a
        WHERE EXISTS (SELECT FROM queues AS q
                      WHERE q.tenant = a.tenant AND q.name = a.queue
                        AND q.fairness = 'round_robin')
        LIMIT 9
    ) AS k;
    IF keys IS NULL OR cardinality(keys) > 8
       OR EXISTS (SELECT FROM unnest(keys) AS p WHERE octet_length(p) > 7000) THEN
        keys := '{}';
    END IF;
    PERFORM pg_notify('ledger_jobs', p) FROM unnest(keys) AS p;
    -- The tenants of the other jobs (no key, or a queue that is not round-robin); a
    -- tenant rung above again is one notification (PostgreSQL folds equal ones).
    PERFORM pg_notify('ledger_jobs', 'tenant:' || n.tenant)
    FROM (SELECT DISTINCT a.tenant FROM after_rows AS a
          WHERE a.status IN ('pending', 'retrying')
            AND NOT ('key:' || json_build_array(a.tenant, a.queue, a.concurrency_key)::text
                     = ANY(keys))) AS n;
    RETURN NULL;
END;
$$;
