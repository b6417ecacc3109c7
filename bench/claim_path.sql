-- One job's life on the idle path, statement by statement (python -m bench.claim_path):
-- a submission; the claim as 3b48b88's workers made it (BEGIN, jobs_claim, the append,
-- COMMIT) on one job, then the claim as a statement of its own (jobs_claim_recorded,
-- sql/0084) on another; each job's completion.
SELECT 1 FROM events_append(ARRAY[gen_random_uuid()], '{1}', '{job.submitted.v1}', '{b}', ARRAY['{"queue": "default", "run_at": "2026-01-01T00:00:00Z", "payload": {"n": 1}, "job_type": "bench.noop", "priority": "normal", "replay_of": null, "max_attempts": 1, "idempotency_key": null, "timeout_seconds": 300.0, "backoff_cap_seconds": 300.0, "backoff_base_seconds": 1.0}'::jsonb]);
BEGIN;
SELECT (c.job).job_id AS jid FROM jobs_claim(1, '{bench.noop}') AS c \gset
SELECT 1 FROM events_append(ARRAY[:jid::uuid], '{2}', '{job.claimed.v1}', '{w1}', ARRAY['{"attempt": 1, "worker_id": "w1", "lease_until": "2099-01-01T00:00:00Z"}'::jsonb]);
COMMIT;
SELECT 1 FROM events_append(ARRAY[:jid::uuid], '{3}', '{job.completed.v1}', '{w1}', ARRAY['{"result": null}'::jsonb]);
SELECT 1 FROM events_append(ARRAY[gen_random_uuid()], '{1}', '{job.submitted.v1}', '{b}', ARRAY['{"queue": "default", "run_at": "2026-01-01T00:00:00Z", "payload": {"n": 1}, "job_type": "bench.noop", "priority": "normal", "replay_of": null, "max_attempts": 1, "idempotency_key": null, "timeout_seconds": 300.0, "backoff_cap_seconds": 300.0, "backoff_base_seconds": 1.0}'::jsonb]);
SELECT (c.job).job_id AS jid FROM jobs_claim_recorded('w1', 30, 1, '{bench.noop}', NULL, NULL) AS c \gset
SELECT 1 FROM events_append(ARRAY[:jid::uuid], '{3}', '{job.completed.v1}', '{w1}', ARRAY['{"result": null}'::jsonb]);
