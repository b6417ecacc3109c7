-- name: events_append
-- Many events, at most one per job per statement; the database hashes each over the
-- stored bytes and its job's previous link. A version with no predecessor gets a
-- NULL prev_hash (refused: NOT NULL), a taken version the unique key: both are conflicts.
-- The predecessor is looked up once per event (a CASE over a scalar subquery ran it
-- twice per row), by its unique key, and only for versions after the first. The
-- LIMIT keeps the lookup a per-row index probe: as a plain join, a generic plan made
-- while `events` was small or never analyzed (a new database; the internal pools
-- force generic plans) hash-joined a sequential scan of the whole table on every append.
INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
SELECT u.job_id, u.version, u.type, u.actor, u.occurred_at, u.data, p.prev_hash,
       sha256(p.prev_hash || event_canonical(u.type, u.job_id, u.version, u.actor, u.occurred_at, u.data))
FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
    AS u (job_id, version, type, actor, occurred_at, data)
LEFT JOIN LATERAL (
    SELECT e.hash
    FROM events AS e
    WHERE u.version > 1 AND e.job_id = u.job_id AND e.version = u.version - 1
    LIMIT 1
) AS prev ON true
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN u.version = 1 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
        ELSE prev.hash
    END AS prev_hash
) AS p
RETURNING position, job_id, version, txid::text::bigint AS txid, prev_hash, hash;

-- name: events_list_for_job
-- One job's history, oldest first.
SELECT position, job_id, version, type, data, actor, occurred_at,
       txid::text::bigint AS txid, prev_hash, hash
FROM events
WHERE job_id = $1
ORDER BY version;

-- name: events_first_of_jobs
-- Each job's first event (its submission), for jobs named together.
SELECT position, job_id, version, type, data, actor, occurred_at,
       txid::text::bigint AS txid, prev_hash, hash
FROM events
WHERE job_id = ANY($1::uuid[])
  AND version = 1;

-- name: schema_reset
-- `ledger db-reset` on a server of one's own: every table, view and function the
-- migrations made (and the migrations table) is gone; the next migrate starts afresh.
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
