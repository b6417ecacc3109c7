-- A workflow's retry makes each re-run job wait for its own dependencies (issue #18).
--
-- A workflow job retried by name (`retry {"from": NAME}`) or as one of several failed
-- jobs ran at once, even while a dependency of its own had not completed. The workflow's
-- retry now sends every re-run job that has dependencies back to `blocked`
-- (ledger.workflows.to_rerun), and the append's trigger decides such a job at once when
-- all its dependencies have already ended: unblocked, cancelled or skipped by the same
-- rule and with the same citation as when they ended (workflow_resolve, sql/0077), in
-- the retry's transaction. One whose dependencies have not all ended waits for them.
-- The retry's event takes the job's lock before it is stored (sql/0077), and each check
-- here is a statement of its own (a fresh snapshot), so a dependency that ends while the
-- retry runs is seen by one of the two.
-- Replaces workflows_resolve_appended (sql/0077), adding the block before `IF ids IS NULL`.

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
