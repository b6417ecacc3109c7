-- Workflow resolution decides a wave's dependants in one pass and appends their events in one events_append call (issue #18 follow-up: a layered DAG drained at a tenth of independent jobs' rate).
--
-- sql/0077's workflow_resolve took each dependant in turn: its lock, the update of its
-- dependency rows, its latest event, its verdict and its own events_append (one INSERT
-- with every statement trigger of the append). A batch of 100 completions unblocking 100
-- jobs ran 100 appends and ~10 statements per dependant inside the completing
-- transaction: 77-96 ms against ~7 ms for 100 completions without dependants
-- (BENCHMARKS.md, workflows). Here each wave is four statements, whatever its width:
--   1. lock every dependant's workflow_jobs row, in job id order (two transactions
--      locking overlapping sets take them in one order, so they queue, never deadlock);
--   2. mark the dependency rows of the jobs that just ended;
--   3. decide every still-blocked dependant (a fresh snapshot, taken after the locks:
--      of parents ending concurrently the last to take a child's lock sees the others'
--      marks, so the child is unblocked once);
--   4. append all the verdicts in one events_append call (a multi-row append).
-- The rules, the data of each event (the upstream job and the hash of the event that
-- caused it; `upstream` results; the cancel's reason) and the waves (cancelled and
-- skipped dependants end in turn) are sql/0077's, unchanged; so is the caller
-- (workflows_resolve_appended, sql/0078, and its retry rule).
-- The function's statements use generic plans (planned once per connection): re-planning
-- the decision on every call made a completion with one dependant ~1 ms slower.
-- Replaces workflow_resolve (sql/0077).

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
        SELECT array_agg(t.job_id ORDER BY t.job_id),
               array_agg(CASE t.type WHEN 'job.skipped.v1' THEN 'skipped' ELSE 'cancelled' END
                         ORDER BY t.job_id),
               array_agg(a.hash ORDER BY t.job_id)
        INTO ids, endings, causes
        FROM unnest(d_ids, d_types) AS t (job_id, type)
        JOIN unnest(appended_ids, appended_hashes) AS a (job_id, hash) ON a.job_id = t.job_id
        WHERE t.type <> 'job.unblocked.v1';
    END LOOP;
END;
$$;
