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
SELECT job_leases_renew($1, $2::double precision, $3::uuid[]);

-- name: job_leases_delete
-- The attempt ended: its lease goes with it.
SELECT job_leases_end($2, ARRAY[$1::uuid], ARRAY[$3::integer]);

-- name: job_leases_prune
-- Leases left behind by attempts that ended some other way (expired, cancelled).
SELECT job_leases_prune();

-- name: jobs_lease_expired
-- Running attempts whose lease ran out: neither the claim's lease nor a renewal
-- covers now (greatest ignores a missing renewal).
SELECT * FROM jobs_lease_expired($1);

-- name: jobs_claim_recorded
-- Runnable jobs of the types this worker knows ($4), due now, in claim order, within
-- every queue's settings (sql/0059) and shared fairly across tenants (sql/0070), at
-- most $3, each with its job.claimed.v1 appended by actor $1 with a lease of $2
-- seconds, in this one statement (sql/0084); rows other claimers hold are skipped. $5:
-- the size of the worker's reserve when claiming into it (sql/0079: jobs of quiet
-- tenants only), else NULL; $6: with $5, the one tenant to claim for (the doorbell
-- named it), else NULL; $7 and $8: with $6, the queue and concurrency key to claim
-- for (sql/0087: the doorbell named the key), else NULL. Each job's row before its
-- claim, its queue's and tenant's settings versions (NULL: none), and the claim as
-- recorded.
SELECT (c.job).*, c.queue_version, c.tenant_version, c.position, c.txid, c.occurred_at,
       c.prev_hash, c.hash, c.lease_until
FROM jobs_claim_recorded($1, $2::double precision, $3, $4::text[], $5, $6, $7, $8) AS c;

-- name: jobs_next_due
-- Seconds until the earliest runnable job becomes due, by the database's clock (the
-- retry clock); zero or less when one is due already (it became due after the claim).
-- $2: seconds since the claim round that just ran began. Due jobs a queue's settings
-- held back in it set no alarm (sql/0059): room freed, or a queue event, notifies.
SELECT jobs_next_due($1::text[], $2::double precision);

-- name: jobs_running_lost
-- Of the attempts this worker runs, those it no longer holds (cancelled, expired, ...).
SELECT lost AS job_id
FROM jobs_running_lost($3, $1::uuid[], $2::integer[]) AS lost;

-- name: worker_processes_slot_usage
-- Live worker processes, their slots, and how many of those slots run a job now (metrics).
SELECT * FROM worker_slots_usage();

-- name: job_leases_delete_many
-- Those attempts ended: their leases go with them.
SELECT job_leases_end($1, $2::uuid[], $3::integer[]);

-- name: jobs_held_by
-- Of these jobs, those the worker holds now, as they are (sql/0068: any tenant's).
SELECT * FROM jobs_held_by($1, $2::uuid[]);

-- name: queue_retry_policy
-- The retry policy of a tenant's queue (NULL: none), any tenant's (sql/0079).
SELECT queue_retry_policy($1, $2);

-- name: workflow_upstream
-- A claimed workflow job's dependencies' results by name, as its latest unblocking
-- recorded them (sql/0077; workers act in no tenant), as JSON text; NULL: none.
SELECT workflow_upstream($1)::text;

-- name: webhook_deliveries_claim
-- Due webhook deliveries of every tenant, leased to this sender (sql/0080).
SELECT *
FROM webhook_deliveries_claim($1, $2, $3);

-- name: webhook_deliveries_next_due
-- Seconds until the next webhook delivery is due (NULL: none pending).
SELECT webhook_deliveries_next_due();

-- name: webhook_endpoint_version
-- An endpoint's version and whether it is disabled, in the tenant the transaction acts in.
SELECT version, disabled
FROM webhook_endpoints
WHERE endpoint_id = $1;
