-- name: jobs_get
-- A job of the tenant the transaction names (naming none, the application sees no
-- job, sql/0068; the owner, who bypasses row security, any tenant's).
SELECT *
FROM jobs
WHERE job_id = $1
  AND tenant = coalesce(ledger_tenant_named(), tenant);

-- name: jobs_scratch_create
-- A scratch copy of the view's shape, gone at the end of the transaction.
CREATE TEMPORARY TABLE jobs_scratch (LIKE jobs) ON COMMIT DROP;

-- name: jobs_scratch_fill
INSERT INTO jobs_scratch
SELECT (s.state).*
FROM (
    SELECT job_view_fold(e ORDER BY e.version) AS state
    FROM events AS e
    WHERE e.type LIKE 'job.%'
    GROUP BY e.job_id
) AS s;

-- name: queues_rebuilt_diff
-- Queues whose live row differs from the fold of their events (sql/0059), side by side;
-- every tenant's, each stream (unique across tenants) named once.
WITH rebuilt AS (
    SELECT (s.state).tenant, (s.state).name, (s.state).stream_id, (s.state).version,
           (s.state).concurrency, (s.state).rate_limit, (s.state).rate_period_seconds,
           (s.state).rate_burst, (s.state).per_key_concurrency, (s.state).fairness,
           (s.state).paused, (s.state).updated_by, (s.state).updated_at
    FROM (
        SELECT queue_view_fold(e ORDER BY e.version) AS state
        FROM events AS e
        WHERE e.type LIKE 'queue.%'
        GROUP BY e.job_id
    ) AS s
), live AS (
    SELECT tenant, name, stream_id, version, concurrency, rate_limit, rate_period_seconds,
           rate_burst, per_key_concurrency, fairness, paused, updated_by, updated_at
    FROM queues
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), streams AS (
    SELECT stream_id FROM live_only
    UNION
    SELECT stream_id FROM rebuilt_only
)
SELECT streams.stream_id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.stream_id = streams.stream_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.stream_id = streams.stream_id) AS rebuilt
FROM streams
ORDER BY streams.stream_id;

-- name: schedules_rebuilt_diff
-- Schedules whose live row differs from the fold of their events (sql/0073), side by
-- side, each stream named once (the tenant's, as row-level security shows them).
WITH rebuilt AS (
    SELECT (s.state).*
    FROM (
        SELECT schedule_view_fold(e ORDER BY e.version) AS state
        FROM events AS e
        WHERE e.type LIKE 'schedule.%'
        GROUP BY e.job_id
    ) AS s
), live AS (
    SELECT * FROM schedules
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), streams AS (
    SELECT stream_id FROM live_only
    UNION
    SELECT stream_id FROM rebuilt_only
)
SELECT streams.stream_id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.stream_id = streams.stream_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.stream_id = streams.stream_id)
           AS rebuilt
FROM streams
ORDER BY streams.stream_id;

-- name: schedule_slots_rebuilt_diff
-- Recorded slots whose live row differs from the slot events (sql/0073): a slot's row
-- is its last slot event's (a buffered slot that fired is `fired`), side by side.
WITH rebuilt AS (
    SELECT DISTINCT ON (e.tenant, e.data->>'schedule_id', (e.data->>'slot')::timestamptz)
           e.tenant,
           e.data->>'schedule_id' AS schedule_id,
           (e.data->>'slot')::timestamptz AS slot,
           CASE e.type WHEN 'schedule.slot_fired.v1' THEN 'fired'
                       WHEN 'schedule.slot_skipped.v1' THEN 'skipped'
                       ELSE 'buffered' END AS outcome,
           e.data->>'reason' AS reason,
           CASE WHEN e.type = 'schedule.slot_skipped.v1'
                THEN (e.data->>'next_slot')::timestamptz END AS until,
           (e.data->>'job')::uuid AS job_id,
           e.version,
           e.occurred_at AS recorded_at
    FROM events AS e
    WHERE e.type IN ('schedule.slot_fired.v1', 'schedule.slot_skipped.v1',
                     'schedule.slot_buffered.v1')
    ORDER BY e.tenant, e.data->>'schedule_id', (e.data->>'slot')::timestamptz, e.version DESC
), live_only AS (
    SELECT * FROM schedule_slots
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM schedule_slots
), keys AS (
    SELECT tenant, schedule_id, slot FROM live_only
    UNION
    SELECT tenant, schedule_id, slot FROM rebuilt_only
)
SELECT k.tenant, k.schedule_id, k.slot,
       (SELECT to_jsonb(l) FROM live_only AS l
        WHERE (l.tenant, l.schedule_id, l.slot) = (k.tenant, k.schedule_id, k.slot)) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r
        WHERE (r.tenant, r.schedule_id, r.slot) = (k.tenant, k.schedule_id, k.slot)) AS rebuilt
FROM keys AS k
ORDER BY k.tenant, k.schedule_id, k.slot;

-- name: tenants_rebuilt_diff
-- Tenants whose settings row differs from the fold of their events (sql/0069), side
-- by side; every tenant's (the live rows through tenants_all(): the app role sees only
-- its own tenant's row of `tenants`).
WITH rebuilt AS (
    SELECT (s.state).tenant, (s.state).stream_id, (s.state).version, (s.state).max_queued,
           (s.state).max_running, (s.state).weight, (s.state).updated_by, (s.state).updated_at
    FROM (
        SELECT tenant_view_fold(e ORDER BY e.version) AS state
        FROM events AS e
        WHERE e.type LIKE 'tenant.%'
        GROUP BY e.job_id
    ) AS s
), live AS (
    SELECT tenant, stream_id, version, max_queued, max_running, weight, updated_by, updated_at
    FROM tenants_all()
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), streams AS (
    SELECT stream_id FROM live_only
    UNION
    SELECT stream_id FROM rebuilt_only
)
SELECT streams.stream_id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.stream_id = streams.stream_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.stream_id = streams.stream_id) AS rebuilt
FROM streams
ORDER BY streams.stream_id;

-- name: workflows_rebuilt_diff
-- Workflows whose row differs from their jobs' submissions (workflows_folded, sql/0082),
-- side by side, by workflow id.
WITH rebuilt AS (
    SELECT * FROM workflows_folded()
), live AS (
    SELECT * FROM workflows
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), keys AS (
    SELECT tenant, workflow_id FROM live_only
    UNION
    SELECT tenant, workflow_id FROM rebuilt_only
)
SELECT k.workflow_id AS id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.tenant = k.tenant AND l.workflow_id = k.workflow_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.tenant = k.tenant AND r.workflow_id = k.workflow_id) AS rebuilt
FROM keys AS k
ORDER BY k.tenant, k.workflow_id;

-- name: workflow_jobs_rebuilt_diff
-- Workflow jobs whose row differs from their submission (workflow_jobs_folded), by job id.
WITH rebuilt AS (
    SELECT * FROM workflow_jobs_folded()
), live AS (
    SELECT * FROM workflow_jobs
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), keys AS (
    SELECT job_id FROM live_only
    UNION
    SELECT job_id FROM rebuilt_only
)
SELECT k.job_id AS id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.job_id = k.job_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.job_id = k.job_id) AS rebuilt
FROM keys AS k
ORDER BY k.job_id;

-- name: job_dependencies_rebuilt_diff
-- Dependency rows that differ from the submissions and their dependencies' ends
-- (job_dependencies_folded), by the dependant's job id, one per dependency.
WITH rebuilt AS (
    SELECT * FROM job_dependencies_folded()
), live AS (
    SELECT * FROM job_dependencies
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), keys AS (
    SELECT job_id, depends_on FROM live_only
    UNION
    SELECT job_id, depends_on FROM rebuilt_only
)
SELECT k.job_id AS id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.job_id = k.job_id AND l.depends_on = k.depends_on) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.job_id = k.job_id AND r.depends_on = k.depends_on) AS rebuilt
FROM keys AS k
ORDER BY k.job_id, k.depends_on;

-- name: webhook_endpoints_rebuilt_diff
-- Webhook endpoints whose row differs from the fold of their events (sql/0080's
-- webhook_endpoint_step), by endpoint id.
WITH rebuilt AS (
    SELECT * FROM webhook_endpoints_folded()
), live AS (
    SELECT * FROM webhook_endpoints
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), keys AS (
    SELECT endpoint_id FROM live_only
    UNION
    SELECT endpoint_id FROM rebuilt_only
)
SELECT k.endpoint_id AS id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.endpoint_id = k.endpoint_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.endpoint_id = k.endpoint_id) AS rebuilt
FROM keys AS k
ORDER BY k.endpoint_id;

-- name: job_webhooks_rebuilt_diff
-- Jobs' own webhooks that differ from their submissions (job_webhooks_folded), by job id.
WITH rebuilt AS (
    SELECT * FROM job_webhooks_folded()
), live AS (
    SELECT * FROM job_webhooks
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), keys AS (
    SELECT job_id FROM live_only
    UNION
    SELECT job_id FROM rebuilt_only
)
SELECT k.job_id AS id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.job_id = k.job_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.job_id = k.job_id) AS rebuilt
FROM keys AS k
ORDER BY k.job_id;

-- name: webhook_deliveries_rebuilt_diff
-- Deliveries whose status and attempt columns differ from the fold of their attempt
-- events (webhook_deliveries_folded; a delivery stream with no row shows live NULL), by
-- delivery id.
WITH rebuilt AS (
    SELECT * FROM webhook_deliveries_folded()
), live AS (
    SELECT delivery_id, tenant, version, attempts, tries, status, next_attempt_at,
           last_status_code, last_error, last_attempt_at FROM webhook_deliveries
), live_only AS (
    SELECT * FROM live
    EXCEPT ALL
    SELECT * FROM rebuilt
), rebuilt_only AS (
    SELECT * FROM rebuilt
    EXCEPT ALL
    SELECT * FROM live
), keys AS (
    SELECT delivery_id FROM live_only
    UNION
    SELECT delivery_id FROM rebuilt_only
)
SELECT k.delivery_id AS id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.delivery_id = k.delivery_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.delivery_id = k.delivery_id) AS rebuilt
FROM keys AS k
ORDER BY k.delivery_id;

-- name: workflow_tables_lock
-- The workflow tables' rebuild, in a transaction of its own: appends that record or
-- resolve workflow jobs wait until it commits; EXCLUSIVE also holds off a cancel's or
-- retry's row lock on workflow_jobs (sql/0077), which would otherwise wait for a row it
-- deletes while it waits for that append.
LOCK TABLE workflows, workflow_jobs, job_dependencies IN EXCLUSIVE MODE;

-- name: workflows_delete_all
DELETE FROM workflows;

-- name: workflow_jobs_delete_all
DELETE FROM workflow_jobs;

-- name: job_dependencies_delete_all
DELETE FROM job_dependencies;

-- name: workflows_fill
INSERT INTO workflows
SELECT *
FROM workflows_folded();

-- name: workflow_jobs_fill
INSERT INTO workflow_jobs
SELECT *
FROM workflow_jobs_folded();

-- name: job_dependencies_fill
INSERT INTO job_dependencies
SELECT *
FROM job_dependencies_folded();

-- name: webhook_tables_lock
-- The webhook tables' rebuild, in a transaction of its own: appends (which create
-- deliveries and fold webhook events) and the senders' leases wait until it commits.
LOCK TABLE webhook_endpoints, job_webhooks, webhook_deliveries IN EXCLUSIVE MODE;

-- name: webhook_endpoints_delete_all
DELETE FROM webhook_endpoints;

-- name: job_webhooks_delete_all
DELETE FROM job_webhooks;

-- name: webhook_endpoints_fill
INSERT INTO webhook_endpoints
SELECT *
FROM webhook_endpoints_folded();

-- name: job_webhooks_fill
INSERT INTO job_webhooks
SELECT *
FROM job_webhooks_folded();

-- name: webhook_deliveries_refold
-- Each delivery's status and attempt columns as its events decide them; its identity,
-- body and lease are kept (a delivery row that is gone cannot be rebuilt: its creation
-- is not an event of its own).
UPDATE webhook_deliveries AS d
SET version = f.version, attempts = f.attempts, tries = f.tries, status = f.status,
    next_attempt_at = f.next_attempt_at, last_status_code = f.last_status_code,
    last_error = f.last_error, last_attempt_at = f.last_attempt_at
FROM webhook_deliveries_folded() AS f
WHERE f.delivery_id = d.delivery_id
  AND (d.version, d.attempts, d.tries, d.status, d.next_attempt_at, d.last_status_code,
       d.last_error, d.last_attempt_at)
      IS DISTINCT FROM
      (f.version, f.attempts, f.tries, f.status, f.next_attempt_at, f.last_status_code,
       f.last_error, f.last_attempt_at);

-- name: jobs_scratch_diff
-- Rows that differ between the live view and the rebuild, side by side.
WITH live_only AS (
    SELECT * FROM jobs
    EXCEPT ALL
    SELECT * FROM jobs_scratch
), rebuilt_only AS (
    SELECT * FROM jobs_scratch
    EXCEPT ALL
    SELECT * FROM jobs
), ids AS (
    SELECT job_id FROM live_only
    UNION
    SELECT job_id FROM rebuilt_only
)
SELECT ids.job_id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.job_id = ids.job_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.job_id = ids.job_id) AS rebuilt
FROM ids
ORDER BY ids.job_id;

-- name: jobs_delete_all
DELETE FROM jobs;

-- name: queues_lock
-- The queues' rebuild, in a transaction of its own holding no other lock: queue events
-- wait to be projected until it commits (then apply on top of it), while claims, which
-- only read and row-lock `queues`, go on (the rebuild's delete waits for their rows).
LOCK TABLE queues IN SHARE ROW EXCLUSIVE MODE;

-- name: queues_delete_all
DELETE FROM queues;

-- name: queues_fill
-- The queues' settings as the fold of their events (sql/0059), every tenant's.
INSERT INTO queues (tenant, name, stream_id, version, concurrency, rate_limit,
                    rate_period_seconds, rate_burst, per_key_concurrency, fairness, paused,
                    updated_by, updated_at)
SELECT (s.state).tenant, (s.state).name, (s.state).stream_id, (s.state).version,
       (s.state).concurrency, (s.state).rate_limit, (s.state).rate_period_seconds,
       (s.state).rate_burst, (s.state).per_key_concurrency, (s.state).fairness,
       (s.state).paused, (s.state).updated_by, (s.state).updated_at
FROM (
    SELECT queue_view_fold(e ORDER BY e.version) AS state
    FROM events AS e
    WHERE e.type LIKE 'queue.%'
    GROUP BY e.job_id
) AS s;

-- name: tenants_lock
-- The tenants' rebuild, like the queues' (a transaction of its own): tenant events
-- wait to be projected until it commits; submissions checking a quota wait for the
-- rows it deletes.
LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE;

-- name: tenants_delete_all
DELETE FROM tenants;

-- name: tenants_fill
-- The tenants' settings as the fold of their events (sql/0069).
INSERT INTO tenants (tenant, stream_id, version, max_queued, max_running, weight,
                     updated_by, updated_at)
SELECT (s.state).tenant, (s.state).stream_id, (s.state).version, (s.state).max_queued,
       (s.state).max_running, (s.state).weight, (s.state).updated_by, (s.state).updated_at
FROM (
    SELECT tenant_view_fold(e ORDER BY e.version) AS state
    FROM events AS e
    WHERE e.type LIKE 'tenant.%'
    GROUP BY e.job_id
) AS s;

-- name: schedules_lock
-- The schedules' rebuild, like the queues' (a transaction of its own): schedule events
-- wait to be projected until it commits.
LOCK TABLE schedules, schedule_slots IN SHARE ROW EXCLUSIVE MODE;

-- name: schedules_delete_all
DELETE FROM schedules;

-- name: schedule_slots_delete_all
DELETE FROM schedule_slots;

-- name: schedules_fill
-- The schedules as the fold of their events (sql/0073), every tenant's.
INSERT INTO schedules
SELECT (s.state).*
FROM (
    SELECT schedule_view_fold(e ORDER BY e.version) AS state
    FROM events AS e
    WHERE e.type LIKE 'schedule.%'
    GROUP BY e.job_id
) AS s;

-- name: schedule_slots_fill
-- Each recorded slot as its last slot event left it (sql/0073's projection).
INSERT INTO schedule_slots (tenant, schedule_id, slot, outcome, reason, until, job_id,
                            version, recorded_at)
SELECT DISTINCT ON (e.tenant, e.data->>'schedule_id', (e.data->>'slot')::timestamptz)
       e.tenant,
       e.data->>'schedule_id',
       (e.data->>'slot')::timestamptz,
       CASE e.type WHEN 'schedule.slot_fired.v1' THEN 'fired'
                   WHEN 'schedule.slot_skipped.v1' THEN 'skipped'
                   ELSE 'buffered' END,
       e.data->>'reason',
       CASE WHEN e.type = 'schedule.slot_skipped.v1'
            THEN (e.data->>'next_slot')::timestamptz END,
       (e.data->>'job')::uuid,
       e.version,
       e.occurred_at
FROM events AS e
WHERE e.type IN ('schedule.slot_fired.v1', 'schedule.slot_skipped.v1',
                 'schedule.slot_buffered.v1')
ORDER BY e.tenant, e.data->>'schedule_id', (e.data->>'slot')::timestamptz, e.version DESC;

-- name: jobs_fill_from_scratch
INSERT INTO jobs
SELECT *
FROM jobs_scratch;

-- name: jobs_fold_as_of
-- One job's state folded from its events up to an instant (time travel).
SELECT (job_view_fold(e ORDER BY e.version)).*
FROM events AS e
WHERE e.job_id = $1
  AND e.occurred_at <= $2
  AND e.tenant = ledger_tenant()
HAVING count(*) > 0;

-- name: events_feed_filtered
-- The feed of the tenant the transaction acts in after a cursor, in (txid, position) order, and only below the
-- snapshot's xmin: every transaction below it has ended, so nothing can appear
-- later before a row already returned (DESIGN.md invariant 5). Optional filters:
-- event type, actor, time range, job type. The horizon (xmin) comes back on every
-- row, and on a single all-NULL row when nothing matches, so a short page can move
-- the cursor up to it. `held_back`, from the same snapshot: committed events exist
-- at or above the horizon, kept out of this page by an older transaction still open
-- (the live feed reads again soon instead of waiting for the next wake-up). The newest
-- visible txid is one probe at the end of the (txid, position) index, whatever the size.
-- Bounded: the request looks at no more than the next $9 events below the horizon
-- (the page's own limit when nothing is filtered): they are read first, in index
-- order, whatever the filters, and only then filtered. `scanned` and the last key
-- looked at (reach_*) come back on every row: when all $9 were read and the page is
-- short, the cursor moves to that last key, not to the horizon.
-- A time range no visible event falls in (since after the newest occurred_at, until
-- at or before the oldest: one probe at an end of the occurred_at index) reads no
-- window at all: nothing below the horizon can match. The job type filter looks up
-- each job of the window once, set-based, not once per event.
WITH horizon AS MATERIALIZED (
    SELECT x.xmin,
           COALESCE((SELECT txid FROM events ORDER BY txid DESC LIMIT 1) >= x.xmin, false)
               AS held_back,
           ($6::timestamptz IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM events WHERE occurred_at >= $6::timestamptz
            ))
           OR ($7::timestamptz IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM events WHERE occurred_at < $7::timestamptz
            )) AS out_of_range
    FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) AS x
), window_ AS MATERIALIZED (
    SELECT ev.position, ev.job_id, ev.version, ev.type, ev.data, ev.actor, ev.occurred_at,
           ev.txid, ev.prev_hash, ev.hash
    FROM horizon AS h
    CROSS JOIN LATERAL (
        SELECT *
        FROM events AS e
        WHERE e.tenant = ledger_tenant()
          AND (e.tenant, e.txid, e.position) > (ledger_tenant(), $1::text::xid8, $2::bigint)
          AND e.txid < h.xmin
          AND NOT h.out_of_range
        ORDER BY e.tenant, e.txid, e.position
        LIMIT $9::integer
    ) AS ev
), typed AS MATERIALIZED (
    SELECT j.job_id
    FROM jobs AS j
    WHERE $8::text IS NOT NULL
      AND j.type = $8::text
      AND j.job_id IN (SELECT w.job_id FROM window_ AS w)
), reach AS MATERIALIZED (
    SELECT h.xmin, h.held_back,
           (SELECT count(*) FROM window_) AS scanned,
           last.txid AS reach_txid, last.position AS reach_position
    FROM horizon AS h
    LEFT JOIN LATERAL (
        SELECT w.txid, w.position FROM window_ AS w ORDER BY w.txid DESC, w.position DESC LIMIT 1
    ) AS last ON true
)
SELECT r.xmin::text::bigint AS horizon, r.held_back, r.scanned,
       r.reach_txid::text::bigint AS reach_txid, r.reach_position, e.*
FROM reach AS r
LEFT JOIN LATERAL (
    SELECT ev.position, ev.job_id, ev.version, ev.type, ev.data, ev.actor, ev.occurred_at,
           ev.txid::text::bigint AS txid, ev.prev_hash, ev.hash
    FROM window_ AS ev
    WHERE ($4::text IS NULL OR ev.type = $4)
      AND ($5::text IS NULL OR ev.actor = $5)
      AND ($6::timestamptz IS NULL OR ev.occurred_at >= $6)
      AND ($7::timestamptz IS NULL OR ev.occurred_at < $7)
      AND ($8::text IS NULL OR ev.job_id IN (SELECT t.job_id FROM typed AS t))
    ORDER BY ev.txid, ev.position
    LIMIT $3
) AS e ON true
ORDER BY e.txid, e.position;

-- name: jobs_metering_context
-- What the metrics need of jobs that just changed, as they were before: type and queue
-- (labels), when the job became due (queue wait) and when its running attempt started
-- (run time). The view already holds the new state (the append projects it), so each
-- job's events before its first appended version ($2) are folded again.
SELECT (f.s).job_id, (f.s).type, (f.s).queue, (f.s).run_at, (f.s).started_at
FROM unnest($1::uuid[], $2::integer[]) AS a (job_id, version)
CROSS JOIN LATERAL (
    SELECT job_view_fold(e ORDER BY e.version) AS s
    FROM events AS e
    WHERE e.job_id = a.job_id
      AND e.version < a.version
) AS f
WHERE (f.s).job_id IS NOT NULL;

-- name: job_counts_unfinished
-- Unfinished jobs by queue and status (blocked: workflow jobs waiting, sql/0077), for the queue-depth gauge at scrape time: the
-- counters (sql/0058), folded and not yet folded, a few hundred rows at most, summed
-- over every tenant (/metrics is the operator's, sql/0064), by tenant too (the scrape sums
-- them unless METRICS_TENANT_LABEL is on), through job_counts_all (sql/0068): the
-- application sees one tenant's rows at a time.
SELECT tenant, queue, status, jobs
FROM job_counts_all()
WHERE status IN ('pending', 'retrying', 'processing', 'blocked')
ORDER BY tenant, queue, status;

-- name: jobs_list_page
-- Newest first, keyset-paged: rows strictly after the cursor ($3, $4) in (created_at,
-- job_id) descending order; the first page passes (the largest time, the largest uuid). The
-- cursor is always a plain row comparison, so it is an index condition on
-- jobs_created_idx in every plan (no OFFSET, no scan past earlier pages). The caller
-- asks for one row more than a page to know if another follows.
SELECT *
FROM jobs
WHERE tenant = ledger_tenant()
  AND (created_at, job_id) < ($3::timestamptz, $4::uuid)
  AND ($1::text IS NULL OR type = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY created_at DESC, job_id DESC
LIMIT $5;

-- name: jobs_list_page_by_status
-- The same, for one status: an index range on jobs_status_created_idx.
SELECT *
FROM jobs
WHERE tenant = ledger_tenant()
  AND status = $6::text
  AND (created_at, job_id) < ($3::timestamptz, $4::uuid)
  AND ($1::text IS NULL OR type = $1::text)
  AND ($2::text IS NULL OR queue = $2::text)
ORDER BY created_at DESC, job_id DESC
LIMIT $5;

-- name: jobs_get_many
SELECT *
FROM jobs
WHERE job_id = ANY($1::uuid[]);

-- name: job_counts_runnable
-- Queue depth: jobs waiting to run (pending, or retrying after a backoff), from the
-- counters, summed over every tenant (/health is the operator's, sql/0064).
-- Through job_counts_all (sql/0068), which reads every tenant's rows.
SELECT coalesce(sum(jobs), 0)::bigint
FROM job_counts_all()
WHERE status IN ('pending', 'retrying');

-- name: worker_processes_count_live_slots
-- Job slots of the worker processes whose heartbeat is younger than their lease (for /health).
SELECT coalesce(sum(slots), 0)::bigint
FROM worker_processes
WHERE heartbeat_at > now() - make_interval(secs => lease_seconds);

-- name: job_counts_by_queue_status
-- The jobs of the tenant the transaction acts in by queue and status, for the
-- dashboard's and the queues' counts, from the counters (sql/0064): that tenant's
-- index range and the deltas not yet folded, whatever other tenants hold.
SELECT queue, status, sum(n)::bigint AS jobs
FROM (
    SELECT queue, status, n FROM job_counts WHERE tenant = ledger_tenant()
    UNION ALL
    SELECT queue, status, n FROM job_count_deltas WHERE tenant = ledger_tenant()
) AS c
GROUP BY queue, status
HAVING sum(n) <> 0
ORDER BY queue, status;

-- name: job_counts_by_tenant_queue_status
-- Every tenant's counters by queue and status (the counters' check).
SELECT tenant, queue, status, sum(n)::bigint AS jobs
FROM (
    SELECT tenant, queue, status, n FROM job_counts
    UNION ALL
    SELECT tenant, queue, status, n FROM job_count_deltas
) AS c
GROUP BY tenant, queue, status
HAVING sum(n) <> 0
ORDER BY tenant, queue, status;

-- name: jobs_count_by_tenant_queue_status
-- The same counted from the view itself (the counters' check).
SELECT tenant, queue, status, count(*) AS jobs
FROM jobs
GROUP BY tenant, queue, status
ORDER BY tenant, queue, status;

-- name: job_throughput_since
-- The jobs of the tenant the transaction acts in submitted, completed and failed for
-- good per minute since $1 (the dashboard's chart), from the counters: one row per
-- minute of the window, whatever the history and the other tenants.
SELECT minute,
       sum(submitted)::bigint AS submitted,
       sum(completed)::bigint AS completed,
       sum(failed)::bigint AS failed
FROM (
    SELECT minute, submitted, completed, failed
    FROM job_throughput
    WHERE tenant = ledger_tenant()
      AND minute >= $1
    UNION ALL
    SELECT minute, submitted, completed, failed
    FROM job_throughput_deltas
    WHERE tenant = ledger_tenant()
      AND minute >= $1
) AS t
GROUP BY minute
ORDER BY minute;

-- name: job_throughput_by_tenant_since
-- Every tenant's throughput counters per minute since $1 (the counters' check).
SELECT tenant,
       minute,
       sum(submitted)::bigint AS submitted,
       sum(completed)::bigint AS completed,
       sum(failed)::bigint AS failed
FROM (
    SELECT tenant, minute, submitted, completed, failed FROM job_throughput WHERE minute >= $1
    UNION ALL
    SELECT tenant, minute, submitted, completed, failed FROM job_throughput_deltas WHERE minute >= $1
) AS t
GROUP BY tenant, minute
ORDER BY tenant, minute;

-- name: events_throughput_by_tenant_minute
-- The same counted from the events since $1 (the counters' check); a lease that
-- expired with no attempt left is a failure too.
SELECT tenant,
       date_trunc('minute', occurred_at, 'UTC') AS minute,
       count(*) FILTER (WHERE type = 'job.submitted.v1') AS submitted,
       count(*) FILTER (WHERE type = 'job.completed.v1') AS completed,
       count(*) FILTER (
           WHERE type = 'job.failed.v1'
              OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
       ) AS failed
FROM events
WHERE occurred_at >= $1
GROUP BY 1, 2
HAVING count(*) FILTER (
    WHERE type IN ('job.submitted.v1', 'job.completed.v1', 'job.failed.v1')
       OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
) > 0
ORDER BY 1, 2;

-- name: job_counters_lock
-- The rebuild's locks, in the order every append takes them (sql/0058): no deadlock.
LOCK TABLE job_throughput_deltas, jobs, job_count_deltas, job_counts, job_throughput
IN ACCESS EXCLUSIVE MODE;

-- name: job_count_deltas_delete_all
-- The counters rebuilt as the view counts them (the owner's, under job_counters_lock).
DELETE FROM job_count_deltas;

-- name: job_counts_delete_all
DELETE FROM job_counts;

-- name: job_counts_fill
-- Each tenant's counters, counted from the view.
INSERT INTO job_counts (tenant, queue, status, n)
SELECT tenant, queue, status, count(*)
FROM jobs
GROUP BY tenant, queue, status;

-- name: job_throughput_deltas_delete_all
DELETE FROM job_throughput_deltas;

-- name: job_throughput_delete_all
DELETE FROM job_throughput;

-- name: job_throughput_fill
-- Each tenant's throughput since $1, counted from the events.
INSERT INTO job_throughput (tenant, minute, submitted, completed, failed)
SELECT tenant,
       date_trunc('minute', occurred_at, 'UTC'),
       count(*) FILTER (WHERE type = 'job.submitted.v1'),
       count(*) FILTER (WHERE type = 'job.completed.v1'),
       count(*) FILTER (
           WHERE type = 'job.failed.v1'
              OR (type = 'job.lease_expired.v1' AND data -> 'next_attempt_at' = 'null'::jsonb)
       )
FROM events
WHERE occurred_at >= $1
GROUP BY 1, 2;

-- name: feed_gate_open
-- The live feed has readers in this process: appends notify `ledger_feed` while any
-- session holds this lock in share mode (sql/0055). Held by the listener's session.
SELECT pg_advisory_lock_shared(7164857355);

-- name: feed_gate_opened_at
-- After feed_gate_open, in a statement of its own: a new transaction id, larger than
-- that of every transaction that may have skipped the NOTIFY before the lock was taken
-- (ids are handed out in order; a snapshot's xmax is not enough: a transaction can
-- hold an id at or above it while running).
SELECT pg_current_xact_id()::text::bigint;

-- name: feed_gate_close
SELECT pg_advisory_unlock_shared(7164857355);

-- name: queues_all
-- Every queue with settings (sql/0059) in the tenant the transaction acts in (sql/0065):
-- a handful of rows, one per configured queue.
SELECT *
FROM queues
WHERE tenant = ledger_tenant()
ORDER BY name;

-- name: job_counts_of_queue
-- One queue's jobs by status in the tenant the transaction acts in, from the counters
-- (sql/0064): its folded row per status and the deltas not yet folded (a few hundred
-- rows at most), whatever the history.
SELECT status, sum(n)::bigint AS jobs
FROM (
    SELECT status, n FROM job_counts WHERE tenant = ledger_tenant() AND queue = $1
    UNION ALL
    SELECT status, n FROM job_count_deltas WHERE tenant = ledger_tenant() AND queue = $1
) AS c
GROUP BY status
HAVING sum(n) <> 0;

-- name: queues_limits_now
-- Each configured queue's limits beside its runnable (pending, retrying) and running
-- jobs from the counters and, when rate-limited, its tokens now (sql/0061): what the
-- /metrics scrape needs to tell which limit holds a queue's jobs back. A few rows per
-- configured queue, whatever the size of the ledger. Every tenant's queues (the scrape
-- names no tenant): a name configured in two tenants is two rows (sql/0065), each beside
-- its own tenant's counts (sql/0064).
-- Through queues_limits_all (sql/0068): the application sees one tenant's rows at a time.
SELECT tenant, name, paused, concurrency, rate_limit, runnable, running, tokens
FROM queues_limits_all()
ORDER BY name, tenant;

-- name: tenants_at_max_running
-- Every tenant with a max_running (sql/0069, enforced by the claim since 0070) beside
-- its running and runnable jobs from the counters, through the cross-tenant functions
-- (sql/0068): what /metrics tells of tenants held at their limit. A few rows per
-- configured tenant, whatever the size of the ledger.
SELECT t.tenant, t.max_running,
       coalesce(sum(c.jobs) FILTER (WHERE c.status = 'processing'), 0)::bigint AS running,
       coalesce(sum(c.jobs) FILTER (WHERE c.status IN ('pending', 'retrying')), 0)::bigint
           AS runnable
FROM tenants_all() AS t
LEFT JOIN job_counts_all() AS c ON c.tenant = t.tenant
WHERE t.max_running IS NOT NULL
GROUP BY t.tenant, t.max_running
ORDER BY t.tenant;
