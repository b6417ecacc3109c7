-- Workflows (issue #18): jobs that depend on jobs, submitted as one DAG in one append, unblocked by the database in the transaction that records their last dependency's outcome.
--
-- A job.submitted.v1 may carry `workflow_id`, `name`, `depends_on` (job ids) and
-- `on_upstream_failure` (cancel, the default; run; skip). A job with dependencies
-- starts `blocked` (no run_at: no claim walks to it) and the append's trigger
-- `events_resolve_workflows` records it in `workflow_jobs` and `job_dependencies`.
-- When an event ends a job that others depend on (completed, failed, cancelled or the
-- new terminal `skipped`), the same trigger, in the same transaction, decides each
-- still-blocked dependant from what the ledger recorded (the dependency rows and the
-- dependant's own latest event, never the `jobs` view), and appends through
-- events_append, so hash-chained and decided by the database:
--   job.unblocked.v1  the last dependency ended (completed or skipped; or any end under
--                     `run`): pending, with `upstream` (each dependency's name and result);
--   job.cancelled.v1  a dependency ended failed or cancelled under `cancel`;
--   job.skipped.v1    the same under `skip` (a terminal outcome its dependants treat as
--                     completed);
-- each naming the upstream job and the hash of the event that caused it. Cancelled and
-- skipped dependants end in turn: the trigger resolves their dependants in waves (a
-- transaction setting keeps the nested appends' own trigger calls from recursing).
--
-- Exactly once: each dependant's `workflow_jobs` row is locked before its dependency
-- row is marked and its unresolved ones counted (each statement a fresh snapshot), so
-- of parents ending concurrently the last to take the lock sees all the others. A
-- cancel or retry of a workflow job takes the same lock before its event is inserted
-- (BEFORE ROW trigger), so an outcome that unblocks a job and a cancel of it queue on
-- one lock rather than deadlock on the event's unique (job_id, version).
--
-- A job.retried.v1 may carry `blocked: true` (a workflow's retry of a downstream job:
-- back to blocked); any retry of a job makes its dependants wait for it again.
-- The trigger runs as the migrating role (SECURITY DEFINER: workers append in no
-- tenant, and row security would hide the dependency rows from them).
--
-- Replaces the fold step (sql/0076) and the two functions that write `jobs` rows
-- (sql/0074): the new statuses and events, and the new column `jobs.workflow_id`.

ALTER TABLE jobs ADD COLUMN workflow_id uuid;

CREATE TABLE workflow_jobs (
    tenant text NOT NULL,
    workflow_id uuid NOT NULL,
    job_id uuid NOT NULL PRIMARY KEY,
    name text NOT NULL,
    on_upstream_failure text NOT NULL CHECK (on_upstream_failure IN ('cancel', 'run', 'skip')),
    submitted_at timestamptz NOT NULL,
    "position" bigint NOT NULL,  -- of its submission: the workflow's jobs in the order given
    UNIQUE (tenant, workflow_id, name)
);

CREATE TABLE job_dependencies (
    tenant text NOT NULL,
    job_id uuid NOT NULL,
    depends_on uuid NOT NULL,
    upstream_status text,  -- how the dependency ended (NULL: not yet, or running again)
    cause bytea,           -- the hash of the event that ended it
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX job_dependencies_upstream_idx ON job_dependencies (depends_on);

-- One row per workflow, for its list (a page by submission time).
CREATE TABLE workflows (
    tenant text NOT NULL,
    workflow_id uuid NOT NULL,
    submitted_by text NOT NULL,
    submitted_at timestamptz NOT NULL,
    jobs integer NOT NULL,
    PRIMARY KEY (tenant, workflow_id)
);
CREATE INDEX workflows_submitted_idx ON workflows (tenant, submitted_at DESC, workflow_id DESC);

-- Written only by the append's trigger (as the migrating role); read in the tenant.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['workflow_jobs', 'job_dependencies', 'workflows'] LOOP
        EXECUTE format('REVOKE ALL ON %I FROM ledger_app', t);
        EXECUTE format('GRANT SELECT ON %I TO ledger_app', t);
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

CREATE OR REPLACE FUNCTION job_view_apply(e events) RETURNS void
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

CREATE OR REPLACE FUNCTION jobs_project_appended() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    later bigint;
    applied bigint;
BEGIN
    IF EXISTS (
        SELECT FROM appended WHERE type LIKE 'job.%' GROUP BY job_id HAVING count(*) > 1
    ) THEN
        PERFORM job_view_apply(e::events)
        FROM (SELECT * FROM appended WHERE type LIKE 'job.%' ORDER BY position) AS e;
        RETURN NULL;
    END IF;

    INSERT INTO jobs
    SELECT s.*
    FROM appended AS e
    CROSS JOIN LATERAL job_view_step(NULL::jobs, e::events) AS s
    WHERE e.version = 1
      AND e.type LIKE 'job.%';

    SELECT count(*) INTO later FROM appended WHERE version > 1 AND type LIKE 'job.%';
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

-- How an event ends its job, if it does: completed, failed, cancelled or skipped.
CREATE FUNCTION job_event_ending(type text, data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN type = 'job.completed.v1' THEN 'completed'
        WHEN type = 'job.cancelled.v1' THEN 'cancelled'
        WHEN type = 'job.skipped.v1' THEN 'skipped'
        WHEN type IN ('job.failed.v1', 'job.retry_scheduled.v1', 'job.lease_expired.v1')
             AND data->>'next_attempt_at' IS NULL THEN 'failed'
    END
$$;

-- Decides the still-blocked dependants of jobs that just ended (`ids`, how each ended,
-- the hash of the event that ended it), and of those that end by it, wave by wave.
CREATE FUNCTION workflow_resolve(ids uuid[], endings text[], causes bytea[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    child uuid;
    mode text;
    latest events;
    failed_dep job_dependencies;
    last_dep job_dependencies;
    verdict text;
    data jsonb;
    next_ids uuid[];
    next_endings text[];
    next_causes bytea[];
    r record;
BEGIN
    WHILE ids IS NOT NULL AND cardinality(ids) > 0 LOOP
        next_ids := '{}';
        next_endings := '{}';
        next_causes := '{}';
        FOR child IN
            SELECT DISTINCT d.job_id FROM job_dependencies AS d
            WHERE d.depends_on = ANY(ids) ORDER BY d.job_id
        LOOP
            SELECT w.on_upstream_failure INTO mode FROM workflow_jobs AS w
            WHERE w.job_id = child FOR UPDATE;
            mode := coalesce(mode, 'cancel');
            UPDATE job_dependencies AS d
            SET upstream_status = x.ending, cause = x.cause
            FROM unnest(ids, endings, causes) AS x (id, ending, cause)
            WHERE d.job_id = child AND d.depends_on = x.id;
            -- The dependant's latest event, as the ledger recorded it: still blocked?
            SELECT * INTO latest FROM events AS e
            WHERE e.job_id = child ORDER BY e.version DESC LIMIT 1;
            CONTINUE WHEN NOT FOUND OR NOT (
                latest.type = 'job.submitted.v1'
                OR (latest.type = 'job.retried.v1' AND (latest.data->>'blocked')::boolean));
            SELECT * INTO failed_dep FROM job_dependencies AS d
            WHERE d.job_id = child AND d.upstream_status IN ('failed', 'cancelled')
            ORDER BY d.depends_on LIMIT 1;
            IF failed_dep.job_id IS NOT NULL AND mode <> 'run' THEN
                verdict := CASE mode WHEN 'skip' THEN 'job.skipped.v1' ELSE 'job.cancelled.v1' END;
                last_dep := failed_dep;
            ELSIF NOT EXISTS (SELECT FROM job_dependencies AS d
                              WHERE d.job_id = child AND d.upstream_status IS NULL) THEN
                verdict := 'job.unblocked.v1';
                SELECT d.* INTO last_dep
                FROM job_dependencies AS d
                JOIN unnest(ids) AS x (id) ON x.id = d.depends_on
                WHERE d.job_id = child ORDER BY d.depends_on LIMIT 1;
            ELSE
                CONTINUE;
            END IF;
            data := jsonb_build_object(
                'upstream_job_id', last_dep.depends_on,
                'upstream_status', last_dep.upstream_status,
                'cause', encode(last_dep.cause, 'hex'));
            IF verdict = 'job.cancelled.v1' THEN
                data := data || jsonb_build_object('reason', format(
                    'upstream job %s ended %s', last_dep.depends_on, last_dep.upstream_status));
            ELSIF verdict = 'job.unblocked.v1' THEN
                data := data || jsonb_build_object('upstream', (
                    SELECT coalesce(jsonb_object_agg(w.name, CASE WHEN d.upstream_status = 'completed'
                                                              THEN res.result END), '{}')
                    FROM job_dependencies AS d
                    JOIN workflow_jobs AS w ON w.job_id = d.depends_on
                    LEFT JOIN LATERAL (
                        SELECT e.data->'result' AS result FROM events AS e
                        WHERE e.job_id = d.depends_on AND e.type = 'job.completed.v1'
                        ORDER BY e.version DESC LIMIT 1
                    ) AS res ON true
                    WHERE d.job_id = child));
            END IF;
            SELECT a.job_id, a.hash INTO r
            FROM events_append(ARRAY[child], ARRAY[latest.version + 1], ARRAY[verdict],
                               ARRAY['ledger:workflow'], ARRAY[data]) AS a;
            IF verdict <> 'job.unblocked.v1' THEN
                next_ids := next_ids || child;
                next_endings := next_endings
                    || CASE verdict WHEN 'job.skipped.v1' THEN 'skipped' ELSE 'cancelled' END;
                next_causes := next_causes || r.hash;
            END IF;
        END LOOP;
        ids := next_ids;
        endings := next_endings;
        causes := next_causes;
    END LOOP;
END;
$$;

REVOKE ALL ON FUNCTION workflow_resolve(uuid[], text[], bytea[]) FROM PUBLIC, ledger_app;

-- After each append: records new workflow jobs, lets a retried job's dependants wait for
-- it again, and resolves the dependants of the jobs that ended (see the top).
CREATE FUNCTION workflows_resolve_appended() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    ids uuid[];
    endings text[];
    causes bytea[];
BEGIN
    IF coalesce(current_setting('ledger.workflow_resolving', true), '') = 'on' THEN
        RETURN NULL;  -- appended by workflow_resolve, which resolves it in its next wave
    END IF;
    IF NOT EXISTS (
        SELECT FROM appended
        WHERE type IN ('job.submitted.v1', 'job.retried.v1', 'job.completed.v1',
                       'job.failed.v1', 'job.retry_scheduled.v1', 'job.lease_expired.v1',
                       'job.cancelled.v1', 'job.skipped.v1')
    ) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM appended WHERE type = 'job.submitted.v1' AND data ? 'workflow_id') THEN
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
    INSERT INTO job_dependencies (tenant, job_id, depends_on)
    SELECT a.tenant, a.job_id, d.id::uuid
    FROM appended AS a
    CROSS JOIN LATERAL jsonb_array_elements_text(a.data->'depends_on') AS d (id)
    WHERE a.type = 'job.submitted.v1' AND jsonb_typeof(a.data->'depends_on') = 'array';
    UPDATE job_dependencies AS d
    SET upstream_status = NULL, cause = NULL
    FROM appended AS a
    WHERE a.type = 'job.retried.v1' AND d.depends_on = a.job_id
      AND d.upstream_status IS NOT NULL;
    SELECT array_agg(a.job_id ORDER BY a.position),
           array_agg(job_event_ending(a.type, a.data) ORDER BY a.position),
           array_agg(a.hash ORDER BY a.position)
    INTO ids, endings, causes
    FROM appended AS a
    WHERE job_event_ending(a.type, a.data) IS NOT NULL
      AND EXISTS (SELECT FROM job_dependencies AS d WHERE d.depends_on = a.job_id);
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('ledger.workflow_resolving', 'on', true);
    PERFORM workflow_resolve(ids, endings, causes);
    PERFORM set_config('ledger.workflow_resolving', '', true);
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION workflows_resolve_appended() FROM PUBLIC, ledger_app;

CREATE TRIGGER events_resolve_workflows
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION workflows_resolve_appended();

-- A cancel or retry of a workflow job takes the job's lock before its event is stored,
-- the lock the resolution takes before deciding it (see the top).
CREATE FUNCTION workflow_job_lock() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM FROM workflow_jobs WHERE job_id = NEW.job_id FOR UPDATE;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION workflow_job_lock() FROM PUBLIC, ledger_app;

CREATE TRIGGER events_lock_workflow_job
BEFORE INSERT ON events
FOR EACH ROW
WHEN (NEW.type IN ('job.cancelled.v1', 'job.retried.v1'))
EXECUTE FUNCTION workflow_job_lock();

-- What a claimed workflow job's handler receives as `upstream`: the dependencies'
-- results its latest unblocking recorded (for workers, who act in no tenant).
CREATE FUNCTION workflow_upstream(job uuid) RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT e.data->'upstream' FROM events AS e
    WHERE e.job_id = job AND e.type = 'job.unblocked.v1'
      AND e.tenant = coalesce(ledger_tenant_named(), e.tenant)
    ORDER BY e.version DESC LIMIT 1
$$;

REVOKE ALL ON FUNCTION workflow_upstream(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION workflow_upstream(uuid) TO ledger_app;
