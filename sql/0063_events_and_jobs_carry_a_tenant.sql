-- Every job and every event belongs to a tenant (issue #15). A deployment that never
-- names one has one, `default`: every row stored before this migration is `default`'s
-- (a column default, so no table is rewritten), and its events' hashes are unchanged.
--
-- The tenant an event is stored under is the database's decision, like its position
-- and hash (DESIGN invariant 1): a job's first event takes the tenant the appending
-- transaction acts in (`ledger_tenant()`: the transaction's `ledger.tenant` setting,
-- `default` when none is set), and every later event its predecessor's, found only
-- within the tenant the transaction acts in when it names one. So an event's tenant is
-- always its job's, and a transaction acting in tenant A cannot append to B's job: the
-- predecessor is not found, prev_hash is NULL, and the NOT NULL constraint refuses it
-- (a version conflict to the caller, as for a job that does not exist).
--
-- The hash covers the tenant: another tenant's event bytes are those of the default
-- form prefixed with `<length>:<tenant>\n`. The default form starts with the event
-- type (a lower-case letter, events_type_format), this prefix with a digit, and the
-- length says where the tenant ends: no two (tenant, event) pairs share bytes, and a
-- stored tenant edited later breaks the job's chain.

-- The tenant this transaction acts in; `default` when it names none.
CREATE FUNCTION ledger_tenant() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(nullif(current_setting('ledger.tenant', true), ''), 'default')
$$;

-- The tenant the transaction named, or NULL (no tenant named: a worker acting for
-- every tenant's jobs appends to each job in its own tenant).
CREATE FUNCTION ledger_tenant_named() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT nullif(current_setting('ledger.tenant', true), '')
$$;

ALTER TABLE events ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE events ADD CONSTRAINT events_tenant_format
    CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$') NOT VALID;
ALTER TABLE jobs ADD COLUMN tenant text NOT NULL DEFAULT 'default';

CREATE FUNCTION event_canonical(
    tenant text, type text, job_id uuid, version integer, actor text,
    occurred_at timestamptz, data jsonb
) RETURNS bytea
LANGUAGE sql STABLE STRICT
AS $$
    SELECT CASE WHEN tenant = 'default'
        THEN event_canonical(type, job_id, version, actor, occurred_at, data)
        ELSE convert_to(length(tenant)::text || ':' || tenant || E'\n', 'UTF8')
             || event_canonical(type, job_id, version, actor, occurred_at, data)
    END
$$;

-- The append returns each event's tenant too (a new result column: the function is
-- replaced in this transaction; callers name the columns they read).
DROP FUNCTION events_append(uuid[], integer[], text[], text[], jsonb[]);
CREATE FUNCTION events_append(
    job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]
) RETURNS TABLE (
    "position" bigint, job_id uuid, version integer, txid bigint,
    occurred_at timestamptz, prev_hash bytea, hash bytea, tenant text
)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
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
        SELECT greatest(statement_timestamp(), prev.occurred_at) AS at
    ) AS t
    RETURNING position, job_id, version, txid::text::bigint, occurred_at, prev_hash, hash, tenant
$$;

REVOKE ALL ON FUNCTION events_append(uuid[], integer[], text[], text[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION events_append(uuid[], integer[], text[], text[], jsonb[]) TO ledger_app;

-- The job takes its first event's tenant, and keeps it.
CREATE OR REPLACE FUNCTION job_view_step(s jobs, e events) RETURNS SETOF jobs
LANGUAGE sql IMMUTABLE ROWS 1 AS $$
SELECT
    CASE WHEN e.type = 'job.submitted.v1' THEN e.job_id ELSE s.job_id END,
    e.version,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'job_type' ELSE s.type END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'queue' ELSE s.queue END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (CASE e.data->>'priority' WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)::smallint
         ELSE s.priority END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN 'pending'
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
        WHEN 'job.retried.v1' THEN 'pending'
        ELSE s.status
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->'payload' ELSE s.payload END,
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
        WHEN e.type = 'job.submitted.v1' THEN (e.data->>'run_at')::timestamptz
        WHEN e.type IN ('job.claimed.v1', 'job.cancelled.v1') THEN NULL
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN (e.data->>'next_attempt_at')::timestamptz
        WHEN e.type IN ('job.released.v1', 'job.retried.v1') THEN e.occurred_at
        ELSE s.run_at
    END,
    CASE
        WHEN e.type = 'job.claimed.v1' THEN e.data->>'worker_id'
        WHEN e.type IN ('job.completed.v1', 'job.retry_scheduled.v1', 'job.failed.v1',
                        'job.lease_expired.v1', 'job.cancelled.v1', 'job.released.v1') THEN NULL
        ELSE s.worker_id
    END,
    CASE
        WHEN e.type = 'job.claimed.v1' THEN (e.data->>'lease_until')::timestamptz
        WHEN e.type IN ('job.completed.v1', 'job.retry_scheduled.v1', 'job.failed.v1',
                        'job.lease_expired.v1', 'job.cancelled.v1', 'job.released.v1') THEN NULL
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
        WHEN e.type IN ('job.completed.v1', 'job.cancelled.v1') THEN e.occurred_at
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN CASE WHEN e.data->>'next_attempt_at' IS NULL THEN e.occurred_at
                      ELSE s.completed_at END
        WHEN e.type = 'job.retried.v1' THEN NULL
        ELSE s.completed_at
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'concurrency_key' ELSE s.concurrency_key END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.tenant ELSE s.tenant END
WHERE CASE
    WHEN e.type = 'job.submitted.v1' THEN s.job_id IS NULL
    ELSE s.job_id IS NOT NULL
         AND e.type IN ('job.claimed.v1', 'job.completed.v1', 'job.retry_scheduled.v1',
                        'job.failed.v1', 'job.lease_expired.v1', 'job.cancelled.v1',
                        'job.released.v1', 'job.retried.v1', 'job.replayed.v1')
END OR job_view_refuse(e.type, e.job_id, s.job_id IS NOT NULL)
$$;

-- An idempotency key is the submitter's within a tenant: the same key in two tenants
-- names two jobs.
DROP INDEX jobs_idempotency_key_idx;
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (tenant, submitted_by, idempotency_key)
WHERE idempotency_key IS NOT NULL;
