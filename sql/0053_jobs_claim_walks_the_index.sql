-- The claim must read the runnable jobs in index order and stop at its limit; with stale statistics (a burst of submissions before autovacuum analyzes) the planner sorted every runnable job on every claim instead (17 ms per claim with 14,000 queued, EXPLAIN in bench).
-- The planner estimated one runnable row (no statistics yet), so a bitmap scan plus a
-- sort of all runnable rows looked free. Inside this function, sorting and bitmap
-- scans are priced out, which leaves the ordered scan of jobs_due_idx that stops
-- after `max_jobs` rows; the order and the locking are those of the claim before.
CREATE FUNCTION jobs_claimable(max_jobs integer, job_types text[]) RETURNS SETOF jobs
LANGUAGE sql
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
    SELECT *
    FROM jobs
    WHERE status IN ('pending', 'retrying')
      AND run_at <= now()
      AND type = ANY(job_types)
    ORDER BY run_at, priority, created_at
    LIMIT max_jobs
    FOR UPDATE SKIP LOCKED
$$;
