-- The workflow and webhook tables' fold rules as functions `ledger projections verify|rebuild` compare and refill them with (issue #18/#19 follow-up), and the workflow's dependency decisions reported to the appending process for /metrics.
--
-- Each *_folded() function below gives a table's rows as the events say they are, by the
-- rules of the triggers that write them (sql/0077, 0078, 0081 for the workflow tables,
-- sql/0080 for the webhook tables), in one set-based statement that the planner inlines
-- (LANGUAGE sql, STABLE, run as the caller: row-level security shows each side the same
-- tenant's rows):
--   workflows, workflow_jobs  from the job.submitted.v1 events naming a workflow;
--   job_dependencies          one row per dependency a job.submitted.v1 names; how the
--                             dependency ended and the hash of the event that ended it:
--                             its latest ending event (completed, cancelled, skipped, or
--                             failed with no attempt left), unless a job.retried.v1 came
--                             after it (then NULL: running again);
--   webhook_endpoints         the fold of each endpoint's events (webhook_endpoint_step);
--   job_webhooks              the webhook a job.submitted.v1 names;
--   webhook_deliveries        only what the delivery's events decide: its version,
--                             attempts, tries (since the last redelivery), status, when
--                             the next attempt is due, and the last attempt's answer. A
--                             delivery's creation is no event of its own (the append
--                             creates it beside the job event it reports), so its row
--                             (id, tenant, endpoint, body, created_at) is taken as it is;
--                             its lease is a sender's, not a fold.
--
-- workflow_resolve (sql/0081) also counts the decisions it appends (unblocked, skipped,
-- cancelled) in the transaction setting `ledger.workflow_decided` (a JSON object; set
-- only when it decided something), which workflows_resolve_appended clears at the start
-- of each top-level append: the `events_append` query returns it beside the appended
-- rows, so the process that appended counts them with no query of its own.
-- Replaces workflows_resolve_appended (sql/0078) and workflow_resolve (sql/0081); the
-- rules and the events are unchanged.

CREATE AGGREGATE webhook_endpoint_fold(events) (
    SFUNC = webhook_endpoint_step,
    STYPE = webhook_endpoints
);

CREATE FUNCTION workflows_folded() RETURNS SETOF workflows
LANGUAGE sql STABLE
AS $$
    SELECT e.tenant, (e.data->>'workflow_id')::uuid, min(e.actor), min(e.occurred_at),
           count(*)::integer
    FROM events AS e
    WHERE e.type = 'job.submitted.v1' AND e.data ? 'workflow_id'
    GROUP BY 1, 2
$$;

CREATE FUNCTION workflow_jobs_folded() RETURNS SETOF workflow_jobs
LANGUAGE sql STABLE
AS $$
    SELECT e.tenant, (e.data->>'workflow_id')::uuid, e.job_id,
           coalesce(e.data->>'name', e.job_id::text),
           coalesce(e.data->>'on_upstream_failure', 'cancel'), e.occurred_at, e.position
    FROM events AS e
    WHERE e.type = 'job.submitted.v1' AND e.data ? 'workflow_id'
$$;

CREATE FUNCTION job_dependencies_folded() RETURNS SETOF job_dependencies
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

CREATE FUNCTION webhook_endpoints_folded() RETURNS SETOF webhook_endpoints
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

CREATE FUNCTION job_webhooks_folded() RETURNS SETOF job_webhooks
LANGUAGE sql STABLE
AS $$
    SELECT e.job_id, e.tenant, e.data->'webhook'->>'url'
    FROM events AS e
    WHERE e.type = 'job.submitted.v1' AND e.version = 1 AND e.data ? 'webhook'
$$;

-- What a delivery's events decide of its row (the columns webhook_delivery_apply writes,
-- but its lease), for every delivery row and every delivery stream without one.
CREATE FUNCTION webhook_deliveries_folded()
RETURNS TABLE (delivery_id uuid, tenant text, version integer, attempts integer,
               tries integer, status text, next_attempt_at timestamptz,
               last_status_code integer, last_error text, last_attempt_at timestamptz)
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

CREATE OR REPLACE FUNCTION workflows_resolve_appended() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    ids uuid[];
    endings text[];
    causes bytea[];
    waiting uuid[];
    waiting_endings text[];
    waiting_causes bytea[];
BEGIN
    IF coalesce(current_setting('ledger.workflow_resolving', true), '') = 'on' THEN
        RETURN NULL;  -- appended by workflow_resolve, which resolves it in its next wave
    END IF;
    IF current_setting('ledger.workflow_decided', true) <> '' THEN
        PERFORM set_config('ledger.workflow_decided', '', true);  -- an earlier append's
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
    -- A job retried back to blocked whose dependencies have all ended is decided now, as
    -- their ends decided it (sql/0079): through one of them, its ending and its cause.
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

CREATE OR REPLACE FUNCTION workflow_resolve(ids uuid[], endings text[], causes bytea[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
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
