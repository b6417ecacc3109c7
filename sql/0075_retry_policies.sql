-- Retry policies (issue #16): a job's explicit policy and a queue's are stored beside them. Replaces job_view_step (sql/0074), queue_view_step and queues_project_appended (sql/0065); adds queue_retry_policy.
--
-- `jobs.retry_policy`: the policy the submission gave (its `retry_policy`, with the
-- legacy max_attempts/backoff_* mapped in), NULL when it gave none, so a submission
-- without one stores and costs what it did. It is set by job.submitted.v1 only and
-- never changes after, so the fold's UPDATE paths (which list their columns) need no
-- change: only the step that builds a new row reads it.
--
-- `queues.retry_policy`: the policy of a queue's queue.configured.v1 (NULL: none). It
-- does not make a queue `restricted`: the claim never reads it. Workers read it when an
-- attempt fails, through `queue_retry_policy` (owned by ledger_dispatch, like the
-- other reads of sql/0068: a worker acts in no tenant).

ALTER TABLE jobs ADD COLUMN retry_policy jsonb;
ALTER TABLE queues ADD COLUMN retry_policy jsonb;

-- The job takes its submission's retry policy, and keeps it.
CREATE OR REPLACE FUNCTION job_view_step(s jobs, e events) RETURNS SETOF jobs
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
        WHEN 'job.snoozed.v1' THEN 'pending'
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
        WHEN e.type = 'job.submitted.v1' THEN (e.data->>'run_at')::timestamptz
        WHEN e.type IN ('job.claimed.v1', 'job.cancelled.v1') THEN NULL
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN (e.data->>'next_attempt_at')::timestamptz
        WHEN e.type IN ('job.released.v1', 'job.retried.v1') THEN e.occurred_at
        WHEN e.type = 'job.snoozed.v1' THEN (e.data->>'run_at')::timestamptz
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
        WHEN e.type IN ('job.completed.v1', 'job.cancelled.v1') THEN e.occurred_at
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
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->'retry_policy' ELSE s.retry_policy END
WHERE CASE
    WHEN e.type = 'job.submitted.v1' THEN s.job_id IS NULL
    ELSE s.job_id IS NOT NULL
         AND e.type IN ('job.claimed.v1', 'job.completed.v1', 'job.retry_scheduled.v1',
                        'job.failed.v1', 'job.lease_expired.v1', 'job.cancelled.v1',
                        'job.released.v1', 'job.retried.v1', 'job.replayed.v1',
                        'job.snoozed.v1')
END OR job_view_refuse(e.type, e.job_id, s.job_id IS NOT NULL)
$$;

-- One fold step of a queue's settings (ledger.queues.evolve): as sql/0065, and a
-- queue.configured.v1 sets the retry policy too (absent in events before it: none).
CREATE OR REPLACE FUNCTION queue_view_step(s queues, e events) RETURNS queues
LANGUAGE plpgsql IMMUTABLE AS $$
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

CREATE OR REPLACE FUNCTION queues_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e events;
    s queues;
BEGIN
    FOR e IN SELECT * FROM appended WHERE type LIKE 'queue.%' ORDER BY position LOOP
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
    END LOOP;
    RETURN NULL;
END;
$$;

-- A queue's retry policy, of any tenant's queue (NULL: none): what a worker, acting in
-- no tenant, reads when an attempt of one of its jobs fails.
CREATE FUNCTION queue_retry_policy(tenant_id text, queue_name text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT q.retry_policy FROM queues AS q WHERE q.tenant = tenant_id AND q.name = queue_name
$$;
ALTER FUNCTION queue_retry_policy(text, text) OWNER TO ledger_dispatch;
REVOKE ALL ON FUNCTION queue_retry_policy(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue_retry_policy(text, text) TO ledger_app;
