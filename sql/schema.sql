-- The schema that the migrations in sql/ produce, written by `ledger schema dump`.
-- Read it for the current definition of a table, function or grant; change it only
-- by writing the next migration and dumping again (a test compares the two).

--
-- PostgreSQL database dump
--

--
-- Name: event_canonical(text, uuid, integer, text, timestamp with time zone, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.event_canonical(type text, job_id uuid, version integer, actor text, occurred_at timestamp with time zone, data jsonb) RETURNS bytea
    LANGUAGE sql STABLE STRICT
    AS $$
    SELECT convert_to(
        type || E'\n' || job_id::text || E'\n' || version::text || E'\n'
        || length(actor)::text || ':' || actor || E'\n'
        || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || E'\n'
        || data::text,
        'UTF8'
    )
$$;

--
-- Name: event_canonical(text, text, uuid, integer, text, timestamp with time zone, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.event_canonical(tenant text, type text, job_id uuid, version integer, actor text, occurred_at timestamp with time zone, data jsonb) RETURNS bytea
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN tenant = 'default'
        THEN event_canonical(type, job_id, version, actor, occurred_at, data)
        ELSE convert_to(length(tenant)::text || ':' || tenant || E'\n', 'UTF8')
             || event_canonical(type, job_id, version, actor, occurred_at, data)
    END
$$;

--
-- Name: events_admit(integer[], text[], text[], jsonb[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.events_admit(versions integer[], types text[], actors text[], datas jsonb[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    t text := ledger_tenant();
    limit_ integer;
    submitted integer;
    queued bigint;
BEGIN
    IF NOT ('job.submitted.v1' = ANY(types)) THEN
        RETURN;
    END IF;
    SELECT max_queued INTO limit_ FROM tenants WHERE tenant = t;
    IF limit_ IS NULL THEN
        RETURN;
    END IF;
    -- Submitters of this tenant take turns from here to their commit; each statement
    -- below then sees what the ones before committed.
    SELECT max_queued INTO limit_ FROM tenants WHERE tenant = t FOR UPDATE;
    IF limit_ IS NULL THEN
        RETURN;
    END IF;
    SELECT count(*) INTO submitted
    FROM unnest(versions, types, actors, datas) AS u (version, type, actor, data)
    WHERE u.version = 1 AND u.type = 'job.submitted.v1'
      AND NOT EXISTS (
          SELECT FROM jobs AS j
          WHERE j.tenant = t AND j.submitted_by = u.actor
            AND j.idempotency_key = u.data->>'idempotency_key'
      );
    IF submitted = 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(c.n), 0) INTO queued
    FROM (
        SELECT n FROM job_counts WHERE tenant = t AND status IN ('pending', 'retrying')
        UNION ALL
        SELECT n FROM job_count_deltas WHERE tenant = t AND status IN ('pending', 'retrying')
    ) AS c;
    IF queued + submitted > limit_ THEN
        RAISE EXCEPTION 'tenant % has % queued jobs of at most %: % more would pass max_queued',
            t, queued, limit_, submitted
        USING ERRCODE = 'LQ429',
              DETAIL = json_build_object('tenant', t, 'max_queued', limit_,
                                         'queued', queued, 'submitted', submitted)::text;
    END IF;
END;
$$;

--
-- Name: events_append(uuid[], integer[], text[], text[], jsonb[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.events_append(job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]) RETURNS TABLE("position" bigint, job_id uuid, version integer, txid bigint, occurred_at timestamp with time zone, prev_hash bytea, hash bytea, tenant text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: events_notify_feed(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.events_notify_feed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF pg_try_advisory_lock(7164857355) THEN
        PERFORM pg_advisory_unlock(7164857355);
    ELSE
        PERFORM pg_notify('ledger_feed', '');
    END IF;
    RETURN NULL;
END;
$$;

--
-- Name: events_refuse_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'history is never edited; append a new event instead';
END;
$$;

--
-- Name: job_counters_fold(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_counters_fold() RETURNS void
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: job_counters_wrote(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_counters_wrote() RETURNS void
    LANGUAGE sql
    AS $$
    SELECT job_counters_fold()
    WHERE nextval('job_counter_writes') % 64 = 0
$$;

--
-- Name: job_counts_all(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_counts_all() RETURNS TABLE(tenant text, queue text, status text, jobs bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: job_counts_project(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_counts_project() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: job_dependencies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_dependencies (
    tenant text NOT NULL,
    job_id uuid NOT NULL,
    depends_on uuid NOT NULL,
    upstream_status text,
    cause bytea
);

ALTER TABLE ONLY public.job_dependencies FORCE ROW LEVEL SECURITY;

--
-- Name: job_dependencies_folded(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_dependencies_folded() RETURNS SETOF public.job_dependencies
    LANGUAGE sql STABLE
    AS $$
    SELECT e.tenant, e.job_id, d.id::uuid, ended.ending, ended.hash
    FROM events AS e
    CROSS JOIN LATERAL jsonb_array_elements_text(e.data->'depends_on') AS d (id)
    LEFT JOIN LATERAL (
        SELECT job_event_ending(u.type, u.data) AS ending, u.hash
        FROM events AS u
        WHERE u.job_id = d.id::uuid
          AND (u.type = 'job.retried.v1' OR job_event_ending(u.type, u.data) IS NOT NULL)
        ORDER BY u.version DESC
        LIMIT 1
    ) AS last ON true
    CROSS JOIN LATERAL (
        SELECT last.ending, CASE WHEN last.ending IS NOT NULL THEN last.hash END AS hash
    ) AS ended
    WHERE e.type = 'job.submitted.v1' AND jsonb_typeof(e.data->'depends_on') = 'array'
$$;

--
-- Name: job_event_ending(text, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_event_ending(type text, data jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE
        WHEN type = 'job.completed.v1' THEN 'completed'
        WHEN type = 'job.cancelled.v1' THEN 'cancelled'
        WHEN type = 'job.skipped.v1' THEN 'skipped'
        WHEN type IN ('job.failed.v1', 'job.retry_scheduled.v1', 'job.lease_expired.v1')
             AND data->>'next_attempt_at' IS NULL THEN 'failed'
    END
$$;

--
-- Name: job_leases_end(text, uuid[], integer[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_leases_end(worker text, job_ids uuid[], attempts integer[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    DELETE FROM job_leases AS l
    USING unnest(job_ids, attempts) AS e (job_id, attempt)
    WHERE l.job_id = e.job_id
      AND l.attempt = e.attempt
      AND l.worker_id = worker
$$;

--
-- Name: job_leases_prune(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_leases_prune() RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: job_leases_renew(text, double precision, uuid[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_leases_renew(worker text, seconds double precision, job_ids uuid[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.events (
    "position" bigint NOT NULL,
    job_id uuid NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    actor text NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    txid xid8 DEFAULT pg_current_xact_id() NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    tenant text DEFAULT 'default'::text NOT NULL,
    CONSTRAINT events_actor_check CHECK ((actor <> ''::text)),
    CONSTRAINT events_hash_check CHECK ((octet_length(hash) = 32)),
    CONSTRAINT events_prev_hash_check CHECK ((octet_length(prev_hash) = 32)),
    CONSTRAINT events_type_format CHECK ((type ~ '^[a-z_.]+\.v[0-9]+$'::text)),
    CONSTRAINT events_version_check CHECK ((version >= 1))
);

ALTER TABLE ONLY public.events FORCE ROW LEVEL SECURITY;

--
-- Name: job_view_apply(public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_view_apply(e public.events) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    s jobs;
BEGIN
    SELECT * INTO s FROM jobs WHERE job_id = e.job_id FOR UPDATE;
    IF NOT FOUND THEN
        s := job_view_evolve(NULL, e);
        INSERT INTO jobs SELECT s.*;
    ELSE
        s := job_view_evolve(s, e);
        UPDATE jobs SET
            version = s.version, type = s.type, queue = s.queue, priority = s.priority,
            status = s.status, payload = s.payload, result = s.result, error = s.error,
            attempt = s.attempt, max_attempts = s.max_attempts,
            timeout_seconds = s.timeout_seconds,
            backoff_base_seconds = s.backoff_base_seconds,
            backoff_cap_seconds = s.backoff_cap_seconds,
            run_at = s.run_at, worker_id = s.worker_id, lease_until = s.lease_until,
            idempotency_key = s.idempotency_key, replay_of = s.replay_of,
            submitted_by = s.submitted_by, created_at = s.created_at,
            updated_at = s.updated_at, started_at = s.started_at,
            completed_at = s.completed_at, concurrency_key = s.concurrency_key,
            snoozes = s.snoozes, schedule_id = s.schedule_id,
            schedule_slot = s.schedule_slot,
            workflow_id = s.workflow_id
        WHERE job_id = e.job_id;
    END IF;
END;
$$;

--
-- Name: jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.jobs (
    job_id uuid NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    queue text NOT NULL,
    priority smallint NOT NULL,
    status text NOT NULL,
    payload jsonb NOT NULL,
    result jsonb,
    error text,
    attempt integer NOT NULL,
    max_attempts integer NOT NULL,
    timeout_seconds double precision NOT NULL,
    backoff_base_seconds double precision NOT NULL,
    backoff_cap_seconds double precision NOT NULL,
    run_at timestamp with time zone,
    worker_id text,
    lease_until timestamp with time zone,
    idempotency_key text,
    replay_of uuid,
    submitted_by text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    concurrency_key text,
    tenant text DEFAULT 'default'::text NOT NULL,
    snoozes integer DEFAULT 0 NOT NULL,
    schedule_id text,
    schedule_slot timestamp with time zone,
    retry_policy jsonb,
    unique_key text,
    unique_states text[],
    workflow_id uuid,
    CONSTRAINT jobs_snoozes_check CHECK ((snoozes >= 0))
);

ALTER TABLE ONLY public.jobs FORCE ROW LEVEL SECURITY;

--
-- Name: job_view_evolve(public.jobs, public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_view_evolve(s public.jobs, e public.events) RETURNS public.jobs
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT step FROM job_view_step(s, e) AS step
$$;

--
-- Name: job_view_refuse(text, uuid, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_view_refuse(e_type text, e_job uuid, submitted boolean) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    IF e_type = 'job.submitted.v1' AND submitted THEN
        RAISE EXCEPTION 'job % submitted twice', e_job;
    ELSIF e_type <> 'job.submitted.v1' AND NOT submitted THEN
        RAISE EXCEPTION 'event % for job % before its submission', e_type, e_job;
    END IF;
    RAISE EXCEPTION 'unknown event type % (job %)', e_type, e_job;
END;
$$;

--
-- Name: job_view_step(public.jobs, public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_view_step(s public.jobs, e public.events) RETURNS SETOF public.jobs
    LANGUAGE sql IMMUTABLE ROWS 1
    AS $$
SELECT
    CASE WHEN e.type = 'job.submitted.v1' THEN e.job_id ELSE s.job_id END,
    e.version,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'job_type' ELSE s.type END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'queue' ELSE s.queue END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (CASE e.data->>'priority' WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)::smallint
         ELSE s.priority END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN
            CASE WHEN jsonb_array_length(coalesce(e.data->'depends_on', '[]')) > 0
                 THEN 'blocked' ELSE 'pending' END
        WHEN 'job.claimed.v1' THEN 'processing'
        WHEN 'job.completed.v1' THEN 'completed'
        WHEN 'job.retry_scheduled.v1' THEN
            CASE WHEN e.data->>'next_attempt_at' IS NOT NULL THEN 'retrying' ELSE 'failed' END
        WHEN 'job.failed.v1' THEN
            CASE WHEN e.data->>'next_attempt_at' IS NOT NULL THEN 'retrying' ELSE 'failed' END
        WHEN 'job.lease_expired.v1' THEN
            CASE WHEN e.data->>'next_attempt_at' IS NOT NULL THEN 'retrying' ELSE 'failed' END
        WHEN 'job.cancelled.v1' THEN 'cancelled'
        WHEN 'job.released.v1' THEN 'pending'
        WHEN 'job.snoozed.v1' THEN 'pending'
        WHEN 'job.retried.v1' THEN
            CASE WHEN (e.data->>'blocked')::boolean THEN 'blocked' ELSE 'pending' END
        WHEN 'job.unblocked.v1' THEN 'pending'
        WHEN 'job.skipped.v1' THEN 'skipped'
        ELSE s.status
    END,
    CASE WHEN e.type IN ('job.submitted.v1', 'job.replaced.v1') THEN e.data->'payload'
         ELSE s.payload END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN NULL
        WHEN 'job.completed.v1' THEN e.data->'result'
        WHEN 'job.retried.v1' THEN NULL
        ELSE s.result
    END,
    CASE
        WHEN e.type IN ('job.submitted.v1', 'job.completed.v1', 'job.retried.v1') THEN NULL
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN e.data->>'error'
        ELSE s.error
    END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN 0
        WHEN 'job.claimed.v1' THEN (e.data->>'attempt')::integer
        WHEN 'job.released.v1' THEN s.attempt - 1
        WHEN 'job.snoozed.v1' THEN (e.data->>'attempt')::integer - 1
        WHEN 'job.retried.v1' THEN 0
        ELSE s.attempt
    END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN (e.data->>'max_attempts')::integer
        WHEN 'job.retried.v1' THEN coalesce((e.data->>'max_attempts')::integer, s.max_attempts)
        ELSE s.max_attempts
    END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'timeout_seconds')::double precision ELSE s.timeout_seconds END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'backoff_base_seconds')::double precision ELSE s.backoff_base_seconds END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'backoff_cap_seconds')::double precision ELSE s.backoff_cap_seconds END,
    CASE
        WHEN e.type = 'job.submitted.v1' THEN
            CASE WHEN jsonb_array_length(coalesce(e.data->'depends_on', '[]')) > 0 THEN NULL
                 ELSE (e.data->>'run_at')::timestamptz END
        WHEN e.type IN ('job.claimed.v1', 'job.cancelled.v1', 'job.skipped.v1') THEN NULL
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN (e.data->>'next_attempt_at')::timestamptz
        WHEN e.type = 'job.retried.v1' AND (e.data->>'blocked')::boolean THEN NULL
        WHEN e.type IN ('job.released.v1', 'job.retried.v1', 'job.unblocked.v1') THEN e.occurred_at
        WHEN e.type IN ('job.snoozed.v1', 'job.replaced.v1') THEN (e.data->>'run_at')::timestamptz
        ELSE s.run_at
    END,
    CASE
        WHEN e.type = 'job.claimed.v1' THEN e.data->>'worker_id'
        WHEN e.type IN ('job.completed.v1', 'job.retry_scheduled.v1', 'job.failed.v1',
                        'job.lease_expired.v1', 'job.cancelled.v1', 'job.released.v1',
                        'job.snoozed.v1') THEN NULL
        ELSE s.worker_id
    END,
    CASE
        WHEN e.type = 'job.claimed.v1' THEN (e.data->>'lease_until')::timestamptz
        WHEN e.type IN ('job.completed.v1', 'job.retry_scheduled.v1', 'job.failed.v1',
                        'job.lease_expired.v1', 'job.cancelled.v1', 'job.released.v1',
                        'job.snoozed.v1') THEN NULL
        ELSE s.lease_until
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'idempotency_key' ELSE s.idempotency_key END,
    CASE WHEN e.type = 'job.submitted.v1' THEN (e.data->>'replay_of')::uuid ELSE s.replay_of END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.actor ELSE s.submitted_by END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.occurred_at ELSE s.created_at END,
    e.occurred_at,
    CASE e.type
        WHEN 'job.claimed.v1' THEN e.occurred_at
        WHEN 'job.retried.v1' THEN NULL
        ELSE s.started_at
    END,
    CASE
        WHEN e.type IN ('job.completed.v1', 'job.cancelled.v1', 'job.skipped.v1') THEN e.occurred_at
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN CASE WHEN e.data->>'next_attempt_at' IS NULL THEN e.occurred_at
                      ELSE s.completed_at END
        WHEN e.type = 'job.retried.v1' THEN NULL
        ELSE s.completed_at
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'concurrency_key' ELSE s.concurrency_key END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.tenant ELSE s.tenant END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN 0
        WHEN 'job.snoozed.v1' THEN (e.data->>'snooze')::integer
        WHEN 'job.retried.v1' THEN 0
        ELSE s.snoozes
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'schedule_id' ELSE s.schedule_id END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'schedule_slot')::timestamptz ELSE s.schedule_slot END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->'retry_policy' ELSE s.retry_policy END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->'unique'->>'key' ELSE s.unique_key END,
    CASE WHEN e.type <> 'job.submitted.v1' THEN s.unique_states
         WHEN e.data ? 'unique'
         THEN ARRAY(SELECT jsonb_array_elements_text(e.data->'unique'->'states'))
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN (e.data->>'workflow_id')::uuid ELSE s.workflow_id END
WHERE CASE
    WHEN e.type = 'job.submitted.v1' THEN s.job_id IS NULL
    ELSE s.job_id IS NOT NULL
         AND e.type IN ('job.claimed.v1', 'job.completed.v1', 'job.retry_scheduled.v1',
                        'job.failed.v1', 'job.lease_expired.v1', 'job.cancelled.v1',
                        'job.released.v1', 'job.retried.v1', 'job.replayed.v1',
                        'job.snoozed.v1', 'job.replaced.v1', 'job.unblocked.v1',
                        'job.skipped.v1')
END OR job_view_refuse(e.type, e.job_id, s.job_id IS NOT NULL)
$$;

--
-- Name: job_webhooks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_webhooks (
    job_id uuid NOT NULL,
    tenant text NOT NULL,
    url text NOT NULL
);

ALTER TABLE ONLY public.job_webhooks FORCE ROW LEVEL SECURITY;

--
-- Name: job_webhooks_folded(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.job_webhooks_folded() RETURNS SETOF public.job_webhooks
    LANGUAGE sql STABLE
    AS $$
    SELECT e.job_id, e.tenant, e.data->'webhook'->>'url'
    FROM events AS e
    WHERE e.type = 'job.submitted.v1' AND e.version = 1 AND e.data ? 'webhook'
$$;

--
-- Name: jobs_claim(integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim(max_jobs integer, job_types text[]) RETURNS TABLE(job public.jobs, queue_version integer, tenant_version integer)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_claim_fair(integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_fair(max_jobs integer, job_types text[]) RETURNS SETOF public.jobs
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
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

--
-- Name: queues; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.queues (
    name text NOT NULL,
    stream_id uuid NOT NULL,
    version integer NOT NULL,
    concurrency integer,
    rate_limit integer,
    rate_period_seconds double precision,
    rate_burst integer,
    per_key_concurrency integer,
    fairness text NOT NULL,
    paused boolean NOT NULL,
    restricted boolean GENERATED ALWAYS AS ((paused OR (concurrency IS NOT NULL) OR (rate_limit IS NOT NULL) OR (per_key_concurrency IS NOT NULL) OR (fairness <> 'fifo'::text))) STORED,
    updated_by text NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    tenant text NOT NULL,
    retry_policy jsonb,
    CONSTRAINT queues_check CHECK ((((rate_limit IS NULL) = (rate_period_seconds IS NULL)) AND ((rate_limit IS NULL) = (rate_burst IS NULL)))),
    CONSTRAINT queues_concurrency_check CHECK ((concurrency >= 0)),
    CONSTRAINT queues_fairness_check CHECK ((fairness = ANY (ARRAY['fifo'::text, 'round_robin'::text]))),
    CONSTRAINT queues_per_key_concurrency_check CHECK ((per_key_concurrency >= 1)),
    CONSTRAINT queues_rate_burst_check CHECK ((rate_burst >= 1)),
    CONSTRAINT queues_rate_limit_check CHECK ((rate_limit >= 1)),
    CONSTRAINT queues_rate_period_seconds_check CHECK ((rate_period_seconds > (0)::double precision)),
    CONSTRAINT queues_version_check CHECK ((version >= 1))
);

ALTER TABLE ONLY public.queues FORCE ROW LEVEL SECURITY;

--
-- Name: jobs_claim_from_queue(public.queues, integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[]) RETURNS SETOF public.jobs
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN QUERY SELECT * FROM jobs_claim_from_queue(q, room, job_types, NULL);
END;
$$;

--
-- Name: jobs_claim_from_queue(public.queues, integer, text[], text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[], only_key text) RETURNS SETOF public.jobs
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
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

--
-- Name: jobs_claim_next(integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_next(max_jobs integer, job_types text[]) RETURNS SETOF public.jobs
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    AS $$
DECLARE
    q queues;
    taken integer := 0;
    n integer;
    open_tenants text[];
    open_queues text[];
    keyed_groups text[];
BEGIN
    IF NOT EXISTS (SELECT FROM queues WHERE queues.restricted) THEN
        RETURN QUERY SELECT * FROM jobs_claimable(max_jobs, job_types);
        RETURN;
    END IF;
    FOR q IN
        SELECT * FROM queues AS c
        WHERE c.restricted AND NOT c.paused AND jobs_queue_has_due(c.tenant, c.name, job_types)
        ORDER BY c.tenant, c.name
    LOOP
        EXIT WHEN taken >= max_jobs;
        -- A limit serializes the claimers of its queue (each counts what runs and spends
        -- tokens after the last one committed); fairness alone needs no lock. Either way
        -- the settings are read as they are now.
        SELECT * INTO q FROM queues WHERE tenant = q.tenant AND name = q.name;
        CONTINUE WHEN NOT FOUND;
        IF q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL
           OR q.per_key_concurrency IS NOT NULL THEN
            SELECT * INTO q FROM queues WHERE tenant = q.tenant AND name = q.name FOR UPDATE;
            CONTINUE WHEN NOT FOUND;  -- replaced by a rebuild meanwhile: the next round
        END IF;
        CONTINUE WHEN q.paused OR NOT q.restricted;
        RETURN QUERY SELECT * FROM jobs_claim_from_queue(q, max_jobs - taken, job_types);
        GET DIAGNOSTICS n = ROW_COUNT;
        taken := taken + n;
    END LOOP;
    IF taken >= max_jobs THEN
        RETURN;
    END IF;
    -- The unrestricted (tenant, queue) groups with runnable jobs: skip scans of the two
    -- group indexes (one probe a tenant's queue), restricted ones left out.
    WITH RECURSIVE u (tenant, queue) AS (
        (SELECT tenant, queue FROM jobs
         WHERE concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.tenant, x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT tenant, queue FROM jobs
            WHERE (tenant, queue) > (u.tenant, u.queue) AND concurrency_key IS NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    SELECT array_agg(u.tenant), array_agg(u.queue) INTO open_tenants, open_queues FROM u
    WHERE NOT EXISTS (SELECT FROM queues AS r
                      WHERE r.tenant = u.tenant AND r.name = u.queue AND r.restricted);
    WITH RECURSIVE u (tenant, queue) AS (
        (SELECT tenant, queue FROM jobs
         WHERE concurrency_key IS NOT NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.tenant, x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT tenant, queue FROM jobs
            WHERE (tenant, queue) > (u.tenant, u.queue) AND concurrency_key IS NOT NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    -- A group named by one string: neither a tenant id nor a queue name holds a newline.
    SELECT array_agg(u.tenant || E'\n' || u.queue) INTO keyed_groups FROM u
    WHERE NOT EXISTS (SELECT FROM queues AS r
                      WHERE r.tenant = u.tenant AND r.name = u.queue AND r.restricted);
    -- The oldest due jobs among them: each group's jobs without a key from its own
    -- index; keyed jobs of unrestricted queues (rare: a key matters only to a
    -- restricted queue) from the due index, filtered to those groups.
    RETURN QUERY
    SELECT c.* FROM (
        SELECT o.*
        FROM unnest(coalesce(open_tenants, '{}'), coalesce(open_queues, '{}')) AS u (tenant, queue)
        CROSS JOIN LATERAL jobs_due_in_group(
            u.tenant, u.queue, NULL, job_types, '{}', max_jobs - taken, true) AS o
        UNION ALL
        SELECT k.* FROM (
            SELECT * FROM jobs
            WHERE keyed_groups IS NOT NULL
              AND status IN ('pending', 'retrying') AND run_at <= now()
              AND type = ANY(job_types) AND tenant || E'\n' || queue = ANY(keyed_groups)
              AND concurrency_key IS NOT NULL
            ORDER BY run_at, priority, created_at
            LIMIT max_jobs - taken
            FOR UPDATE SKIP LOCKED
        ) AS k
    ) AS c
    ORDER BY c.run_at, c.priority, c.created_at
    LIMIT max_jobs - taken;
END;
$$;

--
-- Name: jobs_claim_next_in(text, integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_next_in(tenant_id text, max_jobs integer, job_types text[]) RETURNS SETOF public.jobs
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
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

--
-- Name: jobs_claim_quiet(integer, text[], integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_quiet(max_jobs integer, job_types text[], quiet integer) RETURNS TABLE(job public.jobs, queue_version integer, tenant_version integer)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT j, q.version, t.version
    FROM jobs_claim_quiet_tenants(max_jobs, job_types, quiet) AS j
    LEFT JOIN queues AS q
        ON q.tenant = j.tenant
       AND q.name = j.queue
    LEFT JOIN tenants AS t
        ON t.tenant = j.tenant
$$;

--
-- Name: jobs_claim_quiet_in(text, integer, text[], integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_quiet_in(tenant_id text, max_jobs integer, job_types text[], quiet integer) RETURNS TABLE(job public.jobs, queue_version integer, tenant_version integer)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_claim_quiet_key(text, text, text, integer, text[], integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_quiet_key(tenant_id text, queue_name text, group_key text, max_jobs integer, job_types text[], quiet integer) RETURNS TABLE(job public.jobs, queue_version integer, tenant_version integer)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
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

--
-- Name: jobs_claim_quiet_tenants(integer, text[], integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_quiet_tenants(max_jobs integer, job_types text[], quiet integer) RETURNS SETOF public.jobs
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
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

--
-- Name: jobs_claim_recorded(text, double precision, integer, text[], integer, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text) RETURNS TABLE(job public.jobs, queue_version integer, tenant_version integer, "position" bigint, txid bigint, occurred_at timestamp with time zone, prev_hash bytea, hash bytea, lease_until timestamp with time zone)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    RETURN QUERY SELECT * FROM jobs_claim_recorded(
        worker, lease_seconds, max_jobs, job_types, quiet, tenant_id, NULL, NULL);
END;
$$;

--
-- Name: jobs_claim_recorded(text, double precision, integer, text[], integer, text, text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text, queue_name text, group_key text) RETURNS TABLE(job public.jobs, queue_version integer, tenant_version integer, "position" bigint, txid bigint, occurred_at timestamp with time zone, prev_hash bytea, hash bytea, lease_until timestamp with time zone)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_claimable(integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_claimable(max_jobs integer, job_types text[]) RETURNS SETOF public.jobs
    LANGUAGE sql SECURITY DEFINER
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT *
    FROM jobs
    WHERE status IN ('pending', 'retrying')
      AND run_at <= now()
      AND type = ANY(job_types)
    ORDER BY run_at, priority, created_at
    LIMIT max_jobs
    FOR UPDATE SKIP LOCKED
$$;

--
-- Name: jobs_due_in_group(text, text, text, text[], uuid[], integer, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_due_in_group(tenant_id text, q text, key text, job_types text[], taken uuid[], n integer, lock boolean) RETURNS SETOF public.jobs
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    AS $$
BEGIN
    IF key IS NULL AND lock THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, run_at, priority, created_at
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    ELSIF key IS NULL THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, run_at, priority, created_at
        LIMIT n;
    ELSIF lock THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key = key
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    ELSE
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key = key
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at
        LIMIT n;
    END IF;
END;
$$;

--
-- Name: jobs_groups_of(text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_groups_of(tenant_id text, q text) RETURNS text[]
    LANGUAGE sql STABLE
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    AS $$
    WITH RECURSIVE k (key) AS (
        (SELECT concurrency_key FROM jobs
         WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NOT NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobs
                WHERE tenant = tenant_id AND queue = q AND concurrency_key > k.key
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY tenant, queue, concurrency_key LIMIT 1)
        FROM k WHERE k.key IS NOT NULL
    )
    SELECT CASE WHEN (
               SELECT true FROM jobs
               WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
                 AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
               ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
           ) THEN ARRAY[NULL::text] ELSE '{}'::text[] END
           || coalesce((SELECT array_agg(k.key) FROM k WHERE k.key IS NOT NULL), '{}')
$$;

--
-- Name: jobs_held_by(text, uuid[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_held_by(worker text, job_ids uuid[]) RETURNS SETOF public.jobs
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT j.*
    FROM jobs AS j
    WHERE j.job_id = ANY(job_ids)
      AND j.worker_id = worker
      AND j.status = 'processing'
$$;

--
-- Name: jobs_inserted_project(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_inserted_project() RETURNS trigger
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

--
-- Name: jobs_lease_expired(integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_lease_expired(max_jobs integer) RETURNS SETOF public.jobs
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_next_due(text[], double precision); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_next_due(job_types text[], lookback_seconds double precision) RETURNS double precision
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    soonest timestamptz;
    since timestamptz;
    q queues;
    b queue_buckets;
BEGIN
    IF NOT EXISTS (SELECT FROM queues WHERE queues.restricted) THEN
        SELECT min(run_at) INTO soonest FROM jobs
        WHERE status IN ('pending', 'retrying') AND type = ANY(job_types);
    ELSE
        since := clock_timestamp() - make_interval(secs => lookback_seconds);
        SELECT min(run_at) INTO soonest FROM jobs
        WHERE status IN ('pending', 'retrying') AND type = ANY(job_types) AND run_at > since;
        FOR q IN SELECT * FROM queues WHERE queues.restricted AND NOT paused
                 AND rate_limit IS NOT NULL LOOP
            SELECT * INTO b FROM queue_buckets WHERE tenant = q.tenant AND queue = q.name;
            IF FOUND AND b.tokens < 1 AND jobs_queue_has_due(q.tenant, q.name, job_types) THEN
                soonest := least(soonest, b.refilled_at + make_interval(
                    secs => (1 - b.tokens) * q.rate_period_seconds / q.rate_limit));
            END IF;
        END LOOP;
    END IF;
    RETURN extract(epoch FROM soonest - clock_timestamp())::double precision;
END;
$$;

--
-- Name: jobs_notify_cancelled(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_notify_cancelled() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('ledger_cancel', NEW.job_id::text);
    RETURN NULL;
END;
$$;

--
-- Name: jobs_notify_runnable(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_notify_runnable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR OLD.status IS DISTINCT FROM NEW.status
       OR OLD.run_at IS DISTINCT FROM NEW.run_at THEN
        PERFORM pg_notify('ledger_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

--
-- Name: jobs_project_appended(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_project_appended() RETURNS trigger
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

--
-- Name: jobs_queue_has_due(text, text, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_queue_has_due(tenant_id text, q text, job_types text[]) RETURNS boolean
    LANGUAGE sql STABLE
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    AS $$
    -- Scalar subqueries, not EXISTS: the planner drops an EXISTS's ORDER BY, and with
    -- it the order that makes it walk the group's own index.
    SELECT coalesce((
        SELECT true FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types)
        ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
    ), (
        SELECT true FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NOT NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types)
        ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
    ), false)
$$;

--
-- Name: jobs_running_lost(text, uuid[], integer[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_running_lost(worker text, job_ids uuid[], attempts integer[]) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_tenant_due(text, integer, text[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_tenant_due(tenant_id text, n integer, job_types text[]) RETURNS integer
    LANGUAGE sql STABLE
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
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

--
-- Name: jobs_tenant_room(text, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_tenant_room(tenant_id text, want integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_tenant_served(text, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_tenant_served(tenant_id text, n integer) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: jobs_updated_project(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.jobs_updated_project() RETURNS trigger
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

--
-- Name: ledger_tenant(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.ledger_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT coalesce(nullif(current_setting('ledger.tenant', true), ''), 'default')
$$;

--
-- Name: ledger_tenant_named(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.ledger_tenant_named() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT nullif(current_setting('ledger.tenant', true), '')
$$;

--
-- Name: ledger_tenants(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.ledger_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: queue_buckets_tokens(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_buckets_tokens() RETURNS TABLE(tenant text, queue text, tokens double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
SELECT b.tenant, b.queue,
       least(q.rate_burst::double precision,
             b.tokens + greatest(0, extract(epoch FROM clock_timestamp() - coalesce(
                 (SELECT greatest(b.refilled_at, max(j.started_at))
                  FROM jobs AS j WHERE j.job_id = ANY(b.last_claimed)),
                 b.refilled_at))) * q.rate_limit / q.rate_period_seconds)
FROM queue_buckets AS b
JOIN queues AS q ON q.tenant = b.tenant AND q.name = b.queue
WHERE q.rate_limit IS NOT NULL
ORDER BY b.tenant, b.queue;
$$;

--
-- Name: queue_project_event(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_project_event() RETURNS trigger
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

--
-- Name: queue_retry_policy(text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_retry_policy(tenant_id text, queue_name text) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT q.retry_policy FROM queues AS q WHERE q.tenant = tenant_id AND q.name = queue_name
$$;

--
-- Name: queue_view_step(public.queues, public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queue_view_step(s public.queues, e public.events) RETURNS public.queues
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    n queues;
BEGIN
    IF s.name IS NULL AND e.version <> 1 THEN
        RAISE EXCEPTION 'event % for queue stream % before its first', e.type, e.job_id;
    END IF;
    n.tenant := e.tenant;
    n.name := e.data->>'queue';
    n.stream_id := e.job_id;
    n.version := e.version;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    n.paused := coalesce(s.paused, false);
    n.fairness := coalesce(s.fairness, 'fifo');
    n.concurrency := s.concurrency;
    n.rate_limit := s.rate_limit;
    n.rate_period_seconds := s.rate_period_seconds;
    n.rate_burst := s.rate_burst;
    n.per_key_concurrency := s.per_key_concurrency;
    n.retry_policy := s.retry_policy;
    CASE e.type
        WHEN 'queue.configured.v1' THEN
            n.concurrency := (e.data->>'concurrency')::integer;
            n.rate_limit := (e.data->'rate_limit'->>'limit')::integer;
            n.rate_period_seconds := (e.data->'rate_limit'->>'period_seconds')::double precision;
            n.rate_burst := (e.data->'rate_limit'->>'burst')::integer;
            n.per_key_concurrency := (e.data->>'per_key_concurrency')::integer;
            n.fairness := e.data->>'fairness';
            n.retry_policy := e.data->'retry_policy';
        WHEN 'queue.paused.v1' THEN
            n.paused := true;
        WHEN 'queue.resumed.v1' THEN
            n.paused := false;
        ELSE
            RAISE EXCEPTION 'unknown event type % (queue stream %)', e.type, e.job_id;
    END CASE;
    RETURN n;
END;
$$;

--
-- Name: queues_limits_all(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.queues_limits_all() RETURNS TABLE(tenant text, name text, paused boolean, concurrency integer, rate_limit integer, runnable bigint, running bigint, tokens double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: schedule_project_event(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.schedule_project_event() RETURNS trigger
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

--
-- Name: schedules; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schedules (
    tenant text NOT NULL,
    schedule_id text NOT NULL,
    stream_id uuid NOT NULL,
    version integer NOT NULL,
    spec jsonb NOT NULL,
    paused boolean NOT NULL,
    note text,
    deleted boolean NOT NULL,
    next_slot timestamp with time zone,
    last_slot timestamp with time zone,
    last_job_id uuid,
    buffered timestamp with time zone[] NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    CONSTRAINT schedules_schedule_id_check CHECK ((schedule_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'::text)),
    CONSTRAINT schedules_version_check CHECK ((version >= 1))
);

ALTER TABLE ONLY public.schedules FORCE ROW LEVEL SECURITY;

--
-- Name: schedule_view_step(public.schedules, public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.schedule_view_step(s public.schedules, e public.events) RETURNS public.schedules
    LANGUAGE plpgsql IMMUTABLE
    AS $$
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

--
-- Name: schedules_due(timestamp with time zone, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.schedules_due(now timestamp with time zone, max_schedules integer) RETURNS TABLE(tenant text, schedule_id text, next_slot timestamp with time zone)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: schedules_next_slot(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.schedules_next_slot() RETURNS timestamp with time zone
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT min(next_slot)
    FROM schedules
    WHERE NOT deleted AND NOT paused AND next_slot IS NOT NULL
$$;

--
-- Name: tenant_project_event(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tenant_project_event() RETURNS trigger
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

--
-- Name: tenants; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tenants (
    tenant text NOT NULL,
    stream_id uuid NOT NULL,
    version integer NOT NULL,
    max_queued integer,
    max_running integer,
    weight integer DEFAULT 1 NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    CONSTRAINT tenants_max_queued_check CHECK ((max_queued >= 0)),
    CONSTRAINT tenants_max_running_check CHECK ((max_running >= 0)),
    CONSTRAINT tenants_tenant_check CHECK ((tenant ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'::text)),
    CONSTRAINT tenants_version_check CHECK ((version >= 1)),
    CONSTRAINT tenants_weight_check CHECK ((weight >= 1))
);

ALTER TABLE ONLY public.tenants FORCE ROW LEVEL SECURITY;

--
-- Name: tenant_view_step(public.tenants, public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tenant_view_step(s public.tenants, e public.events) RETURNS public.tenants
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    n tenants;
BEGIN
    IF s.tenant IS NULL AND e.version <> 1 THEN
        RAISE EXCEPTION 'event % for tenant stream % before its first', e.type, e.job_id;
    END IF;
    IF e.type <> 'tenant.configured.v1' THEN
        RAISE EXCEPTION 'unknown event type % (tenant stream %)', e.type, e.job_id;
    END IF;
    n.tenant := e.tenant;
    n.stream_id := e.job_id;
    n.version := e.version;
    n.max_queued := (e.data->>'max_queued')::integer;
    n.max_running := (e.data->>'max_running')::integer;
    n.weight := (e.data->>'weight')::integer;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    RETURN n;
END;
$$;

--
-- Name: tenants_all(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.tenants_all() RETURNS SETOF public.tenants
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT * FROM tenants ORDER BY tenant
$$;

--
-- Name: webhook_counts_all(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_counts_all() RETURNS TABLE(pending bigint, endpoints_disabled bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'),
           (SELECT count(*) FROM webhook_endpoints WHERE disabled AND NOT deleted)
$$;

--
-- Name: webhook_deliveries_claim(text, integer, double precision); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_deliveries_claim(worker text, max_n integer, seconds double precision) RETURNS TABLE(delivery_id uuid, tenant text, endpoint_id uuid, url text, job_id uuid, event_type text, body text, version integer, attempts integer, tries integer, created_at timestamp with time zone, secrets text[])
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    WITH due AS (
        SELECT d.delivery_id
        FROM webhook_deliveries AS d
        WHERE d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
          AND (d.endpoint_id IS NULL OR EXISTS (
              SELECT FROM webhook_endpoints AS w
              WHERE w.endpoint_id = d.endpoint_id AND NOT w.disabled AND NOT w.deleted))
        ORDER BY d.next_attempt_at
        LIMIT max_n
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE webhook_deliveries AS d
        SET leased_by = worker, lease_until = now() + make_interval(secs => seconds)
        FROM due
        WHERE d.delivery_id = due.delivery_id
        RETURNING d.*
    )
    SELECT l.delivery_id, l.tenant, l.endpoint_id, coalesce(w.url, l.url), l.job_id,
           l.event_type, l.body, l.version, l.attempts, l.tries, l.created_at,
           ARRAY(SELECT s.secret FROM webhook_secrets AS s
                 WHERE s.endpoint_id = l.endpoint_id
                   AND (s.expires_at IS NULL OR s.expires_at > now())
                 ORDER BY s.created_at DESC)
    FROM leased AS l
    LEFT JOIN webhook_endpoints AS w ON w.endpoint_id = l.endpoint_id
$$;

--
-- Name: webhook_deliveries_folded(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_deliveries_folded() RETURNS TABLE(delivery_id uuid, tenant text, version integer, attempts integer, tries integer, status text, next_attempt_at timestamp with time zone, last_status_code integer, last_error text, last_attempt_at timestamp with time zone)
    LANGUAGE sql STABLE
    AS $$
    WITH stream AS (
        SELECT e.job_id, e.tenant, e.version, e.type, e.data, e.occurred_at,
               e.type = 'webhook.delivery_attempted.v1' AS attempt,
               coalesce(max(e.version) FILTER (WHERE e.type = 'webhook.delivery_redelivered.v1')
                        OVER (PARTITION BY e.job_id), 0) AS redelivered_at
        FROM events AS e
        WHERE e.type IN ('webhook.delivery_attempted.v1', 'webhook.delivery_redelivered.v1')
    ), folded AS (
        SELECT s.job_id, min(s.tenant) AS tenant, max(s.version) AS version,
               (count(*) FILTER (WHERE s.attempt))::integer AS attempts,
               (count(*) FILTER (WHERE s.attempt AND s.version > s.redelivered_at))::integer
                   AS tries,
               (array_agg(CASE WHEN NOT s.attempt OR s.data->>'outcome' = 'retrying'
                               THEN 'pending' ELSE s.data->>'outcome' END
                          ORDER BY s.version DESC))[1] AS status,
               (array_agg(CASE WHEN s.attempt THEN (s.data->>'next_attempt_at')::timestamptz
                               ELSE s.occurred_at END
                          ORDER BY s.version DESC)
                    FILTER (WHERE NOT s.attempt OR s.data->>'next_attempt_at' IS NOT NULL))[1]
                   AS next_attempt_at,
               (array_agg((s.data->>'status_code')::integer ORDER BY s.version DESC)
                    FILTER (WHERE s.attempt))[1] AS last_status_code,
               (array_agg(s.data->>'error' ORDER BY s.version DESC)
                    FILTER (WHERE s.attempt))[1] AS last_error,
               (array_agg(s.occurred_at ORDER BY s.version DESC)
                    FILTER (WHERE s.attempt))[1] AS last_attempt_at
        FROM stream AS s
        GROUP BY s.job_id
    )
    SELECT d.delivery_id, d.tenant, coalesce(f.version, 0), coalesce(f.attempts, 0),
           coalesce(f.tries, 0), coalesce(f.status, 'pending'),
           coalesce(f.next_attempt_at, d.created_at), f.last_status_code, f.last_error,
           f.last_attempt_at
    FROM webhook_deliveries AS d
    LEFT JOIN folded AS f ON f.job_id = d.delivery_id
    UNION ALL
    SELECT f.job_id, f.tenant, f.version, f.attempts, f.tries, f.status, f.next_attempt_at,
           f.last_status_code, f.last_error, f.last_attempt_at
    FROM folded AS f
    WHERE NOT EXISTS (SELECT FROM webhook_deliveries AS d WHERE d.delivery_id = f.job_id)
$$;

--
-- Name: webhook_deliveries_next_due(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_deliveries_next_due() RETURNS double precision
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT greatest(extract(epoch FROM min(d.next_attempt_at) - now()), 0)::double precision
    FROM webhook_deliveries AS d
    WHERE d.status = 'pending'
      AND (d.endpoint_id IS NULL OR EXISTS (
          SELECT FROM webhook_endpoints AS w
          WHERE w.endpoint_id = d.endpoint_id AND NOT w.disabled AND NOT w.deleted))
$$;

--
-- Name: webhook_delivery_apply(public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_delivery_apply(e public.events) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF e.type = 'webhook.delivery_attempted.v1' THEN
        UPDATE webhook_deliveries
        SET version = e.version,
            attempts = attempts + 1,
            tries = tries + 1,
            status = CASE e.data->>'outcome'
                WHEN 'retrying' THEN 'pending' ELSE e.data->>'outcome' END,
            next_attempt_at = coalesce((e.data->>'next_attempt_at')::timestamptz,
                                       next_attempt_at),
            last_status_code = (e.data->>'status_code')::integer,
            last_error = e.data->>'error',
            last_attempt_at = e.occurred_at,
            leased_by = NULL,
            lease_until = NULL
        WHERE delivery_id = e.job_id AND version = e.version - 1;
    ELSIF e.type = 'webhook.delivery_redelivered.v1' THEN
        UPDATE webhook_deliveries
        SET version = e.version, status = 'pending', tries = 0,
            next_attempt_at = e.occurred_at, leased_by = NULL, lease_until = NULL
        WHERE delivery_id = e.job_id AND version = e.version - 1;
    ELSE
        RAISE EXCEPTION 'unknown event type % (webhook delivery %)', e.type, e.job_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % for webhook delivery % at version % out of order',
            e.type, e.job_id, e.version;
    END IF;
END;
$$;

--
-- Name: webhook_endpoint_apply(public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_endpoint_apply(e public.events) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    s webhook_endpoints;
BEGIN
    SELECT * INTO s FROM webhook_endpoints WHERE endpoint_id = e.job_id FOR UPDATE;
    IF NOT FOUND THEN
        s := NULL;
    END IF;
    s := webhook_endpoint_step(s, e);
    INSERT INTO webhook_endpoints SELECT s.*
    ON CONFLICT (endpoint_id) DO UPDATE
    SET version = excluded.version, url = excluded.url, events = excluded.events,
        queues = excluded.queues, types = excluded.types,
        description = excluded.description, secret_id = excluded.secret_id,
        disabled = excluded.disabled, disabled_reason = excluded.disabled_reason,
        deleted = excluded.deleted, updated_by = excluded.updated_by,
        updated_at = excluded.updated_at;
END;
$$;

--
-- Name: webhook_endpoints; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhook_endpoints (
    endpoint_id uuid NOT NULL,
    tenant text NOT NULL,
    version integer NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    queues text[],
    types text[],
    description text,
    secret_id text NOT NULL,
    disabled boolean DEFAULT false NOT NULL,
    disabled_reason text,
    deleted boolean DEFAULT false NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    CONSTRAINT webhook_endpoints_version_check CHECK ((version >= 1))
);

ALTER TABLE ONLY public.webhook_endpoints FORCE ROW LEVEL SECURITY;

--
-- Name: webhook_endpoint_step(public.webhook_endpoints, public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_endpoint_step(s public.webhook_endpoints, e public.events) RETURNS public.webhook_endpoints
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    n webhook_endpoints := s;
BEGIN
    IF (s.endpoint_id IS NULL) <> (e.type = 'webhook.endpoint_created.v1') THEN
        RAISE EXCEPTION 'event % for webhook endpoint % out of order', e.type, e.job_id;
    END IF;
    n.version := e.version;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    CASE e.type
        WHEN 'webhook.endpoint_created.v1', 'webhook.endpoint_updated.v1' THEN
            IF e.type = 'webhook.endpoint_created.v1' THEN
                n.endpoint_id := e.job_id;
                n.tenant := e.tenant;
                n.secret_id := e.data->>'secret_id';
                n.created_by := e.actor;
                n.created_at := e.occurred_at;
                n.deleted := false;
            END IF;
            n.url := e.data->>'url';
            n.events := ARRAY(SELECT jsonb_array_elements_text(e.data->'events'));
            n.queues := CASE WHEN jsonb_typeof(e.data->'queues') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(e.data->'queues')) END;
            n.types := CASE WHEN jsonb_typeof(e.data->'types') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(e.data->'types')) END;
            n.description := e.data->>'description';
            n.disabled := coalesce((e.data->>'disabled')::boolean, false);
            n.disabled_reason := NULL;
        WHEN 'webhook.endpoint_secret_rotated.v1' THEN
            n.secret_id := e.data->>'secret_id';
        WHEN 'webhook.endpoint_disabled.v1' THEN
            n.disabled := true;
            n.disabled_reason := e.data->>'reason';
        WHEN 'webhook.endpoint_deleted.v1' THEN
            n.deleted := true;
        WHEN 'webhook.endpoint_tested.v1' THEN
            NULL;
        ELSE
            RAISE EXCEPTION 'unknown event type % (webhook endpoint %)', e.type, e.job_id;
    END CASE;
    RETURN n;
END;
$$;

--
-- Name: webhook_endpoints_folded(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_endpoints_folded() RETURNS SETOF public.webhook_endpoints
    LANGUAGE sql STABLE
    AS $$
    SELECT (s.state).*
    FROM (
        SELECT webhook_endpoint_fold(e ORDER BY e.version) AS state
        FROM events AS e
        WHERE e.type LIKE 'webhook.endpoint\_%'
        GROUP BY e.job_id
    ) AS s
$$;

--
-- Name: webhook_job_body(text, public.events, public.jobs); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_job_body(kind text, e public.events, j public.jobs) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT jsonb_build_object(
        'type', kind,
        'timestamp', webhook_time(e.occurred_at),
        'data', jsonb_build_object(
            'job_id', j.job_id,
            'type', j.type,
            'queue', j.queue,
            'status', j.status,
            'attempt', j.attempt,
            'max_attempts', j.max_attempts,
            'result', j.result,
            'error', j.error,
            'created_at', webhook_time(j.created_at),
            'completed_at', webhook_time(j.completed_at),
            'tenant', j.tenant,
            'event', jsonb_build_object(
                'type', e.type,
                'version', e.version,
                'cursor', e.txid::text || '.' || e.position::text,
                'hash', encode(e.hash, 'hex')
            )
        )
    )::text
$$;

--
-- Name: webhook_kind(public.events); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_kind(e public.events) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT CASE
        WHEN e.type = 'job.completed.v1' THEN 'job.completed'
        WHEN e.type = 'job.cancelled.v1' THEN 'job.cancelled'
        WHEN e.type IN ('job.failed.v1', 'job.retry_scheduled.v1', 'job.lease_expired.v1')
            THEN CASE WHEN e.data->>'next_attempt_at' IS NULL THEN 'job.failed'
                      ELSE 'job.retrying' END
    END
$$;

--
-- Name: webhook_time(timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhook_time(t timestamp with time zone) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

--
-- Name: webhooks_project_appended(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.webhooks_project_appended() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    e events;
    created bigint := 0;
    more bigint;
    with_webhook boolean;
    webhook_events boolean;
    reported boolean;
    to_endpoints boolean := false;
    to_job_webhooks boolean := false;
BEGIN
    SELECT coalesce(bool_or(a.type = 'job.submitted.v1' AND a.version = 1
                            AND a.data ? 'webhook'), false),
           coalesce(bool_or(a.type LIKE 'webhook.%'), false),
           -- the types webhook_kind reports (sql/0080)
           coalesce(bool_or(a.type IN ('job.completed.v1', 'job.cancelled.v1', 'job.failed.v1',
                                       'job.retry_scheduled.v1', 'job.lease_expired.v1')),
                    false)
    INTO with_webhook, webhook_events, reported
    FROM appended AS a;
    IF NOT (with_webhook OR webhook_events OR reported) THEN
        RETURN NULL;
    END IF;

    IF with_webhook THEN
        INSERT INTO job_webhooks (job_id, tenant, url)
        SELECT a.job_id, a.tenant, a.data->'webhook'->>'url'
        FROM appended AS a
        WHERE a.type = 'job.submitted.v1' AND a.version = 1 AND a.data ? 'webhook'
        ON CONFLICT (job_id) DO NOTHING;
    END IF;

    IF webhook_events THEN
        FOR e IN SELECT * FROM appended WHERE type LIKE 'webhook.%' ORDER BY position LOOP
            IF e.type LIKE 'webhook.endpoint\_%' THEN
                PERFORM webhook_endpoint_apply(e);
                IF e.type = 'webhook.endpoint_tested.v1' THEN
                    INSERT INTO webhook_deliveries (delivery_id, tenant, endpoint_id, event_type,
                                                    event_position, body, next_attempt_at,
                                                    created_at)
                    VALUES (gen_random_uuid(), e.tenant, e.job_id, 'webhook.test', e.position,
                            jsonb_build_object(
                                'type', 'webhook.test',
                                'timestamp', webhook_time(e.occurred_at),
                                'data', jsonb_build_object('endpoint_id', e.job_id,
                                                           'requested_by', e.actor))::text,
                            e.occurred_at, e.occurred_at);
                    created := created + 1;
                END IF;
            ELSE
                PERFORM webhook_delivery_apply(e);
            END IF;
        END LOOP;
    END IF;

    IF reported THEN
        SELECT EXISTS (SELECT FROM webhook_endpoints AS w WHERE NOT w.disabled AND NOT w.deleted),
               EXISTS (SELECT FROM job_webhooks)
        INTO to_endpoints, to_job_webhooks;
    END IF;

    IF to_endpoints THEN
        INSERT INTO webhook_deliveries (delivery_id, tenant, endpoint_id, job_id, event_type,
                                        event_position, body, next_attempt_at, created_at)
        SELECT gen_random_uuid(), a.tenant, w.endpoint_id, a.job_id, k.kind, a.position,
               webhook_job_body(k.kind, a::events, j), a.occurred_at, a.occurred_at
        FROM appended AS a
        CROSS JOIN LATERAL (SELECT webhook_kind(a::events) AS kind) AS k
        JOIN jobs AS j ON j.job_id = a.job_id
        JOIN webhook_endpoints AS w
            ON w.tenant = a.tenant
           AND NOT w.disabled AND NOT w.deleted
           AND k.kind = ANY(w.events)
           AND (w.queues IS NULL OR j.queue = ANY(w.queues))
           AND (w.types IS NULL OR j.type = ANY(w.types))
        WHERE k.kind IS NOT NULL;
        GET DIAGNOSTICS more = ROW_COUNT;
        created := created + more;
    END IF;

    IF to_job_webhooks THEN
        INSERT INTO webhook_deliveries (delivery_id, tenant, url, job_id, event_type,
                                        event_position, body, next_attempt_at, created_at)
        SELECT gen_random_uuid(), a.tenant, h.url, a.job_id, k.kind, a.position,
               webhook_job_body(k.kind, a::events, j), a.occurred_at, a.occurred_at
        FROM appended AS a
        CROSS JOIN LATERAL (SELECT webhook_kind(a::events) AS kind) AS k
        JOIN job_webhooks AS h ON h.job_id = a.job_id
        JOIN jobs AS j ON j.job_id = a.job_id
        WHERE k.kind IN ('job.completed', 'job.failed', 'job.cancelled');
        GET DIAGNOSTICS more = ROW_COUNT;
        created := created + more;
    END IF;

    IF created > 0 THEN
        PERFORM pg_notify('ledger_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$;

--
-- Name: worker_slots_usage(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.worker_slots_usage() RETURNS TABLE(processes bigint, slots bigint, busy bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

--
-- Name: workflow_job_lock(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.workflow_job_lock() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
BEGIN
    PERFORM FROM workflow_jobs WHERE job_id = NEW.job_id FOR UPDATE;
    RETURN NEW;
END;
$$;

--
-- Name: workflow_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflow_jobs (
    tenant text NOT NULL,
    workflow_id uuid NOT NULL,
    job_id uuid NOT NULL,
    name text NOT NULL,
    on_upstream_failure text NOT NULL,
    submitted_at timestamp with time zone NOT NULL,
    "position" bigint NOT NULL,
    CONSTRAINT workflow_jobs_on_upstream_failure_check CHECK ((on_upstream_failure = ANY (ARRAY['cancel'::text, 'run'::text, 'skip'::text])))
);

ALTER TABLE ONLY public.workflow_jobs FORCE ROW LEVEL SECURITY;

--
-- Name: workflow_jobs_folded(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.workflow_jobs_folded() RETURNS SETOF public.workflow_jobs
    LANGUAGE sql STABLE
    AS $$
    SELECT e.tenant, (e.data->>'workflow_id')::uuid, e.job_id,
           coalesce(e.data->>'name', e.job_id::text),
           coalesce(e.data->>'on_upstream_failure', 'cancel'), e.occurred_at, e.position
    FROM events AS e
    WHERE e.type = 'job.submitted.v1' AND e.data ? 'workflow_id'
$$;

--
-- Name: workflow_resolve(uuid[], text[], bytea[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.workflow_resolve(ids uuid[], endings text[], causes bytea[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
DECLARE
    children uuid[];
    d_ids uuid[];
    d_versions integer[];
    d_types text[];
    d_datas jsonb[];
    appended_ids uuid[];
    appended_hashes bytea[];
    unblocked integer := 0;
    skipped integer := 0;
    cancelled integer := 0;
    n_unblocked integer;
    n_skipped integer;
BEGIN
    WHILE ids IS NOT NULL AND cardinality(ids) > 0 LOOP
        SELECT array_agg(DISTINCT d.job_id ORDER BY d.job_id) INTO children
        FROM job_dependencies AS d
        WHERE d.depends_on = ANY(ids);
        EXIT WHEN children IS NULL;
        PERFORM FROM (
            SELECT w.job_id FROM workflow_jobs AS w
            WHERE w.job_id = ANY(children)
            ORDER BY w.job_id
            FOR UPDATE
        ) AS locked;
        UPDATE job_dependencies AS d
        SET upstream_status = x.ending, cause = x.cause
        FROM unnest(ids, endings, causes) AS x (id, ending, cause)
        WHERE d.job_id = ANY(children) AND d.depends_on = x.id;
        -- Each dependant as the ledger recorded it (its latest event: still blocked?) and
        -- its dependency rows as they are now.
        SELECT array_agg(v.job_id ORDER BY v.job_id),
               array_agg(v.version + 1 ORDER BY v.job_id),
               array_agg(v.verdict ORDER BY v.job_id),
               array_agg(
                   jsonb_build_object(
                       'upstream_job_id', v.dep_id,
                       'upstream_status', v.dep_status,
                       'cause', encode(v.dep_cause, 'hex'))
                   || CASE v.verdict
                       WHEN 'job.cancelled.v1' THEN jsonb_build_object('reason', format(
                           'upstream job %s ended %s', v.dep_id, v.dep_status))
                       WHEN 'job.unblocked.v1' THEN jsonb_build_object('upstream', (
                           SELECT coalesce(jsonb_object_agg(
                                      w.name, CASE WHEN d.upstream_status = 'completed'
                                                   THEN res.result END), '{}')
                           FROM job_dependencies AS d
                           JOIN workflow_jobs AS w ON w.job_id = d.depends_on
                           LEFT JOIN LATERAL (
                               SELECT e.data->'result' AS result FROM events AS e
                               WHERE e.job_id = d.depends_on AND e.type = 'job.completed.v1'
                               ORDER BY e.version DESC LIMIT 1
                           ) AS res ON true
                           WHERE d.job_id = v.job_id))
                       ELSE '{}'::jsonb
                   END
                   ORDER BY v.job_id)
        INTO d_ids, d_versions, d_types, d_datas
        FROM (
            SELECT c.job_id, latest.version,
                   CASE
                       WHEN c.fails THEN
                           CASE c.mode WHEN 'skip' THEN 'job.skipped.v1' ELSE 'job.cancelled.v1' END
                       ELSE 'job.unblocked.v1'
                   END AS verdict,
                   CASE WHEN c.fails THEN failed.depends_on ELSE ended.depends_on END AS dep_id,
                   CASE WHEN c.fails THEN failed.upstream_status
                        ELSE ended.upstream_status END AS dep_status,
                   CASE WHEN c.fails THEN failed.cause ELSE ended.cause END AS dep_cause
            FROM (
                -- Each dependant's mode and dependency rows in one pass (correlated, so the
                -- cost follows the wave, not every open dependency in the table).
                SELECT k.job_id, m.mode, n.open,
                       n.failing > 0 AND m.mode <> 'run' AS fails
                FROM unnest(children) AS k (job_id)
                CROSS JOIN LATERAL (
                    SELECT coalesce(max(w.on_upstream_failure), 'cancel') AS mode
                    FROM workflow_jobs AS w WHERE w.job_id = k.job_id
                ) AS m
                CROSS JOIN LATERAL (
                    SELECT count(*) FILTER (WHERE d.upstream_status IS NULL) AS open,
                           count(*) FILTER (WHERE d.upstream_status IN ('failed', 'cancelled'))
                               AS failing
                    FROM job_dependencies AS d WHERE d.job_id = k.job_id
                ) AS n
            ) AS c
            JOIN LATERAL (
                SELECT e.version, e.type, e.data FROM events AS e
                WHERE e.job_id = c.job_id ORDER BY e.version DESC LIMIT 1
            ) AS latest ON latest.type = 'job.submitted.v1'
                        OR (latest.type = 'job.retried.v1' AND (latest.data->>'blocked')::boolean)
            LEFT JOIN LATERAL (
                SELECT d.depends_on, d.upstream_status, d.cause FROM job_dependencies AS d
                WHERE c.fails AND d.job_id = c.job_id
                  AND d.upstream_status IN ('failed', 'cancelled')
                ORDER BY d.depends_on LIMIT 1
            ) AS failed ON true
            LEFT JOIN LATERAL (
                SELECT d.depends_on, d.upstream_status, d.cause FROM job_dependencies AS d
                WHERE NOT c.fails AND d.job_id = c.job_id AND d.depends_on = ANY(ids)
                ORDER BY d.depends_on LIMIT 1
            ) AS ended ON true
            WHERE c.fails OR c.open = 0
        ) AS v;
        EXIT WHEN d_ids IS NULL;
        -- Every event appended (an aggregate reads the whole append), then the next wave:
        -- the dependants that ended (cancelled or skipped), with their events' hashes.
        SELECT array_agg(a.job_id ORDER BY a.job_id), array_agg(a.hash ORDER BY a.job_id)
        INTO appended_ids, appended_hashes
        FROM events_append(d_ids, d_versions, d_types,
                           array_fill('ledger:workflow'::text, ARRAY[cardinality(d_ids)]),
                           d_datas) AS a;
        -- The same statement counts the wave's decisions (no statement more per wave).
        SELECT array_agg(t.job_id ORDER BY t.job_id) FILTER (WHERE t.type <> 'job.unblocked.v1'),
               array_agg(CASE t.type WHEN 'job.skipped.v1' THEN 'skipped' ELSE 'cancelled' END
                         ORDER BY t.job_id) FILTER (WHERE t.type <> 'job.unblocked.v1'),
               array_agg(a.hash ORDER BY t.job_id) FILTER (WHERE t.type <> 'job.unblocked.v1'),
               count(*) FILTER (WHERE t.type = 'job.unblocked.v1'),
               count(*) FILTER (WHERE t.type = 'job.skipped.v1')
        INTO ids, endings, causes, n_unblocked, n_skipped
        FROM unnest(d_ids, d_types) AS t (job_id, type)
        JOIN unnest(appended_ids, appended_hashes) AS a (job_id, hash) ON a.job_id = t.job_id;
        unblocked := unblocked + n_unblocked;
        skipped := skipped + n_skipped;
        cancelled := cancelled + cardinality(d_ids) - n_unblocked - n_skipped;
    END LOOP;
    IF unblocked + skipped + cancelled > 0 THEN
        PERFORM set_config('ledger.workflow_decided', jsonb_build_object(
            'unblocked', unblocked, 'skipped', skipped, 'cancelled', cancelled)::text, true);
    END IF;
END;
$$;

--
-- Name: workflow_upstream(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.workflow_upstream(job uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
    SELECT e.data->'upstream' FROM events AS e
    WHERE e.job_id = job AND e.type = 'job.unblocked.v1'
      AND e.tenant = coalesce(ledger_tenant_named(), e.tenant)
    ORDER BY e.version DESC LIMIT 1
$$;

--
-- Name: workflows; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workflows (
    tenant text NOT NULL,
    workflow_id uuid NOT NULL,
    submitted_by text NOT NULL,
    submitted_at timestamp with time zone NOT NULL,
    jobs integer NOT NULL
);

ALTER TABLE ONLY public.workflows FORCE ROW LEVEL SECURITY;

--
-- Name: workflows_folded(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.workflows_folded() RETURNS SETOF public.workflows
    LANGUAGE sql STABLE
    AS $$
    SELECT e.tenant, (e.data->>'workflow_id')::uuid, min(e.actor), min(e.occurred_at),
           count(*)::integer
    FROM events AS e
    WHERE e.type = 'job.submitted.v1' AND e.data ? 'workflow_id'
    GROUP BY 1, 2
$$;

--
-- Name: workflows_resolve_appended(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.workflows_resolve_appended() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'public', 'pg_temp'
    AS $$
DECLARE
    ids uuid[];
    endings text[];
    causes bytea[];
    waiting uuid[];
    waiting_endings text[];
    waiting_causes bytea[];
    in_workflow boolean;
    with_dependencies boolean;
    retried boolean;
    ended boolean;
BEGIN
    IF coalesce(current_setting('ledger.workflow_resolving', true), '') = 'on' THEN
        RETURN NULL;  -- appended by workflow_resolve, which resolves it in its next wave
    END IF;
    IF current_setting('ledger.workflow_decided', true) <> '' THEN
        PERFORM set_config('ledger.workflow_decided', '', true);  -- an earlier append's
    END IF;
    SELECT coalesce(bool_or(a.type = 'job.submitted.v1' AND a.data ? 'workflow_id'), false),
           coalesce(bool_or(a.type = 'job.submitted.v1'
                            AND jsonb_typeof(a.data->'depends_on') = 'array'), false),
           coalesce(bool_or(a.type = 'job.retried.v1'), false),
           coalesce(bool_or(a.type IN ('job.completed.v1', 'job.failed.v1',
                                       'job.retry_scheduled.v1', 'job.lease_expired.v1',
                                       'job.cancelled.v1', 'job.skipped.v1')), false)
    INTO in_workflow, with_dependencies, retried, ended
    FROM appended AS a;
    IF NOT (in_workflow OR with_dependencies OR retried OR ended) THEN
        RETURN NULL;
    END IF;
    IF in_workflow THEN
        INSERT INTO workflows (tenant, workflow_id, submitted_by, submitted_at, jobs)
        SELECT a.tenant, (a.data->>'workflow_id')::uuid, min(a.actor), min(a.occurred_at), count(*)
        FROM appended AS a
        WHERE a.type = 'job.submitted.v1' AND a.data ? 'workflow_id'
        GROUP BY 1, 2;
        INSERT INTO workflow_jobs (tenant, workflow_id, job_id, name, on_upstream_failure,
                                   submitted_at, "position")
        SELECT a.tenant, (a.data->>'workflow_id')::uuid, a.job_id,
               coalesce(a.data->>'name', a.job_id::text),
               coalesce(a.data->>'on_upstream_failure', 'cancel'), a.occurred_at, a.position
        FROM appended AS a
        WHERE a.type = 'job.submitted.v1' AND a.data ? 'workflow_id';
    END IF;
    IF with_dependencies THEN
        INSERT INTO job_dependencies (tenant, job_id, depends_on)
        SELECT a.tenant, a.job_id, d.id::uuid
        FROM appended AS a
        CROSS JOIN LATERAL jsonb_array_elements_text(a.data->'depends_on') AS d (id)
        WHERE a.type = 'job.submitted.v1' AND jsonb_typeof(a.data->'depends_on') = 'array';
    END IF;
    IF retried THEN
        UPDATE job_dependencies AS d
        SET upstream_status = NULL, cause = NULL
        FROM appended AS a
        WHERE a.type = 'job.retried.v1' AND d.depends_on = a.job_id
          AND d.upstream_status IS NOT NULL;
    END IF;
    -- job_event_ending (sql/0077) is NULL for every type outside `ended`'s list.
    IF ended THEN
        SELECT array_agg(a.job_id ORDER BY a.position),
               array_agg(job_event_ending(a.type, a.data) ORDER BY a.position),
               array_agg(a.hash ORDER BY a.position)
        INTO ids, endings, causes
        FROM appended AS a
        WHERE job_event_ending(a.type, a.data) IS NOT NULL
          AND EXISTS (SELECT FROM job_dependencies AS d WHERE d.depends_on = a.job_id);
    END IF;
    -- A job retried back to blocked whose dependencies have all ended is decided now, as
    -- their ends decided it (sql/0079): through one of them, its ending and its cause.
    IF retried THEN
        SELECT array_agg(x.depends_on), array_agg(x.upstream_status), array_agg(x.cause)
        INTO waiting, waiting_endings, waiting_causes
        FROM appended AS a
        CROSS JOIN LATERAL (
            SELECT d.depends_on, d.upstream_status, d.cause FROM job_dependencies AS d
            WHERE d.job_id = a.job_id ORDER BY d.depends_on LIMIT 1
        ) AS x
        WHERE a.type = 'job.retried.v1' AND (a.data->>'blocked')::boolean
          AND NOT EXISTS (SELECT FROM job_dependencies AS d
                          WHERE d.job_id = a.job_id AND d.upstream_status IS NULL);
    END IF;
    IF waiting IS NOT NULL THEN
        ids := coalesce(ids, '{}') || waiting;
        endings := coalesce(endings, '{}') || waiting_endings;
        causes := coalesce(causes, '{}') || waiting_causes;
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('ledger.workflow_resolving', 'on', true);
    PERFORM workflow_resolve(ids, endings, causes);
    PERFORM set_config('ledger.workflow_resolving', '', true);
    RETURN NULL;
END;
$$;

--
-- Name: job_view_fold(public.events); Type: AGGREGATE; Schema: public; Owner: -
--

CREATE AGGREGATE public.job_view_fold(public.events) (
    SFUNC = public.job_view_evolve,
    STYPE = public.jobs
);

--
-- Name: queue_view_fold(public.events); Type: AGGREGATE; Schema: public; Owner: -
--

CREATE AGGREGATE public.queue_view_fold(public.events) (
    SFUNC = public.queue_view_step,
    STYPE = public.queues
);

--
-- Name: schedule_view_fold(public.events); Type: AGGREGATE; Schema: public; Owner: -
--

CREATE AGGREGATE public.schedule_view_fold(public.events) (
    SFUNC = public.schedule_view_step,
    STYPE = public.schedules
);

--
-- Name: tenant_view_fold(public.events); Type: AGGREGATE; Schema: public; Owner: -
--

CREATE AGGREGATE public.tenant_view_fold(public.events) (
    SFUNC = public.tenant_view_step,
    STYPE = public.tenants
);

--
-- Name: webhook_endpoint_fold(public.events); Type: AGGREGATE; Schema: public; Owner: -
--

CREATE AGGREGATE public.webhook_endpoint_fold(public.events) (
    SFUNC = public.webhook_endpoint_step,
    STYPE = public.webhook_endpoints
);

--
-- Name: audit_checkpoints; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_checkpoints (
    checkpoint_id bigint NOT NULL,
    txid bigint NOT NULL,
    "position" bigint NOT NULL,
    event_count bigint NOT NULL,
    digest bytea NOT NULL,
    base_txid bigint NOT NULL,
    base_position bigint NOT NULL,
    base_count bigint NOT NULL,
    base_digest bytea NOT NULL,
    witness bytea DEFAULT '\x'::bytea NOT NULL,
    signature bytea NOT NULL,
    key_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    frontier bytea,
    tenant text NOT NULL,
    CONSTRAINT audit_checkpoints_base_digest_check CHECK ((octet_length(base_digest) = 32)),
    CONSTRAINT audit_checkpoints_check CHECK (((base_count >= 0) AND (base_count <= event_count))),
    CONSTRAINT audit_checkpoints_digest_check CHECK ((octet_length(digest) = 32)),
    CONSTRAINT audit_checkpoints_event_count_check CHECK ((event_count >= 0)),
    CONSTRAINT audit_checkpoints_frontier_check CHECK (((octet_length(frontier) % 32) = 0)),
    CONSTRAINT audit_checkpoints_signature_check CHECK ((octet_length(signature) = 64))
);

ALTER TABLE ONLY public.audit_checkpoints FORCE ROW LEVEL SECURITY;

--
-- Name: audit_checkpoints_checkpoint_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.audit_checkpoints ALTER COLUMN checkpoint_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.audit_checkpoints_checkpoint_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: audit_tree_heads; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_tree_heads (
    key_id text NOT NULL,
    tree_size bigint NOT NULL,
    txid bigint NOT NULL,
    "position" bigint NOT NULL,
    frontier bytea NOT NULL,
    signature bytea NOT NULL,
    integrated_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant text NOT NULL,
    CONSTRAINT audit_tree_heads_frontier_check CHECK (((octet_length(frontier) % 32) = 0)),
    CONSTRAINT audit_tree_heads_tree_size_check CHECK ((tree_size >= 0))
);

ALTER TABLE ONLY public.audit_tree_heads FORCE ROW LEVEL SECURITY;

--
-- Name: audit_tree_marks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_tree_marks (
    leaf_index bigint NOT NULL,
    txid bigint NOT NULL,
    "position" bigint NOT NULL,
    tenant text NOT NULL,
    CONSTRAINT audit_tree_marks_leaf_index_check CHECK (((leaf_index >= 0) AND ((leaf_index % (16)::bigint) = 0)))
);

ALTER TABLE ONLY public.audit_tree_marks FORCE ROW LEVEL SECURITY;

--
-- Name: audit_tree_nodes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_tree_nodes (
    level smallint NOT NULL,
    index bigint NOT NULL,
    hash bytea NOT NULL,
    tenant text NOT NULL,
    CONSTRAINT audit_tree_nodes_hash_check CHECK ((octet_length(hash) = 32)),
    CONSTRAINT audit_tree_nodes_index_check CHECK ((index >= 0)),
    CONSTRAINT audit_tree_nodes_level_check CHECK (((level >= 4) AND (level < 64)))
);

ALTER TABLE ONLY public.audit_tree_nodes FORCE ROW LEVEL SECURITY;

--
-- Name: events_position_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.events ALTER COLUMN "position" ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.events_position_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: job_count_deltas; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_count_deltas (
    queue text NOT NULL,
    status text NOT NULL,
    n bigint NOT NULL,
    tenant text DEFAULT 'default'::text NOT NULL
);

ALTER TABLE ONLY public.job_count_deltas FORCE ROW LEVEL SECURITY;

--
-- Name: job_counter_writes; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.job_counter_writes
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: job_counts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_counts (
    queue text NOT NULL,
    status text NOT NULL,
    n bigint NOT NULL,
    tenant text DEFAULT 'default'::text NOT NULL
);

ALTER TABLE ONLY public.job_counts FORCE ROW LEVEL SECURITY;

--
-- Name: job_leases; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_leases (
    job_id uuid NOT NULL,
    worker_id text NOT NULL,
    attempt integer NOT NULL,
    lease_until timestamp with time zone NOT NULL
);

--
-- Name: job_throughput; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_throughput (
    minute timestamp with time zone NOT NULL,
    submitted bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    tenant text DEFAULT 'default'::text NOT NULL
);

ALTER TABLE ONLY public.job_throughput FORCE ROW LEVEL SECURITY;

--
-- Name: job_throughput_deltas; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_throughput_deltas (
    minute timestamp with time zone NOT NULL,
    submitted bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    tenant text DEFAULT 'default'::text NOT NULL
);

ALTER TABLE ONLY public.job_throughput_deltas FORCE ROW LEVEL SECURITY;

--
-- Name: queue_buckets; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.queue_buckets (
    queue text NOT NULL,
    tokens double precision NOT NULL,
    refilled_at timestamp with time zone NOT NULL,
    last_claimed uuid[] DEFAULT '{}'::uuid[] NOT NULL,
    tenant text NOT NULL
);

ALTER TABLE ONLY public.queue_buckets FORCE ROW LEVEL SECURITY;

--
-- Name: queue_key_turns; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.queue_key_turns (
    queue text NOT NULL,
    concurrency_key text NOT NULL,
    served_at timestamp with time zone NOT NULL,
    tenant text NOT NULL
);

ALTER TABLE ONLY public.queue_key_turns FORCE ROW LEVEL SECURITY;

--
-- Name: schedule_slots; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schedule_slots (
    tenant text NOT NULL,
    schedule_id text NOT NULL,
    slot timestamp with time zone NOT NULL,
    outcome text NOT NULL,
    reason text,
    until timestamp with time zone,
    job_id uuid,
    version integer NOT NULL,
    recorded_at timestamp with time zone NOT NULL,
    CONSTRAINT schedule_slots_outcome_check CHECK ((outcome = ANY (ARRAY['fired'::text, 'skipped'::text, 'buffered'::text])))
);

ALTER TABLE ONLY public.schedule_slots FORCE ROW LEVEL SECURITY;

--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: tenant_turns; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tenant_turns (
    tenant text NOT NULL,
    pass double precision NOT NULL
);

ALTER TABLE ONLY public.tenant_turns FORCE ROW LEVEL SECURITY;

--
-- Name: webhook_deliveries; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhook_deliveries (
    delivery_id uuid NOT NULL,
    tenant text NOT NULL,
    endpoint_id uuid,
    url text,
    job_id uuid,
    event_type text NOT NULL,
    event_position bigint,
    body text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    version integer DEFAULT 0 NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    tries integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone NOT NULL,
    last_status_code integer,
    last_error text,
    last_attempt_at timestamp with time zone,
    created_at timestamp with time zone NOT NULL,
    leased_by text,
    lease_until timestamp with time zone,
    CONSTRAINT webhook_deliveries_check CHECK (((endpoint_id IS NULL) <> (url IS NULL))),
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'exhausted'::text, 'disabled'::text])))
);

ALTER TABLE ONLY public.webhook_deliveries FORCE ROW LEVEL SECURITY;

--
-- Name: webhook_secrets; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhook_secrets (
    endpoint_id uuid NOT NULL,
    tenant text NOT NULL,
    secret_id text NOT NULL,
    secret text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone,
    CONSTRAINT webhook_secrets_secret_check CHECK ((secret ~~ 'whsec\_%'::text))
);

ALTER TABLE ONLY public.webhook_secrets FORCE ROW LEVEL SECURITY;

--
-- Name: worker_processes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.worker_processes (
    worker_id text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    slots integer NOT NULL,
    lease_seconds double precision NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT worker_processes_lease_seconds_check CHECK ((lease_seconds > (0)::double precision)),
    CONSTRAINT worker_processes_slots_check CHECK ((slots >= 0))
);

--
-- Name: audit_checkpoints audit_checkpoints_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_checkpoints
    ADD CONSTRAINT audit_checkpoints_pkey PRIMARY KEY (checkpoint_id);

--
-- Name: audit_tree_heads audit_tree_heads_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_tree_heads
    ADD CONSTRAINT audit_tree_heads_pkey PRIMARY KEY (tenant, key_id);

--
-- Name: audit_tree_marks audit_tree_marks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_tree_marks
    ADD CONSTRAINT audit_tree_marks_pkey PRIMARY KEY (tenant, leaf_index);

--
-- Name: audit_tree_nodes audit_tree_nodes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_tree_nodes
    ADD CONSTRAINT audit_tree_nodes_pkey PRIMARY KEY (tenant, level, index);

--
-- Name: events events_job_id_version_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_job_id_version_key UNIQUE (job_id, version);

--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY ("position");

--
-- Name: events events_tenant_format; Type: CHECK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE public.events
    ADD CONSTRAINT events_tenant_format CHECK ((tenant ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'::text)) NOT VALID;

--
-- Name: job_counts job_counts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_counts
    ADD CONSTRAINT job_counts_pkey PRIMARY KEY (tenant, queue, status);

--
-- Name: job_dependencies job_dependencies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_pkey PRIMARY KEY (job_id, depends_on);

--
-- Name: job_leases job_leases_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_leases
    ADD CONSTRAINT job_leases_pkey PRIMARY KEY (job_id);

--
-- Name: job_throughput job_throughput_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_throughput
    ADD CONSTRAINT job_throughput_pkey PRIMARY KEY (tenant, minute);

--
-- Name: job_webhooks job_webhooks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_webhooks
    ADD CONSTRAINT job_webhooks_pkey PRIMARY KEY (job_id);

--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (job_id);

--
-- Name: queue_buckets queue_buckets_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.queue_buckets
    ADD CONSTRAINT queue_buckets_pkey PRIMARY KEY (tenant, queue);

--
-- Name: queue_key_turns queue_key_turns_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.queue_key_turns
    ADD CONSTRAINT queue_key_turns_pkey PRIMARY KEY (tenant, queue, concurrency_key);

--
-- Name: queues queues_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.queues
    ADD CONSTRAINT queues_pkey PRIMARY KEY (tenant, name);

--
-- Name: queues queues_stream_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.queues
    ADD CONSTRAINT queues_stream_id_key UNIQUE (stream_id);

--
-- Name: schedule_slots schedule_slots_once; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schedule_slots
    ADD CONSTRAINT schedule_slots_once UNIQUE (tenant, schedule_id, slot);

--
-- Name: schedules schedules_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (tenant, schedule_id);

--
-- Name: schedules schedules_stream_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schedules
    ADD CONSTRAINT schedules_stream_id_key UNIQUE (stream_id);

--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (name);

--
-- Name: tenant_turns tenant_turns_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tenant_turns
    ADD CONSTRAINT tenant_turns_pkey PRIMARY KEY (tenant);

--
-- Name: tenants tenants_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_pkey PRIMARY KEY (tenant);

--
-- Name: tenants tenants_stream_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tenants
    ADD CONSTRAINT tenants_stream_id_key UNIQUE (stream_id);

--
-- Name: webhook_deliveries webhook_deliveries_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (delivery_id);

--
-- Name: webhook_endpoints webhook_endpoints_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (endpoint_id);

--
-- Name: webhook_secrets webhook_secrets_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhook_secrets
    ADD CONSTRAINT webhook_secrets_pkey PRIMARY KEY (endpoint_id, secret_id);

--
-- Name: worker_processes worker_processes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.worker_processes
    ADD CONSTRAINT worker_processes_pkey PRIMARY KEY (worker_id);

--
-- Name: workflow_jobs workflow_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_jobs
    ADD CONSTRAINT workflow_jobs_pkey PRIMARY KEY (job_id);

--
-- Name: workflow_jobs workflow_jobs_tenant_workflow_id_name_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflow_jobs
    ADD CONSTRAINT workflow_jobs_tenant_workflow_id_name_key UNIQUE (tenant, workflow_id, name);

--
-- Name: workflows workflows_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (tenant, workflow_id);

--
-- Name: audit_checkpoints_cursor_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_checkpoints_cursor_idx ON public.audit_checkpoints USING btree (tenant, txid, "position");

--
-- Name: audit_tree_marks_cursor_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX audit_tree_marks_cursor_idx ON public.audit_tree_marks USING btree (tenant, txid, "position");

--
-- Name: events_bulk_request_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_bulk_request_idx ON public.events USING btree (tenant, ((data ->> 'bulk_request_id'::text))) WHERE (data ? 'bulk_request_id'::text);

--
-- Name: events_occurred_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_occurred_at_idx ON public.events USING btree (occurred_at);

--
-- Name: events_tenant_txid_position_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_tenant_txid_position_idx ON public.events USING btree (tenant, txid, "position");

--
-- Name: events_txid_position_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_txid_position_idx ON public.events USING btree (txid, "position");

--
-- Name: job_dependencies_upstream_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX job_dependencies_upstream_idx ON public.job_dependencies USING btree (depends_on);

--
-- Name: job_leases_worker_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX job_leases_worker_idx ON public.job_leases USING btree (worker_id);

--
-- Name: jobs_created_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_created_idx ON public.jobs USING btree (tenant, created_at DESC, job_id DESC);

--
-- Name: jobs_due_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_due_idx ON public.jobs USING btree (run_at, priority, created_at) WHERE (status = ANY (ARRAY['pending'::text, 'retrying'::text]));

--
-- Name: jobs_idempotency_key_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX jobs_idempotency_key_idx ON public.jobs USING btree (tenant, submitted_by, idempotency_key) WHERE (idempotency_key IS NOT NULL);

--
-- Name: jobs_key_due_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_key_due_idx ON public.jobs USING btree (tenant, queue, concurrency_key, run_at, priority, created_at) WHERE ((status <> ALL (ARRAY['processing'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])) AND (concurrency_key IS NOT NULL));

--
-- Name: jobs_queue_due_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_queue_due_idx ON public.jobs USING btree (tenant, queue, run_at, priority, created_at) WHERE ((status <> ALL (ARRAY['processing'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])) AND (concurrency_key IS NULL));

--
-- Name: jobs_status_created_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_status_created_idx ON public.jobs USING btree (tenant, status, created_at DESC, job_id DESC);

--
-- Name: jobs_unique_key_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX jobs_unique_key_idx ON public.jobs USING btree (tenant, unique_key) WHERE ((unique_key IS NOT NULL) AND (status = ANY (unique_states)));

--
-- Name: queue_key_turns_latest_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX queue_key_turns_latest_idx ON public.queue_key_turns USING btree (tenant, queue, served_at);

--
-- Name: queues_restricted_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX queues_restricted_idx ON public.queues USING btree (tenant, name) WHERE restricted;

--
-- Name: schedules_buffering; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX schedules_buffering ON public.schedules USING btree (tenant, schedule_id) WHERE ((NOT deleted) AND (cardinality(buffered) > 0));

--
-- Name: schedules_next_slot; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX schedules_next_slot ON public.schedules USING btree (next_slot) WHERE ((NOT deleted) AND (NOT paused) AND (next_slot IS NOT NULL));

--
-- Name: webhook_deliveries_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_deliveries_due ON public.webhook_deliveries USING btree (next_attempt_at) WHERE (status = 'pending'::text);

--
-- Name: webhook_deliveries_of_endpoint; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_deliveries_of_endpoint ON public.webhook_deliveries USING btree (tenant, endpoint_id, created_at DESC);

--
-- Name: webhook_deliveries_of_job; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_deliveries_of_job ON public.webhook_deliveries USING btree (job_id);

--
-- Name: webhook_endpoints_active; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_endpoints_active ON public.webhook_endpoints USING btree (tenant) WHERE ((NOT disabled) AND (NOT deleted));

--
-- Name: worker_processes_heartbeat_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX worker_processes_heartbeat_idx ON public.worker_processes USING btree (heartbeat_at);

--
-- Name: workflows_submitted_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX workflows_submitted_idx ON public.workflows USING btree (tenant, submitted_at DESC, workflow_id DESC);

--
-- Name: events events_lock_workflow_job; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_lock_workflow_job BEFORE INSERT ON public.events FOR EACH ROW WHEN ((new.type = ANY (ARRAY['job.cancelled.v1'::text, 'job.retried.v1'::text]))) EXECUTE FUNCTION public.workflow_job_lock();

--
-- Name: events events_no_truncate; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON public.events FOR EACH STATEMENT EXECUTE FUNCTION public.events_refuse_change();

--
-- Name: events events_no_update_delete; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_no_update_delete BEFORE DELETE OR UPDATE ON public.events FOR EACH ROW EXECUTE FUNCTION public.events_refuse_change();

--
-- Name: events events_notify_feed; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_notify_feed AFTER INSERT ON public.events FOR EACH STATEMENT EXECUTE FUNCTION public.events_notify_feed();

--
-- Name: events events_project_jobs; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_project_jobs AFTER INSERT ON public.events REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION public.jobs_project_appended();

--
-- Name: events events_project_queues; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_project_queues AFTER INSERT ON public.events FOR EACH ROW WHEN ((new.type ~~ 'queue.%'::text)) EXECUTE FUNCTION public.queue_project_event();

--
-- Name: events events_project_schedules; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_project_schedules AFTER INSERT ON public.events FOR EACH ROW WHEN ((new.type ~~ 'schedule.%'::text)) EXECUTE FUNCTION public.schedule_project_event();

--
-- Name: events events_project_tenants; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_project_tenants AFTER INSERT ON public.events FOR EACH ROW WHEN ((new.type ~~ 'tenant.%'::text)) EXECUTE FUNCTION public.tenant_project_event();

--
-- Name: events events_project_webhooks; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_project_webhooks AFTER INSERT ON public.events REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION public.webhooks_project_appended();

--
-- Name: events events_resolve_workflows; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER events_resolve_workflows AFTER INSERT ON public.events REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION public.workflows_resolve_appended();

--
-- Name: jobs jobs_count_deleted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER jobs_count_deleted AFTER DELETE ON public.jobs REFERENCING OLD TABLE AS before_rows FOR EACH STATEMENT EXECUTE FUNCTION public.job_counts_project();

--
-- Name: jobs jobs_inserted; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER jobs_inserted AFTER INSERT ON public.jobs REFERENCING NEW TABLE AS after_rows FOR EACH STATEMENT EXECUTE FUNCTION public.jobs_inserted_project();

--
-- Name: jobs jobs_notify_cancelled; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER jobs_notify_cancelled AFTER UPDATE OF status ON public.jobs FOR EACH ROW WHEN (((old.status = 'processing'::text) AND (new.status = 'cancelled'::text))) EXECUTE FUNCTION public.jobs_notify_cancelled();

--
-- Name: jobs jobs_notify_runnable; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER jobs_notify_runnable AFTER UPDATE ON public.jobs FOR EACH ROW WHEN ((new.status = ANY (ARRAY['pending'::text, 'retrying'::text]))) EXECUTE FUNCTION public.jobs_notify_runnable();

--
-- Name: jobs jobs_updated; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER jobs_updated AFTER UPDATE ON public.jobs REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows FOR EACH STATEMENT EXECUTE FUNCTION public.jobs_updated_project();

--
-- Name: audit_checkpoints; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.audit_checkpoints ENABLE ROW LEVEL SECURITY;

--
-- Name: audit_checkpoints audit_checkpoints_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY audit_checkpoints_in_tenant ON public.audit_checkpoints TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: audit_tree_heads; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.audit_tree_heads ENABLE ROW LEVEL SECURITY;

--
-- Name: audit_tree_heads audit_tree_heads_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY audit_tree_heads_in_tenant ON public.audit_tree_heads TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: audit_tree_marks; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.audit_tree_marks ENABLE ROW LEVEL SECURITY;

--
-- Name: audit_tree_marks audit_tree_marks_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY audit_tree_marks_in_tenant ON public.audit_tree_marks TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: audit_tree_nodes; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.audit_tree_nodes ENABLE ROW LEVEL SECURITY;

--
-- Name: audit_tree_nodes audit_tree_nodes_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY audit_tree_nodes_in_tenant ON public.audit_tree_nodes TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: events; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;

--
-- Name: events events_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY events_in_tenant ON public.events TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: events events_tenants_listed; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY events_tenants_listed ON public.events FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: job_count_deltas; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.job_count_deltas ENABLE ROW LEVEL SECURITY;

--
-- Name: job_count_deltas job_count_deltas_counted; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_count_deltas_counted ON public.job_count_deltas FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: job_count_deltas job_count_deltas_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_count_deltas_in_tenant ON public.job_count_deltas TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: job_counts; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.job_counts ENABLE ROW LEVEL SECURITY;

--
-- Name: job_counts job_counts_counted; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_counts_counted ON public.job_counts FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: job_counts job_counts_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_counts_in_tenant ON public.job_counts TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: job_dependencies; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.job_dependencies ENABLE ROW LEVEL SECURITY;

--
-- Name: job_dependencies job_dependencies_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_dependencies_in_tenant ON public.job_dependencies TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: job_throughput; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.job_throughput ENABLE ROW LEVEL SECURITY;

--
-- Name: job_throughput_deltas; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.job_throughput_deltas ENABLE ROW LEVEL SECURITY;

--
-- Name: job_throughput_deltas job_throughput_deltas_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_throughput_deltas_in_tenant ON public.job_throughput_deltas TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: job_throughput job_throughput_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_throughput_in_tenant ON public.job_throughput TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: job_webhooks; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.job_webhooks ENABLE ROW LEVEL SECURITY;

--
-- Name: job_webhooks job_webhooks_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY job_webhooks_in_tenant ON public.job_webhooks TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: jobs; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;

--
-- Name: jobs jobs_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY jobs_dispatched ON public.jobs FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: jobs jobs_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY jobs_in_tenant ON public.jobs TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: jobs jobs_locked_for_claim; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY jobs_locked_for_claim ON public.jobs FOR UPDATE TO ledger_dispatch USING (true) WITH CHECK (false);

--
-- Name: queue_buckets; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.queue_buckets ENABLE ROW LEVEL SECURITY;

--
-- Name: queue_buckets queue_buckets_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queue_buckets_dispatched ON public.queue_buckets TO ledger_dispatch USING (true) WITH CHECK (true);

--
-- Name: queue_buckets queue_buckets_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queue_buckets_in_tenant ON public.queue_buckets TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: queue_key_turns; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.queue_key_turns ENABLE ROW LEVEL SECURITY;

--
-- Name: queue_key_turns queue_key_turns_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queue_key_turns_dispatched ON public.queue_key_turns TO ledger_dispatch USING (true) WITH CHECK (true);

--
-- Name: queue_key_turns queue_key_turns_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queue_key_turns_in_tenant ON public.queue_key_turns TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: queues; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.queues ENABLE ROW LEVEL SECURITY;

--
-- Name: queues queues_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queues_dispatched ON public.queues FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: queues queues_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queues_in_tenant ON public.queues TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: queues queues_locked_for_claim; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY queues_locked_for_claim ON public.queues FOR UPDATE TO ledger_dispatch USING (true) WITH CHECK (false);

--
-- Name: schedule_slots; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.schedule_slots ENABLE ROW LEVEL SECURITY;

--
-- Name: schedule_slots schedule_slots_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY schedule_slots_in_tenant ON public.schedule_slots TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: schedules; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.schedules ENABLE ROW LEVEL SECURITY;

--
-- Name: schedules schedules_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY schedules_dispatched ON public.schedules FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: schedules schedules_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY schedules_in_tenant ON public.schedules TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: tenant_turns; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.tenant_turns ENABLE ROW LEVEL SECURITY;

--
-- Name: tenant_turns tenant_turns_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tenant_turns_dispatched ON public.tenant_turns TO ledger_dispatch USING (true) WITH CHECK (true);

--
-- Name: tenant_turns tenant_turns_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tenant_turns_in_tenant ON public.tenant_turns TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: tenants; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;

--
-- Name: tenants tenants_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tenants_dispatched ON public.tenants FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: tenants tenants_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tenants_in_tenant ON public.tenants TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: tenants tenants_locked_for_claim; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY tenants_locked_for_claim ON public.tenants FOR UPDATE TO ledger_dispatch USING (true) WITH CHECK (false);

--
-- Name: webhook_deliveries; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.webhook_deliveries ENABLE ROW LEVEL SECURITY;

--
-- Name: webhook_deliveries webhook_deliveries_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_deliveries_dispatched ON public.webhook_deliveries FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: webhook_deliveries webhook_deliveries_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_deliveries_in_tenant ON public.webhook_deliveries TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: webhook_deliveries webhook_deliveries_leased; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_deliveries_leased ON public.webhook_deliveries FOR UPDATE TO ledger_dispatch USING (true) WITH CHECK (true);

--
-- Name: webhook_endpoints; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.webhook_endpoints ENABLE ROW LEVEL SECURITY;

--
-- Name: webhook_endpoints webhook_endpoints_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_endpoints_dispatched ON public.webhook_endpoints FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: webhook_endpoints webhook_endpoints_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_endpoints_in_tenant ON public.webhook_endpoints TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: webhook_secrets; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.webhook_secrets ENABLE ROW LEVEL SECURITY;

--
-- Name: webhook_secrets webhook_secrets_dispatched; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_secrets_dispatched ON public.webhook_secrets FOR SELECT TO ledger_dispatch USING (true);

--
-- Name: webhook_secrets webhook_secrets_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY webhook_secrets_in_tenant ON public.webhook_secrets TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: workflow_jobs; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.workflow_jobs ENABLE ROW LEVEL SECURITY;

--
-- Name: workflow_jobs workflow_jobs_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY workflow_jobs_in_tenant ON public.workflow_jobs TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: workflows; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.workflows ENABLE ROW LEVEL SECURITY;

--
-- Name: workflows workflows_in_tenant; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY workflows_in_tenant ON public.workflows TO ledger_app USING ((tenant = public.ledger_tenant_named())) WITH CHECK ((tenant = public.ledger_tenant_named()));

--
-- Name: SCHEMA public; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA public TO ledger_app;
GRANT USAGE ON SCHEMA public TO ledger_dispatch;

--
-- Name: FUNCTION event_canonical(type text, job_id uuid, version integer, actor text, occurred_at timestamp with time zone, data jsonb); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.event_canonical(type text, job_id uuid, version integer, actor text, occurred_at timestamp with time zone, data jsonb) TO ledger_app;

--
-- Name: FUNCTION event_canonical(tenant text, type text, job_id uuid, version integer, actor text, occurred_at timestamp with time zone, data jsonb); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.event_canonical(tenant text, type text, job_id uuid, version integer, actor text, occurred_at timestamp with time zone, data jsonb) TO ledger_app;

--
-- Name: FUNCTION events_admit(versions integer[], types text[], actors text[], datas jsonb[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.events_admit(versions integer[], types text[], actors text[], datas jsonb[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.events_admit(versions integer[], types text[], actors text[], datas jsonb[]) TO ledger_app;

--
-- Name: FUNCTION events_append(job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.events_append(job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.events_append(job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]) TO ledger_app;

--
-- Name: FUNCTION events_notify_feed(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.events_notify_feed() TO ledger_app;

--
-- Name: FUNCTION job_counters_fold(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.job_counters_fold() FROM PUBLIC;

--
-- Name: FUNCTION job_counters_wrote(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.job_counters_wrote() FROM PUBLIC;

--
-- Name: FUNCTION job_counts_all(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.job_counts_all() FROM PUBLIC;
GRANT ALL ON FUNCTION public.job_counts_all() TO ledger_app;

--
-- Name: FUNCTION job_counts_project(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_counts_project() TO ledger_app;

--
-- Name: TABLE job_dependencies; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.job_dependencies TO ledger_app;

--
-- Name: FUNCTION job_dependencies_folded(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_dependencies_folded() TO ledger_app;

--
-- Name: FUNCTION job_event_ending(type text, data jsonb); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_event_ending(type text, data jsonb) TO ledger_app;

--
-- Name: FUNCTION job_leases_end(worker text, job_ids uuid[], attempts integer[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.job_leases_end(worker text, job_ids uuid[], attempts integer[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.job_leases_end(worker text, job_ids uuid[], attempts integer[]) TO ledger_app;

--
-- Name: FUNCTION job_leases_prune(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.job_leases_prune() FROM PUBLIC;
GRANT ALL ON FUNCTION public.job_leases_prune() TO ledger_app;

--
-- Name: FUNCTION job_leases_renew(worker text, seconds double precision, job_ids uuid[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.job_leases_renew(worker text, seconds double precision, job_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.job_leases_renew(worker text, seconds double precision, job_ids uuid[]) TO ledger_app;

--
-- Name: TABLE events; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.events TO ledger_app;

--
-- Name: COLUMN events.tenant; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(tenant) ON TABLE public.events TO ledger_dispatch;

--
-- Name: FUNCTION job_view_apply(e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_view_apply(e public.events) TO ledger_app;

--
-- Name: TABLE jobs; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.jobs TO ledger_app;
GRANT SELECT ON TABLE public.jobs TO ledger_dispatch;

--
-- Name: COLUMN jobs.status; Type: ACL; Schema: public; Owner: -
--

GRANT UPDATE(status) ON TABLE public.jobs TO ledger_dispatch;

--
-- Name: FUNCTION job_view_evolve(s public.jobs, e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_view_evolve(s public.jobs, e public.events) TO ledger_app;

--
-- Name: FUNCTION job_view_refuse(e_type text, e_job uuid, submitted boolean); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_view_refuse(e_type text, e_job uuid, submitted boolean) TO ledger_app;

--
-- Name: FUNCTION job_view_step(s public.jobs, e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_view_step(s public.jobs, e public.events) TO ledger_app;

--
-- Name: TABLE job_webhooks; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.job_webhooks TO ledger_app;

--
-- Name: FUNCTION job_webhooks_folded(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_webhooks_folded() TO ledger_app;

--
-- Name: FUNCTION jobs_claim(max_jobs integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim(max_jobs integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim(max_jobs integer, job_types text[]) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_fair(max_jobs integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_fair(max_jobs integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_fair(max_jobs integer, job_types text[]) TO ledger_app;

--
-- Name: TABLE queues; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.queues TO ledger_app;
GRANT SELECT ON TABLE public.queues TO ledger_dispatch;

--
-- Name: COLUMN queues.paused; Type: ACL; Schema: public; Owner: -
--

GRANT UPDATE(paused) ON TABLE public.queues TO ledger_dispatch;

--
-- Name: FUNCTION jobs_claim_from_queue(q public.queues, room integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[]) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[]) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_claim_from_queue(q public.queues, room integer, job_types text[], only_key text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[], only_key text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[], only_key text) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_claim_from_queue(q public.queues, room integer, job_types text[], only_key text) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_claim_next(max_jobs integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_next(max_jobs integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_next(max_jobs integer, job_types text[]) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_next_in(tenant_id text, max_jobs integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_next_in(tenant_id text, max_jobs integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_next_in(tenant_id text, max_jobs integer, job_types text[]) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_quiet(max_jobs integer, job_types text[], quiet integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_quiet(max_jobs integer, job_types text[], quiet integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_quiet(max_jobs integer, job_types text[], quiet integer) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_quiet_in(tenant_id text, max_jobs integer, job_types text[], quiet integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_quiet_in(tenant_id text, max_jobs integer, job_types text[], quiet integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_quiet_in(tenant_id text, max_jobs integer, job_types text[], quiet integer) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_quiet_key(tenant_id text, queue_name text, group_key text, max_jobs integer, job_types text[], quiet integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_quiet_key(tenant_id text, queue_name text, group_key text, max_jobs integer, job_types text[], quiet integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_quiet_key(tenant_id text, queue_name text, group_key text, max_jobs integer, job_types text[], quiet integer) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_quiet_tenants(max_jobs integer, job_types text[], quiet integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_quiet_tenants(max_jobs integer, job_types text[], quiet integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_quiet_tenants(max_jobs integer, job_types text[], quiet integer) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text) TO ledger_app;

--
-- Name: FUNCTION jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text, queue_name text, group_key text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text, queue_name text, group_key text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claim_recorded(worker text, lease_seconds double precision, max_jobs integer, job_types text[], quiet integer, tenant_id text, queue_name text, group_key text) TO ledger_app;

--
-- Name: FUNCTION jobs_claimable(max_jobs integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_claimable(max_jobs integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_claimable(max_jobs integer, job_types text[]) TO ledger_app;

--
-- Name: FUNCTION jobs_due_in_group(tenant_id text, q text, key text, job_types text[], taken uuid[], n integer, lock boolean); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_due_in_group(tenant_id text, q text, key text, job_types text[], taken uuid[], n integer, lock boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_due_in_group(tenant_id text, q text, key text, job_types text[], taken uuid[], n integer, lock boolean) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_due_in_group(tenant_id text, q text, key text, job_types text[], taken uuid[], n integer, lock boolean) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_groups_of(tenant_id text, q text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_groups_of(tenant_id text, q text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_groups_of(tenant_id text, q text) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_groups_of(tenant_id text, q text) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_held_by(worker text, job_ids uuid[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_held_by(worker text, job_ids uuid[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_held_by(worker text, job_ids uuid[]) TO ledger_app;

--
-- Name: FUNCTION jobs_inserted_project(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.jobs_inserted_project() TO ledger_app;

--
-- Name: FUNCTION jobs_lease_expired(max_jobs integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_lease_expired(max_jobs integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_lease_expired(max_jobs integer) TO ledger_app;

--
-- Name: FUNCTION jobs_next_due(job_types text[], lookback_seconds double precision); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_next_due(job_types text[], lookback_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_next_due(job_types text[], lookback_seconds double precision) TO ledger_app;

--
-- Name: FUNCTION jobs_notify_cancelled(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.jobs_notify_cancelled() TO ledger_app;

--
-- Name: FUNCTION jobs_notify_runnable(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.jobs_notify_runnable() TO ledger_app;

--
-- Name: FUNCTION jobs_project_appended(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.jobs_project_appended() TO ledger_app;

--
-- Name: FUNCTION jobs_queue_has_due(tenant_id text, q text, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_queue_has_due(tenant_id text, q text, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_queue_has_due(tenant_id text, q text, job_types text[]) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_queue_has_due(tenant_id text, q text, job_types text[]) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_running_lost(worker text, job_ids uuid[], attempts integer[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_running_lost(worker text, job_ids uuid[], attempts integer[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_running_lost(worker text, job_ids uuid[], attempts integer[]) TO ledger_app;

--
-- Name: FUNCTION jobs_tenant_due(tenant_id text, n integer, job_types text[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_tenant_due(tenant_id text, n integer, job_types text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_tenant_due(tenant_id text, n integer, job_types text[]) TO ledger_app;

--
-- Name: FUNCTION jobs_tenant_room(tenant_id text, want integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_tenant_room(tenant_id text, want integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_tenant_room(tenant_id text, want integer) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_tenant_room(tenant_id text, want integer) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_tenant_served(tenant_id text, n integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.jobs_tenant_served(tenant_id text, n integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.jobs_tenant_served(tenant_id text, n integer) TO ledger_app;
GRANT ALL ON FUNCTION public.jobs_tenant_served(tenant_id text, n integer) TO ledger_dispatch;

--
-- Name: FUNCTION jobs_updated_project(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.jobs_updated_project() TO ledger_app;

--
-- Name: FUNCTION ledger_tenant(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.ledger_tenant() TO ledger_app;

--
-- Name: FUNCTION ledger_tenant_named(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.ledger_tenant_named() TO ledger_app;

--
-- Name: FUNCTION ledger_tenants(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.ledger_tenants() FROM PUBLIC;
GRANT ALL ON FUNCTION public.ledger_tenants() TO ledger_app;

--
-- Name: FUNCTION queue_buckets_tokens(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.queue_buckets_tokens() FROM PUBLIC;
GRANT ALL ON FUNCTION public.queue_buckets_tokens() TO ledger_app;

--
-- Name: FUNCTION queue_project_event(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.queue_project_event() TO ledger_app;

--
-- Name: FUNCTION queue_retry_policy(tenant_id text, queue_name text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.queue_retry_policy(tenant_id text, queue_name text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.queue_retry_policy(tenant_id text, queue_name text) TO ledger_app;

--
-- Name: FUNCTION queue_view_step(s public.queues, e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.queue_view_step(s public.queues, e public.events) TO ledger_app;

--
-- Name: FUNCTION queues_limits_all(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.queues_limits_all() FROM PUBLIC;
GRANT ALL ON FUNCTION public.queues_limits_all() TO ledger_app;

--
-- Name: FUNCTION schedule_project_event(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.schedule_project_event() TO ledger_app;

--
-- Name: TABLE schedules; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.schedules TO ledger_app;
GRANT SELECT ON TABLE public.schedules TO ledger_dispatch;

--
-- Name: FUNCTION schedule_view_step(s public.schedules, e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.schedule_view_step(s public.schedules, e public.events) TO ledger_app;

--
-- Name: FUNCTION schedules_due(now timestamp with time zone, max_schedules integer); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.schedules_due(now timestamp with time zone, max_schedules integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.schedules_due(now timestamp with time zone, max_schedules integer) TO ledger_app;

--
-- Name: FUNCTION schedules_next_slot(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.schedules_next_slot() FROM PUBLIC;
GRANT ALL ON FUNCTION public.schedules_next_slot() TO ledger_app;

--
-- Name: FUNCTION tenant_project_event(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.tenant_project_event() TO ledger_app;

--
-- Name: TABLE tenants; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.tenants TO ledger_app;
GRANT SELECT ON TABLE public.tenants TO ledger_dispatch;

--
-- Name: COLUMN tenants.max_running; Type: ACL; Schema: public; Owner: -
--

GRANT UPDATE(max_running) ON TABLE public.tenants TO ledger_dispatch;

--
-- Name: FUNCTION tenant_view_step(s public.tenants, e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.tenant_view_step(s public.tenants, e public.events) TO ledger_app;

--
-- Name: FUNCTION tenants_all(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.tenants_all() FROM PUBLIC;
GRANT ALL ON FUNCTION public.tenants_all() TO ledger_app;

--
-- Name: FUNCTION webhook_counts_all(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.webhook_counts_all() FROM PUBLIC;
GRANT ALL ON FUNCTION public.webhook_counts_all() TO ledger_app;

--
-- Name: FUNCTION webhook_deliveries_claim(worker text, max_n integer, seconds double precision); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.webhook_deliveries_claim(worker text, max_n integer, seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.webhook_deliveries_claim(worker text, max_n integer, seconds double precision) TO ledger_app;

--
-- Name: FUNCTION webhook_deliveries_folded(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_deliveries_folded() TO ledger_app;

--
-- Name: FUNCTION webhook_deliveries_next_due(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.webhook_deliveries_next_due() FROM PUBLIC;
GRANT ALL ON FUNCTION public.webhook_deliveries_next_due() TO ledger_app;

--
-- Name: FUNCTION webhook_delivery_apply(e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_delivery_apply(e public.events) TO ledger_app;

--
-- Name: FUNCTION webhook_endpoint_apply(e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_endpoint_apply(e public.events) TO ledger_app;

--
-- Name: TABLE webhook_endpoints; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.webhook_endpoints TO ledger_app;
GRANT SELECT ON TABLE public.webhook_endpoints TO ledger_dispatch;

--
-- Name: FUNCTION webhook_endpoint_step(s public.webhook_endpoints, e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_endpoint_step(s public.webhook_endpoints, e public.events) TO ledger_app;

--
-- Name: FUNCTION webhook_endpoints_folded(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_endpoints_folded() TO ledger_app;

--
-- Name: FUNCTION webhook_job_body(kind text, e public.events, j public.jobs); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_job_body(kind text, e public.events, j public.jobs) TO ledger_app;

--
-- Name: FUNCTION webhook_kind(e public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_kind(e public.events) TO ledger_app;

--
-- Name: FUNCTION webhook_time(t timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_time(t timestamp with time zone) TO ledger_app;

--
-- Name: FUNCTION webhooks_project_appended(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhooks_project_appended() TO ledger_app;

--
-- Name: FUNCTION worker_slots_usage(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.worker_slots_usage() FROM PUBLIC;
GRANT ALL ON FUNCTION public.worker_slots_usage() TO ledger_app;

--
-- Name: FUNCTION workflow_job_lock(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.workflow_job_lock() FROM PUBLIC;

--
-- Name: TABLE workflow_jobs; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.workflow_jobs TO ledger_app;

--
-- Name: FUNCTION workflow_jobs_folded(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.workflow_jobs_folded() TO ledger_app;

--
-- Name: FUNCTION workflow_resolve(ids uuid[], endings text[], causes bytea[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.workflow_resolve(ids uuid[], endings text[], causes bytea[]) FROM PUBLIC;

--
-- Name: FUNCTION workflow_upstream(job uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.workflow_upstream(job uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.workflow_upstream(job uuid) TO ledger_app;

--
-- Name: TABLE workflows; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.workflows TO ledger_app;

--
-- Name: FUNCTION workflows_folded(); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.workflows_folded() TO ledger_app;

--
-- Name: FUNCTION workflows_resolve_appended(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.workflows_resolve_appended() FROM PUBLIC;

--
-- Name: FUNCTION job_view_fold(public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.job_view_fold(public.events) TO ledger_app;

--
-- Name: FUNCTION queue_view_fold(public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.queue_view_fold(public.events) TO ledger_app;

--
-- Name: FUNCTION schedule_view_fold(public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.schedule_view_fold(public.events) TO ledger_app;

--
-- Name: FUNCTION tenant_view_fold(public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.tenant_view_fold(public.events) TO ledger_app;

--
-- Name: FUNCTION webhook_endpoint_fold(public.events); Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON FUNCTION public.webhook_endpoint_fold(public.events) TO ledger_app;

--
-- Name: TABLE audit_checkpoints; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT ON TABLE public.audit_checkpoints TO ledger_app;

--
-- Name: SEQUENCE audit_checkpoints_checkpoint_id_seq; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE public.audit_checkpoints_checkpoint_id_seq TO ledger_app;

--
-- Name: TABLE audit_tree_heads; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.audit_tree_heads TO ledger_app;

--
-- Name: TABLE audit_tree_marks; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT ON TABLE public.audit_tree_marks TO ledger_app;

--
-- Name: TABLE audit_tree_nodes; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT ON TABLE public.audit_tree_nodes TO ledger_app;

--
-- Name: TABLE job_count_deltas; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.job_count_deltas TO ledger_app;
GRANT SELECT ON TABLE public.job_count_deltas TO ledger_dispatch;

--
-- Name: TABLE job_counts; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.job_counts TO ledger_app;
GRANT SELECT ON TABLE public.job_counts TO ledger_dispatch;

--
-- Name: TABLE job_leases; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.job_leases TO ledger_dispatch;

--
-- Name: TABLE job_throughput; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.job_throughput TO ledger_app;

--
-- Name: TABLE job_throughput_deltas; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.job_throughput_deltas TO ledger_app;

--
-- Name: TABLE queue_buckets; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.queue_buckets TO ledger_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.queue_buckets TO ledger_dispatch;

--
-- Name: TABLE queue_key_turns; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.queue_key_turns TO ledger_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.queue_key_turns TO ledger_dispatch;

--
-- Name: TABLE schedule_slots; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.schedule_slots TO ledger_app;

--
-- Name: TABLE schema_migrations; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.schema_migrations TO ledger_app;

--
-- Name: TABLE tenant_turns; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.tenant_turns TO ledger_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.tenant_turns TO ledger_dispatch;

--
-- Name: TABLE webhook_deliveries; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.webhook_deliveries TO ledger_app;
GRANT SELECT ON TABLE public.webhook_deliveries TO ledger_dispatch;

--
-- Name: COLUMN webhook_deliveries.leased_by; Type: ACL; Schema: public; Owner: -
--

GRANT UPDATE(leased_by) ON TABLE public.webhook_deliveries TO ledger_dispatch;

--
-- Name: COLUMN webhook_deliveries.lease_until; Type: ACL; Schema: public; Owner: -
--

GRANT UPDATE(lease_until) ON TABLE public.webhook_deliveries TO ledger_dispatch;

--
-- Name: TABLE webhook_secrets; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,UPDATE ON TABLE public.webhook_secrets TO ledger_app;
GRANT SELECT ON TABLE public.webhook_secrets TO ledger_dispatch;

--
-- Name: TABLE worker_processes; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.worker_processes TO ledger_app;
GRANT SELECT ON TABLE public.worker_processes TO ledger_dispatch;

--
-- Name: DEFAULT PRIVILEGES FOR SEQUENCES; Type: DEFAULT ACL; Schema: public; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public GRANT SELECT,USAGE ON SEQUENCES TO ledger_app;

--
-- Name: DEFAULT PRIVILEGES FOR FUNCTIONS; Type: DEFAULT ACL; Schema: public; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public GRANT ALL ON FUNCTIONS TO ledger_app;

--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: public; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public GRANT SELECT,INSERT,DELETE,UPDATE ON TABLES TO ledger_app;

--
-- PostgreSQL database dump complete
--
