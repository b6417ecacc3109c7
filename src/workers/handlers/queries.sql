-- name: jobs_export
-- Jobs of one tenant ($7, the export's submitter's) matching an export's filters, oldest
-- first; a NULL filter matches everything.
-- jsonb columns come out as text so the export writes them byte for byte.
SELECT job_id,
       type,
       queue,
       CASE priority WHEN 0 THEN 'high' WHEN 1 THEN 'normal' ELSE 'low' END AS priority,
       status,
       attempt,
       max_attempts,
       payload::text AS payload,
       result::text AS result,
       error,
       submitted_by,
       idempotency_key,
       version,
       created_at,
       updated_at,
       started_at,
       completed_at
FROM jobs
WHERE tenant = $7::text
  AND ($1::text[] IS NULL OR status = ANY($1::text[]))
  AND ($2::text IS NULL OR type = $2::text)
  AND ($3::text IS NULL OR queue = $3::text)
  AND ($4::timestamptz IS NULL OR created_at >= $4::timestamptz)
  AND ($5::timestamptz IS NULL OR created_at < $5::timestamptz)
ORDER BY created_at, job_id
LIMIT $6::bigint;

-- name: events_export
-- Events of one tenant ($6, the export's submitter's) matching an export's filters, in
-- ledger order; a NULL filter matches everything.
SELECT position,
       job_id,
       version,
       type,
       actor,
       occurred_at,
       data::text AS data,
       encode(prev_hash, 'hex') AS prev_hash,
       encode(hash, 'hex') AS hash
FROM events
WHERE tenant = $6::text
  AND ($1::text IS NULL OR type = $1::text)
  AND ($2::uuid IS NULL OR job_id = $2::uuid)
  AND ($3::timestamptz IS NULL OR occurred_at >= $3::timestamptz)
  AND ($4::timestamptz IS NULL OR occurred_at < $4::timestamptz)
ORDER BY position
LIMIT $5::bigint;
