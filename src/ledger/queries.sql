-- name: events_append
-- Many events, at most one per job per statement, through the database's own append
-- (sql/0056): it decides each event's position, time, transaction, chain link and
-- hash. A version with no predecessor gets a NULL prev_hash (refused: NOT NULL), a
-- taken version the unique key: both are conflicts. `workflow_decided`: the dependency
-- decisions the append's workflow trigger appended of its own (sql/0082), as a JSON
-- object by decision; NULL when it decided none.
SELECT position, job_id, version, txid, occurred_at, prev_hash, hash, tenant,
       nullif(current_setting('ledger.workflow_decided', true), '') AS workflow_decided
FROM events_append($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::jsonb[]);

-- name: events_list_for_job
-- One job's history, oldest first: a job of the tenant the transaction names (naming none,
-- the application sees none, sql/0068; the owner, who bypasses row security, any).
SELECT position, job_id, version, type, data, actor, occurred_at,
       txid::text::bigint AS txid, prev_hash, hash, tenant
FROM events
WHERE job_id = $1
  AND tenant = coalesce(ledger_tenant_named(), tenant)
ORDER BY version;

-- name: events_list_for_jobs
-- The histories of jobs named together, each oldest first.
SELECT position, job_id, version, type, data, actor, occurred_at,
       txid::text::bigint AS txid, prev_hash, hash, tenant
FROM events
WHERE job_id = ANY($1::uuid[])
  AND tenant = coalesce(ledger_tenant_named(), tenant)
ORDER BY job_id, version;

-- name: jobs_find_by_idempotency_keys
-- The jobs a submitter created under any of these idempotency keys in the tenant the
-- transaction acts in (the view's unique index on (tenant, submitted_by,
-- idempotency_key), which the append itself checks).
SELECT idempotency_key, job_id
FROM jobs
WHERE tenant = ledger_tenant()
  AND submitted_by = $1
  AND idempotency_key = ANY($2::text[]);

-- name: transaction_isolation
-- The isolation level of the transaction the caller's connection is in ('read committed',
-- 'repeatable read', 'serializable').
SELECT current_setting('transaction_isolation');

-- name: jobs_holding_unique_keys
-- The jobs of the tenant the transaction acts in that hold any of these unique keys now:
-- those in one of their unique states (the view's partial unique index, sql/0076).
SELECT unique_key, job_id
FROM jobs
WHERE tenant = ledger_tenant()
  AND unique_key = ANY($1::text[])
  AND status = ANY(unique_states);

-- name: schema_reset
-- `ledger db-reset` on a server of one's own: every table, view and function the
-- migrations made (and the migrations table) is gone; the next migrate starts afresh.
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;

-- name: queues_get
-- A queue's settings as its events left them (sql/0059), in the tenant the transaction
-- acts in (sql/0065); no row: never configured there.
SELECT *
FROM queues
WHERE tenant = ledger_tenant()
  AND name = $1;

-- name: tenant_current
-- The tenant this transaction's appends act in (`default` when it names none).
SELECT ledger_tenant();

-- name: tenant_act_in
-- The tenant this transaction acts in, until it ends (sql/0063: a job's first event
-- takes it; a later one is appended only to a job of it).
SELECT set_config('ledger.tenant', $1, true);

-- name: tenants_get
-- The settings of the tenant the transaction acts in (sql/0069); no row: never
-- configured. Row-level security shows the app role only that tenant's row anyway.
SELECT *
FROM tenants
WHERE tenant = ledger_tenant();

-- name: tenants_all
-- Every tenant's settings, by tenant id: the operator's list, through the owner's
-- function (the app role sees only its own tenant's row of `tenants`).
SELECT *
FROM tenants_all();

-- name: tenant_named
-- The tenant this transaction acts in, named until it ends: `default` when it named
-- none (a transaction naming no tenant reads no tenant's rows, sql/0068).
SELECT set_config('ledger.tenant', ledger_tenant(), true);

-- name: jobs_bulk_select
-- The jobs a bulk retry or cancel selects (ledger.bulk), oldest first: an index range on
-- jobs_status_created_idx (tenant, status) read backwards, the other filters checked on
-- its rows, stopping at the limit. A NULL filter matches every job.
SELECT job_id
FROM jobs
WHERE tenant = ledger_tenant()
  AND status = $1::text
  AND ($2::text IS NULL OR type = $2::text)
  AND ($3::text IS NULL OR queue = $3::text)
  AND ($4::text IS NULL OR strpos(error, $4::text) > 0)
  AND ($5::timestamptz IS NULL OR completed_at < $5::timestamptz)
  AND ($6::timestamptz IS NULL OR completed_at > $6::timestamptz)
ORDER BY created_at, job_id
LIMIT $7;

-- name: events_of_bulk_request
-- The events a bulk request (its id) appended in the tenant the transaction acts in,
-- oldest first: the partial index events_bulk_request_idx (sql/0072).
SELECT job_id, type
FROM events
WHERE tenant = ledger_tenant()
  AND data ? 'bulk_request_id'
  AND data->>'bulk_request_id' = $1::text
ORDER BY position;

-- name: bulk_request_lock
-- One bulk request id of a tenant carried out at a time, until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended(ledger_tenant() || '/bulk/' || $1::text, 0));

-- name: schedules_get
-- A schedule (sql/0073) of the tenant the transaction acts in, deleted ones too.
SELECT *
FROM schedules
WHERE tenant = ledger_tenant()
  AND schedule_id = $1;

-- name: schedules_list
-- The tenant's live schedules, by id.
SELECT *
FROM schedules
WHERE tenant = ledger_tenant()
  AND NOT deleted
ORDER BY schedule_id
LIMIT $1;

-- name: schedule_slots_between
-- A schedule's recorded slots that touch [$2, $3] (a skipped run that began earlier
-- too), with the status of each fired slot's job.
SELECT s.slot, s.outcome, s.reason, s.until, s.job_id, j.status
FROM schedule_slots AS s
LEFT JOIN jobs AS j ON j.job_id = s.job_id AND j.tenant = s.tenant
WHERE s.tenant = ledger_tenant()
  AND s.schedule_id = $1
  AND s.slot <= $3
  AND coalesce(s.until, s.slot + interval '1 microsecond') > $2
ORDER BY s.slot
LIMIT 2000;

-- name: schedule_slots_recent
-- A schedule's last recorded slot outcomes, newest first, with each fired job's status.
SELECT s.slot, s.outcome, s.reason, s.until, s.job_id, j.status
FROM schedule_slots AS s
LEFT JOIN jobs AS j ON j.job_id = s.job_id AND j.tenant = s.tenant
WHERE s.tenant = ledger_tenant()
  AND s.schedule_id = $1
ORDER BY s.slot DESC
LIMIT $2;

-- name: schedule_job_status
-- The status of a schedule's previous job (its overlap policy decides against it).
SELECT status
FROM jobs
WHERE job_id = $1
  AND tenant = ledger_tenant();

-- name: schedules_due
-- Every tenant's schedules due at $1 (sql/0073, SECURITY DEFINER), earliest first.
SELECT tenant, schedule_id, next_slot
FROM schedules_due($1, $2);

-- name: schedules_next_slot
-- The earliest next slot of every tenant's live schedules (NULL: none).
SELECT schedules_next_slot();

-- name: workflow_exists
-- Whether the tenant the transaction acts in has a workflow of this id.
SELECT EXISTS (SELECT FROM workflows WHERE workflow_id = $1);

-- name: workflow_jobs_list
-- A workflow's jobs as they are now, in submission order, each with the names of the
-- jobs it depends on (sql/0077; the tenant's rows only).
SELECT w.name, w.job_id, w.on_upstream_failure, j.status, j.result::text AS result, j.error,
       coalesce((
           SELECT array_agg(u.name ORDER BY u.position)
           FROM job_dependencies AS d
           JOIN workflow_jobs AS u ON u.job_id = d.depends_on
           WHERE d.job_id = w.job_id
       ), '{}') AS depends_on
FROM workflow_jobs AS w
JOIN jobs AS j ON j.job_id = w.job_id
WHERE w.workflow_id = $1
ORDER BY w.position;

-- name: workflows_list
-- A page of the tenant's workflows, newest first, each with its status from its jobs'
-- (running while any may still run; else failed, cancelled or completed), `$1` a status
-- to keep or NULL for all.
SELECT f.workflow_id, f.submitted_by, f.submitted_at, f.jobs, s.status
FROM workflows AS f
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN bool_or(j.status IN ('blocked', 'pending', 'processing', 'retrying')) THEN 'running'
        WHEN bool_or(j.status = 'failed') THEN 'failed'
        WHEN bool_or(j.status = 'cancelled') THEN 'cancelled'
        ELSE 'completed'
    END AS status
    FROM workflow_jobs AS w
    JOIN jobs AS j ON j.job_id = w.job_id
    WHERE w.tenant = f.tenant AND w.workflow_id = f.workflow_id
) AS s
WHERE $1::text IS NULL OR s.status = $1
ORDER BY f.submitted_at DESC, f.workflow_id DESC
LIMIT $2;

-- name: webhook_endpoints_get
-- An endpoint of the tenant the transaction acts in, unless deleted (sql/0080).
SELECT *
FROM webhook_endpoints
WHERE endpoint_id = $1
  AND NOT deleted;

-- name: webhook_endpoints_list
-- The tenant's endpoints, oldest first.
SELECT *
FROM webhook_endpoints
WHERE NOT deleted
ORDER BY created_at, endpoint_id;

-- name: webhook_secrets_insert
-- A signing secret of an endpoint (never in an event; the events name its id).
INSERT INTO webhook_secrets (endpoint_id, tenant, secret_id, secret, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: webhook_secrets_retire
-- At a rotation: the current secret ($2) signs until $3, the ones before it stop now.
UPDATE webhook_secrets
SET expires_at = CASE WHEN secret_id = $2 THEN $3 ELSE least(expires_at, now()) END
WHERE endpoint_id = $1
  AND (expires_at IS NULL OR expires_at > now());

-- name: webhook_deliveries_get
-- A delivery of the tenant.
SELECT *
FROM webhook_deliveries
WHERE delivery_id = $1;

-- name: webhook_deliveries_latest_test
-- The test delivery the endpoint's latest event created.
SELECT d.*
FROM webhook_deliveries AS d
WHERE d.endpoint_id = $1
  AND d.event_type = 'webhook.test'
ORDER BY d.event_position DESC
LIMIT 1;

-- name: webhook_deliveries_of_endpoint
-- An endpoint's deliveries, newest first.
SELECT *
FROM webhook_deliveries
WHERE tenant = ledger_tenant()
  AND endpoint_id = $1
ORDER BY created_at DESC, delivery_id
LIMIT $2;

-- name: webhook_deliveries_of_job
-- The deliveries reporting a job's events, oldest first.
SELECT *
FROM webhook_deliveries
WHERE job_id = $1
ORDER BY event_position, created_at;

-- name: webhook_attempts_of_delivery
-- A delivery's attempts as their events recorded them, oldest first (the events'
-- (job_id, version) index: a delivery is a stream of its own).
SELECT type, job_id, version, actor, occurred_at, data
FROM events
WHERE job_id = $1
  AND type = 'webhook.delivery_attempted.v1'
ORDER BY version;

-- name: webhook_deliveries_to_recover
-- An endpoint's deliveries created in [$2, $3) that are not pending, to send again.
SELECT *
FROM webhook_deliveries
WHERE tenant = ledger_tenant()
  AND endpoint_id = $1
  AND created_at >= $2
  AND ($3::timestamptz IS NULL OR created_at < $3)
  AND status <> 'pending'
ORDER BY created_at;

-- name: webhook_delivery_attempts
-- A delivery's recorded attempts and redeliveries, in order.
SELECT type, version, actor, occurred_at, data
FROM events
WHERE job_id = $1
ORDER BY version;
