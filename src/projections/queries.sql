-- name: jobs_apply
-- Fold the just-appended events (visible to this transaction) into the live view, in order.
SELECT job_view_apply(e)
FROM events AS e
WHERE e.position = ANY($1::bigint[])
ORDER BY e.position;

-- name: jobs_get
SELECT *
FROM jobs
WHERE job_id = $1;

-- name: jobs_scratch_create
-- A scratch copy of the view's shape, gone at the end of the transaction.
CREATE TEMPORARY TABLE jobs_scratch (LIKE jobs) ON COMMIT DROP;

-- name: jobs_scratch_fill
INSERT INTO jobs_scratch
SELECT (s.state).*
FROM (
    SELECT job_view_fold(e ORDER BY e.version) AS state
    FROM events AS e
    GROUP BY e.job_id
) AS s;

-- name: jobs_scratch_diff
-- Rows that differ between the live view and the rebuild, side by side.
WITH live_only AS (
    SELECT * FROM jobs
    EXCEPT ALL
    SELECT * FROM jobs_scratch
), rebuilt_only AS (
    SELECT * FROM jobs_scratch
    EXCEPT ALL
    SELECT * FROM jobs
), ids AS (
    SELECT job_id FROM live_only
    UNION
    SELECT job_id FROM rebuilt_only
)
SELECT ids.job_id,
       (SELECT to_jsonb(l) FROM live_only AS l WHERE l.job_id = ids.job_id) AS live,
       (SELECT to_jsonb(r) FROM rebuilt_only AS r WHERE r.job_id = ids.job_id) AS rebuilt
FROM ids
ORDER BY ids.job_id;

-- name: jobs_lock
LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE;

-- name: jobs_delete_all
DELETE FROM jobs;

-- name: jobs_fill_from_scratch
INSERT INTO jobs
SELECT *
FROM jobs_scratch;

-- name: jobs_fold_as_of
-- One job's state folded from its events up to an instant (time travel).
SELECT (job_view_fold(e ORDER BY e.version)).*
FROM events AS e
WHERE e.job_id = $1
  AND e.occurred_at <= $2
HAVING count(*) > 0;

-- name: events_feed_page
-- The global feed after a cursor, in (txid, position) order, and only below the
-- snapshot's xmin: every transaction below it has ended, so nothing can appear
-- later before a row already returned (DESIGN.md invariant 5).
SELECT position, job_id, version, type, data, actor, occurred_at,
       txid::text::bigint AS txid, prev_hash, hash
FROM events
WHERE (txid, position) > ($1::text::xid8, $2::bigint)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY txid, position
LIMIT $3;

-- name: events_chain_scan
-- Every event in chain order, for recomputing the hash chains.
SELECT job_id, version, type, data, actor, occurred_at, prev_hash, hash
FROM events
ORDER BY job_id, version;

-- name: events_chain_scan_job
SELECT job_id, version, type, data, actor, occurred_at, prev_hash, hash
FROM events
WHERE job_id = $1
ORDER BY version;

-- name: jobs_metering_context
-- What the metrics need of jobs about to change: type and queue (labels), when the
-- job became due (queue wait) and when its running attempt started (run time).
SELECT job_id, type, queue, run_at, started_at
FROM jobs
WHERE job_id = ANY($1::uuid[]);

-- name: jobs_depth_by_queue_status
-- Unfinished jobs by queue and status, for the queue-depth gauge at scrape time.
SELECT queue, status, count(*) AS jobs
FROM jobs
WHERE status IN ('pending', 'retrying', 'processing')
GROUP BY queue, status
ORDER BY queue, status;
