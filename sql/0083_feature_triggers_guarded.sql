-- An append that concerns no feature pays (almost) nothing for the feature triggers.
--
-- The drain's appends (a batch of claims, a batch of completions) and the idle path's
-- (one submission, one claim, one completion) concern neither webhooks nor workflows in
-- a deployment that uses neither, yet `workflows_resolve_appended` (sql/0082) ran up to
-- six statements for every completion (the checks for workflow submissions, the
-- dependency rows' INSERT and UPDATE, the ended jobs' dependants, the retried jobs
-- waiting) and sql/0080's `webhooks_project_appended` four for every append, whatever
-- it held (BENCHMARKS.md, "Append overhead"). Each function now first reads the
-- transition table once, deciding which of its parts any appended row concerns, and
-- runs only those:
--   workflows: a claim's append stops after that one scan; a completion's runs one more
--     statement (do the ended jobs have dependants?); submissions naming a workflow or
--     dependencies and retries run everything as before;
--   webhooks: an append holding no submission with a webhook, no `webhook.*` event and
--     no reported job event (completed, failed, retrying, cancelled) stops after the
--     scan; one holding reported events asks both "any endpoint?" and "any job
--     webhook?" in one statement and joins only where the answer is yes.
-- The statements that run are sql/0082's and sql/0080's, in the same order, so every
-- behaviour is unchanged. The triggers keep their names (and so their firing order).
-- Replaces workflows_resolve_appended (sql/0082: its clearing of ledger.workflow_decided kept
-- first) and webhooks_project_appended (sql/0080).

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

CREATE OR REPLACE FUNCTION webhooks_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
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
