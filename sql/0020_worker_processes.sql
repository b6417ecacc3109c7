-- The worker pool's operational state, kept beside the ledger and never in it: live worker processes (heartbeats) and the leases they renew on running jobs.
-- Renewing a lease writes here, not an event, so history is not rewritten every few
-- seconds; lease expiry is decided from these rows and recorded as job.lease_expired.v1.
CREATE TABLE worker_processes (
    worker_id     text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    slots         integer NOT NULL CHECK (slots >= 0),
    lease_seconds double precision NOT NULL CHECK (lease_seconds > 0),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX worker_processes_heartbeat_idx ON worker_processes (heartbeat_at);

-- One row per running attempt: the claim writes it, heartbeats push lease_until
-- forward, the attempt's outcome deletes it.
CREATE TABLE job_leases (
    job_id      uuid PRIMARY KEY,
    worker_id   text NOT NULL,
    attempt     integer NOT NULL,
    lease_until timestamptz NOT NULL
);

CREATE INDEX job_leases_worker_idx ON job_leases (worker_id);

-- Claim order across all queues: due time, then priority, then submission order.
CREATE INDEX jobs_due_idx ON jobs (run_at, priority, created_at)
    WHERE status IN ('pending', 'retrying');
