-- The current-state projection of each job: a fold of its events, kept in step inside the appending transaction.
CREATE TABLE jobs (
    job_id               uuid PRIMARY KEY,
    version              integer NOT NULL,
    type                 text NOT NULL,
    queue                text NOT NULL,
    priority             smallint NOT NULL,
    status               text NOT NULL,
    payload              jsonb NOT NULL,
    result               jsonb,
    error                text,
    attempt              integer NOT NULL,
    max_attempts         integer NOT NULL,
    timeout_seconds      double precision NOT NULL,
    backoff_base_seconds double precision NOT NULL,
    backoff_cap_seconds  double precision NOT NULL,
    run_at               timestamptz,
    worker_id            text,
    lease_until          timestamptz,
    idempotency_key      text,
    replay_of            uuid,
    submitted_by         text NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    started_at           timestamptz,
    completed_at         timestamptz
);

-- Claim order: due time, then priority, then submission order, among runnable jobs.
CREATE INDEX jobs_runnable_idx ON jobs (queue, run_at, priority, created_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, job_id DESC);
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE status = 'processing';

-- evolve(state, event) -> state. Mirrors projections.current.evolve in Python;
-- a property test holds the two equal.
CREATE FUNCTION job_view_evolve(s jobs, e events) RETURNS jobs
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    d jsonb := e.data;
BEGIN
    IF e.type = 'job.submitted.v1' THEN
        IF s.job_id IS NOT NULL THEN
            RAISE EXCEPTION 'job % submitted twice', e.job_id;
        END IF;
        s.job_id := e.job_id;
        s.type := d->>'job_type';
        s.queue := d->>'queue';
        s.priority := CASE d->>'priority' WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END;
        s.status := 'pending';
        s.payload := d->'payload';
        s.result := NULL;
        s.error := NULL;
        s.attempt := 0;
        s.max_attempts := (d->>'max_attempts')::integer;
        s.timeout_seconds := (d->>'timeout_seconds')::double precision;
        s.backoff_base_seconds := (d->>'backoff_base_seconds')::double precision;
        s.backoff_cap_seconds := (d->>'backoff_cap_seconds')::double precision;
        s.run_at := (d->>'run_at')::timestamptz;
        s.idempotency_key := d->>'idempotency_key';
        s.replay_of := (d->>'replay_of')::uuid;
        s.submitted_by := e.actor;
        s.created_at := e.occurred_at;
    ELSIF s.job_id IS NULL THEN
        RAISE EXCEPTION 'event % for job % before its submission', e.type, e.job_id;
    ELSIF e.type = 'job.claimed.v1' THEN
        s.status := 'processing';
        s.attempt := (d->>'attempt')::integer;
        s.worker_id := d->>'worker_id';
        s.lease_until := (d->>'lease_until')::timestamptz;
        s.started_at := e.occurred_at;
        s.run_at := NULL;
    ELSIF e.type = 'job.completed.v1' THEN
        s.status := 'completed';
        s.result := d->'result';
        s.error := NULL;
        s.completed_at := e.occurred_at;
        s.worker_id := NULL;
        s.lease_until := NULL;
    ELSIF e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1') THEN
        s.error := d->>'error';
        s.worker_id := NULL;
        s.lease_until := NULL;
        IF d->>'next_attempt_at' IS NOT NULL THEN
            s.status := 'retrying';
            s.run_at := (d->>'next_attempt_at')::timestamptz;
        ELSE
            s.status := 'failed';
            s.run_at := NULL;
            s.completed_at := e.occurred_at;
        END IF;
    ELSIF e.type = 'job.cancelled.v1' THEN
        s.status := 'cancelled';
        s.run_at := NULL;
        s.worker_id := NULL;
        s.lease_until := NULL;
        s.completed_at := e.occurred_at;
    ELSIF e.type = 'job.released.v1' THEN
        s.status := 'pending';
        s.attempt := s.attempt - 1;
        s.run_at := e.occurred_at;
        s.worker_id := NULL;
        s.lease_until := NULL;
    ELSIF e.type = 'job.retried.v1' THEN
        s.status := 'pending';
        s.attempt := 0;
        s.max_attempts := coalesce((d->>'max_attempts')::integer, s.max_attempts);
        s.result := NULL;
        s.error := NULL;
        s.run_at := e.occurred_at;
        s.started_at := NULL;
        s.completed_at := NULL;
    ELSE
        RAISE EXCEPTION 'unknown event type % (job %)', e.type, e.job_id;
    END IF;
    s.version := e.version;
    s.updated_at := e.occurred_at;
    RETURN s;
END;
$$;

-- fold(events ORDER BY version) -> state: rebuilds and time travel.
CREATE AGGREGATE job_view_fold(events) (
    SFUNC = job_view_evolve,
    STYPE = jobs
);

-- Apply one appended event to the live view (row locked by the caller's version check).
CREATE FUNCTION job_view_apply(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s jobs;
BEGIN
    SELECT * INTO s FROM jobs WHERE job_id = e.job_id FOR UPDATE;
    IF NOT FOUND THEN
        s := job_view_evolve(NULL, e);
        INSERT INTO jobs SELECT s.*;
    ELSE
        s := job_view_evolve(s, e);
        UPDATE jobs SET
            version = s.version, type = s.type, queue = s.queue, priority = s.priority,
            status = s.status, payload = s.payload, result = s.result, error = s.error,
            attempt = s.attempt, max_attempts = s.max_attempts,
            timeout_seconds = s.timeout_seconds,
            backoff_base_seconds = s.backoff_base_seconds,
            backoff_cap_seconds = s.backoff_cap_seconds,
            run_at = s.run_at, worker_id = s.worker_id, lease_until = s.lease_until,
            idempotency_key = s.idempotency_key, replay_of = s.replay_of,
            submitted_by = s.submitted_by, created_at = s.created_at,
            updated_at = s.updated_at, started_at = s.started_at,
            completed_at = s.completed_at
        WHERE job_id = e.job_id;
    END IF;
END;
$$;
