-- job.replayed.v1: a job records that it was submitted again as a new job; the view's fold learns it (state unchanged but version and updated_at).
-- evolve(state, event) -> state. Mirrors ledger.lifecycle.evolve in Python; a property test holds the two equal.
CREATE OR REPLACE FUNCTION job_view_evolve(s jobs, e events) RETURNS jobs
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
    ELSIF e.type = 'job.replayed.v1' THEN
        -- History only: the job was submitted again as d->>'replayed_as'; its state is unchanged.
        NULL;
    ELSE
        RAISE EXCEPTION 'unknown event type % (job %)', e.type, e.job_id;
    END IF;
    s.version := e.version;
    s.updated_at := e.occurred_at;
    RETURN s;
END;
$$;
