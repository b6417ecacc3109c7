-- The idle path's append and claim do less: fewer trigger calls, one claim statement.
--
-- Measured (BENCHMARKS.md, "The append and the claim trimmed"): a job's claim ran ten
-- trigger functions on `events` and `jobs` for one row, most of them to find that it
-- concerned them not, and the claim went through three nested functions to take one
-- due job. Same rules, same events, same counters; fewer calls:
--   * queues, schedules and tenants are projected by row triggers whose WHEN names
--     their events (`queue.%`, `schedule.%`, `tenant.%`): a job's event fires none of
--     them. Each applied its events one by one in position order already; row triggers
--     fire in insertion order, which is position order. They now run before the
--     statement triggers (the jobs fold, webhooks, workflows), which read none of the
--     three tables' rows an append writes;
--   * the throughput counters are counted by the jobs fold (one statement trigger
--     fewer), and the fold inserts only when the append holds a submission (an INSERT
--     of no rows still fired the two statement triggers on `jobs`);
--   * on `jobs`, the counters and the NOTIFYs of an INSERT or an UPDATE are one
--     statement trigger each (they were two), in the same order;
--   * `jobs_claim` takes every due job at once when there is nothing to share: no
--     queue restricted, no tenant with `max_running`, and no more due jobs of the
--     worker's types than it asked for (then whoever's they are, all of them go, which
--     is what the fair claim gives too). Otherwise the fair claim as before (sql/0070);
--   * `jobs_claim_recorded` claims and appends the claims in one statement: a worker's
--     claim is one round trip and its own transaction instead of four round trips
--     (BEGIN, the claim, the append, COMMIT);
--   * `events_append` in PL/pgSQL (plans kept for the session), admitting submissions
--     only when there are any, and its events' time the call's (clock_timestamp() as
--     it starts; it was the client statement's start): a claim that waited on a
--     queue's lock inside one statement is recorded when it claimed, not before.

-- Queues, schedules, tenants: one row trigger each, only for their own events.

CREATE FUNCTION queue_project_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    e events := NEW;
    s queues;
BEGIN
    SELECT * INTO s FROM queues WHERE stream_id = e.job_id FOR UPDATE;
    IF NOT FOUND THEN
        s := NULL;
    END IF;
    s := queue_view_step(s, e);
    INSERT INTO queues (tenant, name, stream_id, version, concurrency, rate_limit,
                        rate_period_seconds, rate_burst, per_key_concurrency, fairness,
                        paused, updated_by, updated_at, retry_policy)
    VALUES (s.tenant, s.name, s.stream_id, s.version, s.concurrency, s.rate_limit,
            s.rate_period_seconds, s.rate_burst, s.per_key_concurrency, s.fairness,
            s.paused, s.updated_by, s.updated_at, s.retry_policy)
    ON CONFLICT (tenant, name) DO UPDATE
    SET version = excluded.version, concurrency = excluded.concurrency,
        rate_limit = excluded.rate_limit,
        rate_period_seconds = excluded.rate_period_seconds,
        rate_burst = excluded.rate_burst,
        per_key_concurrency = excluded.per_key_concurrency,
        fairness = excluded.fairness, paused = excluded.paused,
        updated_by = excluded.updated_by, updated_at = excluded.updated_at,
        retry_policy = excluded.retry_policy;
    PERFORM pg_notify('ledger_jobs', '');
    RETURN NULL;
END;
$$;

CREATE FUNCTION schedule_project_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    e events := NEW;
    s schedules;
BEGIN
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
        -- Within a transaction, the same notification is delivered once.
        PERFORM pg_notify('ledger_schedules', '');
    END CASE;
    RETURN NULL;
END;
$$;

CREATE FUNCTION tenant_project_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    e events := NEW;
    s tenants;
BEGIN
    SELECT * INTO s FROM tenants WHERE stream_id = e.job_id FOR UPDATE;
    IF NOT FOUND THEN
        s := NULL;
    END IF;
    s := tenant_view_step(s, e);
    INSERT INTO tenants (tenant, stream_id, version, max_queued, max_running, weight,
                         updated_by, updated_at)
    VALUES (s.tenant, s.stream_id, s.version, s.max_queued, s.max_running, s.weight,
            s.updated_by, s.updated_at)
    ON CONFLICT (tenant) DO UPDATE
    SET version = excluded.version, max_queued = excluded.max_queued,
        max_running = excluded.max_running, weight = excluded.weight,
        updated_by = excluded.updated_by, updated_at = excluded.updated_at;
    RETURN NULL;
END;
$$;

DROP TRIGGER events_project_queues ON events;
DROP TRIGGER events_project_schedules ON events;
DROP TRIGGER events_project_tenants ON events;
DROP FUNCTION queues_project_appended();
DROP FUNCTION schedules_project_appended();
DROP FUNCTION tenants_project_appended();

CREATE TRIGGER events_project_queues
AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.type LIKE 'queue.%')
EXECUTE FUNCTION queue_project_event();

CREATE TRIGGER events_project_schedules
AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.type LIKE 'schedule.%')
EXECUTE FUNCTION schedule_project_event();

CREATE TRIGGER events_project_tenants
AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.type LIKE 'tenant.%')
EXECUTE FUNCTION tenant_project_event();

-- The jobs fold counts the throughput too (sql/0064's job_throughput_project, whose
-- trigger ran first: so does this part), and inserts only for submissions.

CREATE OR REPLACE FUNCTION jobs_project_appended() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    counted bigint;
    first_ bigint;
    later bigint;
    repeated boolean;
    applied bigint;
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

    SELECT count(*) FILTER (WHERE version = 1), count(*) FILTER (WHERE version > 1),
           count(DISTINCT job_id) < count(*)
    INTO first_, later, repeated
    FROM appended WHERE type LIKE 'job.%';
    IF first_ + later = 0 THEN
        RETURN NULL;
    END IF;
    IF repeated THEN
        -- Several events of one job: folded one by one, in order.
        PERFORM job_view_apply(e::events)
        FROM (SELECT * FROM appended WHERE type LIKE 'job.%' ORDER BY position) AS e;
        RETURN NULL;
    END IF;

    IF first_ > 0 THEN
        INSERT INTO jobs
        SELECT s.*
        FROM appended AS e
        CROSS JOIN LATERAL job_view_step(NULL::jobs, e::events) AS s
        WHERE e.version = 1
          AND e.type LIKE 'job.%';
    END IF;

    IF later = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE jobs AS j
    SET (version, type, queue, priority, status, payload, result, error, attempt,
         max_attempts, timeout_seconds, backoff_base_seconds, backoff_cap_seconds, run_at,
         worker_id, lease_until, idempotency_key, replay_of, submitted_by, created_at,
         updated_at, started_at, completed_at, concurrency_key, snoozes, schedule_id,
         schedule_slot, workflow_id)
      = (n.version, n.type, n.queue, n.priority, n.status, n.payload, n.result,
         n.error, n.attempt, n.max_attempts, n.timeout_seconds,
         n.backoff_base_seconds, n.backoff_cap_seconds, n.run_at, n.worker_id,
         n.lease_until, n.idempotency_key, n.replay_of, n.submitted_by,
         n.created_at, n.updated_at, n.started_at, n.completed_at, n.concurrency_key,
         n.snoozes, n.schedule_id, n.schedule_slot, n.workflow_id)
    FROM (
        SELECT s.*
        FROM appended AS e
        JOIN jobs AS prior ON prior.job_id = e.job_id
        CROSS JOIN LATERAL job_view_step(prior, e::events) AS s
        WHERE e.version > 1
          AND e.type LIKE 'job.%'
    ) AS n
    WHERE j.job_id = n.job_id;
    GET DIAGNOSTICS applied = ROW_COUNT;
    IF applied < later THEN
        -- Some later event's job has no row: the per-row fold raises its error for it.
        PERFORM job_view_apply(e::events)
        FROM appended AS e
        WHERE e.version > 1
          AND e.type LIKE 'job.%'
          AND NOT EXISTS (SELECT FROM jobs AS j WHERE j.job_id = e.job_id);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER events_count_throughput ON events;
DROP FUNCTION job_throughput_project();

-- On `jobs`: the counters, then the NOTIFY, in one trigger per statement kind.

CREATE FUNCTION jobs_inserted_project() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    moved bigint;
BEGIN
    INSERT INTO job_count_deltas (tenant, queue, status, n)
    SELECT tenant, queue, status, count(*)
    FROM after_rows
    GROUP BY tenant, queue, status;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    -- The doorbell names each tenant with new runnable jobs (`tenant:<id>`): a worker
    -- claims a quiet tenant's job into its reserve without looking for the tenant
    -- (jobs_claim_recorded's `tenant_id`). Older workers take any payload but 'room'
    -- as the plain doorbell.
    PERFORM pg_notify('ledger_jobs', 'tenant:' || n.tenant)
    FROM (SELECT DISTINCT tenant FROM after_rows WHERE status IN ('pending', 'retrying')) AS n;
    RETURN NULL;
END;
$$;

CREATE FUNCTION jobs_updated_project() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    moved bigint;
BEGIN
    INSERT INTO job_count_deltas (tenant, queue, status, n)
    SELECT tenant, queue, status, sum(d)
    FROM (
        SELECT tenant, queue, status, -1 AS d FROM before_rows
        UNION ALL
        SELECT tenant, queue, status, 1 AS d FROM after_rows
    ) AS moves
    GROUP BY tenant, queue, status
    HAVING sum(d) <> 0;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM job_counters_wrote();
    END IF;
    -- A job left `processing` in a restricted queue: room for the claim (sql/0059).
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

DROP TRIGGER jobs_count_inserted ON jobs;
DROP TRIGGER jobs_notify_inserted ON jobs;
DROP TRIGGER jobs_count_updated ON jobs;
DROP TRIGGER jobs_notify_room ON jobs;
DROP FUNCTION jobs_notify_inserted();
DROP FUNCTION jobs_notify_room();

CREATE TRIGGER jobs_inserted
AFTER INSERT ON jobs
REFERENCING NEW TABLE AS after_rows
FOR EACH STATEMENT
EXECUTE FUNCTION jobs_inserted_project();

CREATE TRIGGER jobs_updated
AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
FOR EACH STATEMENT
EXECUTE FUNCTION jobs_updated_project();

-- The claim: all of it at once when there is nothing to share.

CREATE OR REPLACE FUNCTION jobs_claim(max_jobs integer, job_types text[])
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM queues WHERE queues.restricted)
       AND NOT EXISTS (SELECT FROM tenants WHERE tenants.max_running IS NOT NULL)
       AND (SELECT count(*)
            FROM (SELECT FROM jobs AS d
                  WHERE d.status IN ('pending', 'retrying') AND d.run_at <= now()
                    AND d.type = ANY(job_types)
                  LIMIT max_jobs + 1) AS due) <= max_jobs THEN
        RETURN QUERY
        SELECT j, q.version, t.version
        FROM jobs_claimable(max_jobs, job_types) AS j
        LEFT JOIN queues AS q ON q.tenant = j.tenant AND q.name = j.queue
        LEFT JOIN tenants AS t ON t.tenant = j.tenant;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT j, q.version, t.version
    FROM jobs_claim_fair(max_jobs, job_types) AS j
    LEFT JOIN queues AS q ON q.tenant = j.tenant AND q.name = j.queue
    LEFT JOIN tenants AS t ON t.tenant = j.tenant;
END;
$$;

-- The append: sql/0069's statements, in PL/pgSQL (its plans kept for the session;
-- the SQL function set up its two statements on every call), and the admission only
-- when a submission is among the events (events_admit returned at once otherwise).
-- The events' time is the call's start, never before the job's previous event: the
-- same as the statement's start for an append of its own, later for one made inside
-- a longer statement (jobs_claim_recorded, after its claim's lock waits).

CREATE OR REPLACE FUNCTION events_append(
    job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]
) RETURNS TABLE (
    "position" bigint, job_id uuid, version integer, txid bigint,
    occurred_at timestamptz, prev_hash bytea, hash bytea, tenant text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    at_ timestamptz := clock_timestamp();
BEGIN
    IF 'job.submitted.v1' = ANY(types) THEN
        PERFORM events_admit(versions, types, actors, datas);
    END IF;
    RETURN QUERY
    INSERT INTO events (tenant, job_id, version, type, actor, occurred_at, data, prev_hash, hash)
    SELECT w.tenant, u.job_id, u.version, u.type, u.actor, t.at, u.data, p.prev_hash,
           sha256(p.prev_hash
                  || event_canonical(w.tenant, u.type, u.job_id, u.version, u.actor, t.at, u.data))
    FROM unnest(job_ids, versions, types, actors, datas)
        AS u (job_id, version, type, actor, data)
    LEFT JOIN LATERAL (
        SELECT e.hash, e.occurred_at, e.tenant
        FROM events AS e
        WHERE u.version > 1 AND e.job_id = u.job_id AND e.version = u.version - 1
          AND e.tenant = coalesce(ledger_tenant_named(), e.tenant)
        LIMIT 1
    ) AS prev ON true
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN u.version = 1 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE prev.hash
        END AS prev_hash
    ) AS p
    CROSS JOIN LATERAL (
        SELECT CASE WHEN u.version = 1 THEN ledger_tenant() ELSE prev.tenant END AS tenant
    ) AS w
    CROSS JOIN LATERAL (
        SELECT greatest(at_, prev.occurred_at) AS at
    ) AS t
    RETURNING position, job_id, version, txid::text::bigint, occurred_at, prev_hash, hash, tenant;
END;
$$;


-- The reserve's claim for one tenant the doorbell named (sql/0079's quiet claim
-- without looking for the quiet tenants: the same checks for this one).
CREATE FUNCTION jobs_claim_quiet_in(tenant_id text, max_jobs integer, job_types text[],
                                    quiet integer)
RETURNS TABLE (job jobs, queue_version integer, tenant_version integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    due integer;
    room integer;
    w integer;
    running bigint;
    n integer;
BEGIN
    IF max_jobs <= 0 THEN
        RETURN;
    END IF;
    due := jobs_tenant_due(tenant_id, quiet + 1, job_types);
    IF due = 0 OR due > quiet THEN
        RETURN;
    END IF;
    SELECT t.max_running, t.weight INTO room, w FROM tenants AS t WHERE t.tenant = tenant_id;
    IF room IS NOT NULL THEN
        SELECT t.max_running INTO room FROM tenants AS t WHERE t.tenant = tenant_id FOR UPDATE;
        SELECT coalesce(sum(c.n), 0) INTO running
        FROM (
            SELECT j.n FROM job_counts AS j
            WHERE j.tenant = tenant_id AND j.status = 'processing'
            UNION ALL
            SELECT d.n FROM job_count_deltas AS d
            WHERE d.tenant = tenant_id AND d.status = 'processing'
        ) AS c;
        IF room IS NOT NULL AND running >= room THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT j, q.version, t.version
    FROM jobs_claim_next_in(
        tenant_id, least(max_jobs, due, coalesce(room - running, due))::integer, job_types) AS j
    LEFT JOIN queues AS q ON q.tenant = j.tenant AND q.name = j.queue
    LEFT JOIN tenants AS t ON t.tenant = j.tenant;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        UPDATE tenant_turns AS r
        SET pass = r.pass + n::double precision / coalesce(w, 1)
        WHERE r.tenant = tenant_id
          AND r.tenant IN (SELECT l.tenant FROM tenant_turns AS l
                           WHERE l.tenant = tenant_id FOR UPDATE SKIP LOCKED);
    END IF;
END;
$$;

ALTER FUNCTION jobs_claim_quiet_in(text, integer, text[], integer) OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION jobs_claim_quiet_in(text, integer, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_quiet_in(text, integer, text[], integer) TO ledger_app;

-- sql/0079's quiet claim, its rules for each tenant now jobs_claim_quiet_in's (one copy
-- of them): the tenants with runnable jobs in tenant order, each claimed as above.
CREATE OR REPLACE FUNCTION jobs_claim_quiet_tenants(max_jobs integer, job_types text[],
                                                    quiet integer)
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
        RETURN QUERY
        SELECT (c.job).* FROM jobs_claim_quiet_in(t, max_jobs - taken, job_types, quiet) AS c;
        GET DIAGNOSTICS n = ROW_COUNT;
        taken := taken + n;
    END LOOP;
END;
$$;

-- The claim and its events in one statement, so the worker's claim is one round trip
-- and its own transaction (it was BEGIN, the claim, the append, COMMIT). The events
-- are the ones workers.claims decided from the rows (commands.decide, ClaimJob): the
-- attempt after the job's last, the worker as actor, a lease of `lease_seconds` from
-- when the jobs were claimed, the queue's and tenant's settings versions when they have
-- any; appended through events_append, the one append. Runs as its caller (the
-- application's role), which may call both.
CREATE FUNCTION jobs_claim_recorded(
    worker text, lease_seconds double precision, max_jobs integer, job_types text[],
    quiet integer, tenant_id text
) RETURNS TABLE (
    job jobs, queue_version integer, tenant_version integer, "position" bigint,
    txid bigint, occurred_at timestamptz, prev_hash bytea, hash bytea, lease_until timestamptz
)
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
    ELSE
        SELECT array_agg(c.job), array_agg(c.queue_version), array_agg(c.tenant_version)
        INTO claimed, queue_versions, tenant_versions
        FROM jobs_claim_quiet_in(tenant_id, max_jobs, job_types, quiet) AS c;
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

REVOKE ALL ON FUNCTION jobs_claim_recorded(text, double precision, integer, text[], integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_recorded(text, double precision, integer, text[], integer, text) TO ledger_app;
