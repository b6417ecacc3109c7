-- An Idempotency-Key is unique per submitter, so a repeated submission finds the first job and two racing ones cannot both create one.
CREATE UNIQUE INDEX jobs_idempotency_key_idx
    ON jobs (submitted_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
