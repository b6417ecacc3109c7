-- name: settings_durable
-- The server settings that make the figures durable, printed with the table.
SELECT name, setting
FROM pg_settings
WHERE name = ANY($1::text[]);

-- name: baseline_table_create
-- The baseline's table: what a queue that keeps no history writes per job, at most.
CREATE TABLE IF NOT EXISTS pgbench_baseline (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    text NOT NULL
);

-- name: database_exists
SELECT 1
FROM pg_database
WHERE datname = $1;

-- name: events_count
SELECT count(*)
FROM events;

-- name: jobs_count_by_status
SELECT status, count(*)
FROM jobs
GROUP BY status;

-- name: events_processing_window
-- First claim to last completion, as recorded in the ledger (the events' own times).
SELECT min(occurred_at) FILTER (WHERE type = 'job.claimed.v1') AS first_claim,
       max(occurred_at) FILTER (WHERE type = 'job.completed.v1') AS last_completion,
       count(*) FILTER (WHERE type = 'job.completed.v1') AS completed
FROM events;

-- name: jobs_completed_count
SELECT count(*)
FROM jobs
WHERE status = 'completed';

-- name: worker_processes_count
SELECT count(*)
FROM worker_processes;

-- name: events_per_job_check
-- Every drained job has exactly its submitted, claimed and completed events (a queue's
-- settings events are a stream of their own, not a job).
SELECT count(*) FILTER (WHERE n <> 3) AS wrong,
       count(*) AS jobs
FROM (
    SELECT job_id, count(*) AS n
    FROM events
    WHERE type LIKE 'job.%'
    GROUP BY job_id
) AS per_job;

-- name: pg_stat_statements_enable
-- Per-statement timing for --pg-stats (loaded at the restart that follows), trigger
-- statements included.
ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';

-- name: pg_stat_statements_track_all
ALTER SYSTEM SET pg_stat_statements.track = 'all';

-- name: pg_stat_statements_create
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- name: pg_stat_statements_reset
SELECT pg_stat_statements_reset();

-- name: pg_stat_statements_top
-- The data statements that took the most execution time since the last reset (not
-- the bench's own database set-up, whose statements may carry passwords).
SELECT calls, total_exec_time, rows, toplevel,
       left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
FROM pg_stat_statements
WHERE query ~* '^\s*(--[^\n]*\n\s*)*(SELECT|INSERT|UPDATE|DELETE|WITH)\M'
  AND query !~* 'pg_stat_statements_reset'
ORDER BY total_exec_time DESC
LIMIT $1;

-- name: feed_gate_holders
-- Sessions holding the live feed's gate (advisory lock 7164857355 in share mode,
-- sql/0055): while one does, appends NOTIFY ledger_feed.
SELECT count(*)
FROM pg_locks
WHERE locktype = 'advisory'
  AND mode = 'ShareLock'
  AND granted
  AND classid = 1
  AND objid = 2869890059
  AND objsubid = 1;

-- name: scale_submit
-- The scale bench's ledger, built fast: jobs $1 .. $2 - 1 submitted in one statement as
-- the owner (ids derived from the number, so the later steps find them), one second
-- apart in the past. The hashes are placeholders (the chains are not what is measured);
-- the append's own triggers project the view and the counters as they would.
INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
SELECT md5('scale' || n)::uuid, 1, 'job.submitted.v1', 'bench',
       $3::timestamptz + make_interval(secs => n),
       jsonb_build_object(
           'job_type', 'noop', 'queue', CASE WHEN n % 4 = 0 THEN 'mail' ELSE 'default' END,
           'priority', 'normal', 'payload', jsonb_build_object('n', n),
           'max_attempts', 3, 'timeout_seconds', 300.0, 'backoff_base_seconds', 1.0,
           'backoff_cap_seconds', 300.0,
           'run_at', to_jsonb($3::timestamptz + make_interval(secs => n)),
           'idempotency_key', NULL, 'replay_of', NULL
       ),
       '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
       sha256(int8send(n))
FROM generate_series($1::bigint, $2::bigint - 1) AS n;

-- name: scale_claim
-- Every other job of $1 .. $2 - 1 claimed (the even ones).
INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
SELECT md5('scale' || n)::uuid, 2, 'job.claimed.v1', 'bench-worker',
       $3::timestamptz + make_interval(secs => n + 1),
       jsonb_build_object(
           'worker_id', 'bench-worker', 'attempt', 1,
           'lease_until', to_jsonb($3::timestamptz + make_interval(secs => n + 301))
       ),
       sha256(int8send(n)), sha256(int8send(-n))
FROM generate_series($1::bigint, $2::bigint - 1) AS n
WHERE n % 2 = 0;

-- name: scale_complete
-- The claimed jobs of $1 .. $2 - 1 completed.
INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
SELECT md5('scale' || n)::uuid, 3, 'job.completed.v1', 'bench-worker',
       $3::timestamptz + make_interval(secs => n + 2),
       jsonb_build_object('result', n),
       sha256(int8send(-n)), sha256(int8send(n) || int8send(n))
FROM generate_series($1::bigint, $2::bigint - 1) AS n
WHERE n % 2 = 0;

-- name: scale_vacuum
VACUUM ANALYZE;

-- name: size_relations
-- Bytes on disk of each table the ledger writes per job: heap (with its TOAST), indexes.
SELECT c.relname AS name,
       pg_table_size(c.oid) AS heap,
       pg_indexes_size(c.oid) AS indexes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r'
ORDER BY pg_total_relation_size(c.oid) DESC;

-- name: size_payload
-- The payload as stored twice: in the submitted event's data and in the jobs row.
SELECT (SELECT avg(pg_column_size(payload)) FROM jobs)::float8 AS jobs_payload,
       (SELECT avg(pg_column_size(j.*)) FROM jobs j)::float8 AS jobs_row,
       (SELECT avg(pg_column_size(data -> 'payload')) FROM events
        WHERE type = 'job.submitted.v1')::float8 AS event_payload,
       (SELECT avg(pg_column_size(e.*)) FROM events e)::float8 AS event_row;

-- name: jobs_completed_in_tenant
-- A tenant's completed jobs (bench.tenants; as the owner, who sees every tenant's rows).
SELECT count(*)
FROM jobs
WHERE tenant = $1
  AND status = 'completed';

-- name: tenant_claim_delays_ms
-- Each of a tenant's measured jobs' submitted → first claimed, both the database's
-- times, in ms (bench.tenants; as the owner; the warm-up's jobs have a negative n).
SELECT extract(epoch FROM c.occurred_at - s.occurred_at) * 1000 AS ms
FROM events AS s
JOIN events AS c
    ON c.job_id = s.job_id
   AND c.version = 2
JOIN jobs AS j
    ON j.job_id = s.job_id
WHERE s.tenant = $1
  AND s.version = 1
  AND s.type = 'job.submitted.v1'
  AND c.type = 'job.claimed.v1'
  AND (j.payload->>'n')::integer >= 0;

-- name: schedule_slots_fired
-- The bench schedule's fired slots: each slot, when its slot_fired event (and its job)
-- was appended (the database's time), and its job.
SELECT slot, recorded_at, job_id
FROM schedule_slots
WHERE schedule_id = $1
  AND outcome = 'fired'
ORDER BY slot;

-- name: schedule_slots_not_fired
SELECT count(*)
FROM schedule_slots
WHERE schedule_id = $1
  AND outcome <> 'fired';

-- name: schedule_last_slot
SELECT last_slot
FROM schedules
WHERE schedule_id = $1;

-- name: workflow_hand_offs
-- Each unblocked workflow job's hand-off, in milliseconds: from the event that ended its
-- last dependency (the hash its job.unblocked.v1 cites) to its next claim.
SELECT extract(epoch FROM c.occurred_at - p.occurred_at) * 1000 AS ms
FROM events AS u
JOIN events AS p
    ON p.job_id = (u.data->>'upstream_job_id')::uuid
   AND p.hash = decode(u.data->>'cause', 'hex')
JOIN events AS c
    ON c.job_id = u.job_id
   AND c.version = u.version + 1
   AND c.type = 'job.claimed.v1'
WHERE u.type = 'job.unblocked.v1';
