-- name: worker_processes_register
-- A worker process announces itself (or comes back after a restart with the same id).
INSERT INTO worker_processes (worker_id, host, pid, slots, lease_seconds)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (worker_id) DO UPDATE
SET host = excluded.host,
    pid = excluded.pid,
    slots = excluded.slots,
    lease_seconds = excluded.lease_seconds,
    heartbeat_at = now();

-- name: worker_processes_heartbeat
-- The process is alive: its row is fresh again.
UPDATE worker_processes
SET heartbeat_at = now()
WHERE worker_id = $1;

-- name: worker_processes_unregister
DELETE FROM worker_processes
WHERE worker_id = $1;

-- name: worker_processes_prune
-- Forget processes that have been silent for a long time (they died without a word).
DELETE FROM worker_processes
WHERE heartbeat_at < now() - make_interval(secs => $1);

-- name: job_leases_renew
-- Push the leases of the attempts this worker still runs forward (the heartbeat). The
-- claim's lease is in its event (and the jobs row); an attempt's first renewal makes
-- its row here, so a claim writes nothing to this table.
INSERT INTO job_leases (job_id, worker_id, attempt, lease_until)
SELECT j.job_id, j.worker_id, j.attempt, now() + make_interval(secs => $2)
FROM jobs AS j
WHERE j.job_id = ANY($3::uuid[])
  AND j.worker_id = $1
  AND j.status = 'processing'
ON CONFLICT (job_id) DO UPDATE
SET worker_id = excluded.worker_id,
    attempt = excluded.attempt,
    lease_until = excluded.lease_until;

-- name: job_leases_delete
-- The attempt ended: its lease goes with it.
DELETE FROM job_leases
WHERE job_id = $1
  AND worker_id = $2
  AND attempt = $3;

-- name: job_leases_prune
-- Leases left behind by attempts that ended some other way (expired, cancelled).
DELETE FROM job_leases AS l
WHERE NOT EXISTS (
    SELECT
    FROM jobs AS j
    WHERE j.job_id = l.job_id
      AND j.status = 'processing'
      AND j.worker_id = l.worker_id
      AND j.attempt = l.attempt
);

-- name: jobs_lease_expired
-- Running attempts whose lease ran out: neither the claim's lease nor a renewal
-- covers now (greatest ignores a missing renewal).
SELECT j.*
FROM jobs AS j
LEFT JOIN job_leases AS l
    ON l.job_id = j.job_id
   AND l.worker_id = j.worker_id
   AND l.attempt = j.attempt
WHERE j.status = 'processing'
  AND greatest(j.lease_until, l.lease_until) < now()
ORDER BY j.lease_until
LIMIT $1;

-- name: jobs_claim
-- Runnable jobs of the types this worker knows, due now, in claim order, within every
-- queue's settings (sql/0059: paused queues skipped, limits enforced under each limited
-- queue's lock); rows other claimers hold are skipped, so concurrent claimers never
-- take the same job.
-- With each job, its queue's settings version (NULL: a queue without settings), the
-- queue being the job's tenant's of its name (sql/0065).
SELECT j.*, q.version AS queue_version
FROM jobs_claim_next($1, $2::text[]) AS j
LEFT JOIN queues AS q
    ON q.tenant = j.tenant
   AND q.name = j.queue;

-- name: jobs_next_due
-- Seconds until the earliest runnable job becomes due, by the database's clock (the
-- retry clock); zero or less when one is due already (it became due after the claim).
-- $2: seconds since the claim round that just ran began. Due jobs a queue's settings
-- held back in it set no alarm (sql/0059): room freed, or a queue event, notifies.
SELECT jobs_next_due($1::text[], $2::double precision);

-- name: jobs_running_lost
-- Of the attempts this worker runs, those it no longer holds (cancelled, expired, ...).
SELECT r.job_id
FROM unnest($1::uuid[], $2::integer[]) AS r (job_id, attempt)
LEFT JOIN jobs AS j
    ON j.job_id = r.job_id
WHERE j.job_id IS NULL
   OR j.status <> 'processing'
   OR j.worker_id IS DISTINCT FROM $3
   OR j.attempt <> r.attempt;

-- name: worker_processes_slot_usage
-- Live worker processes, their slots, and how many of those slots run a job now (metrics).
WITH live AS (
    SELECT worker_id, slots
    FROM worker_processes
    WHERE heartbeat_at > now() - make_interval(secs => lease_seconds)
)
SELECT (SELECT count(*) FROM live) AS processes,
       (SELECT coalesce(sum(slots), 0) FROM live)::bigint AS slots,
       (SELECT count(*)
        FROM jobs AS j
        JOIN live AS l ON l.worker_id = j.worker_id
        WHERE j.status = 'processing') AS busy;

-- name: job_leases_delete_many
-- Those attempts ended: their leases go with them.
DELETE FROM job_leases AS l
USING unnest($2::uuid[], $3::integer[]) AS e (job_id, attempt)
WHERE l.job_id = e.job_id
  AND l.attempt = e.attempt
  AND l.worker_id = $1;
