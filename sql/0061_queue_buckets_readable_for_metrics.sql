-- The /metrics scrape tells which queues are out of rate-limit tokens: the application role cannot read queue_buckets (claim state, sql/0059), so this function shows each bucket's tokens as the next claim would count them, and nothing else.
-- The refill is the claim's own (jobs_claim_from_queue): from the later of the bucket's
-- last refill and its last claimed jobs' recorded start, at `rate_limit` per
-- `rate_period_seconds`, up to the burst. One row per rate-limited queue that has
-- claimed at least once (a queue with no bucket yet has its whole burst).

CREATE FUNCTION queue_buckets_tokens() RETURNS TABLE (queue text, tokens double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
SELECT b.queue,
       least(q.rate_burst::double precision,
             b.tokens + greatest(0, extract(epoch FROM clock_timestamp() - coalesce(
                 (SELECT greatest(b.refilled_at, max(j.started_at))
                  FROM jobs AS j WHERE j.job_id = ANY(b.last_claimed)),
                 b.refilled_at))) * q.rate_limit / q.rate_period_seconds)
FROM queue_buckets AS b
JOIN queues AS q ON q.name = b.queue
WHERE q.rate_limit IS NOT NULL
ORDER BY b.queue;
$$;

REVOKE ALL ON FUNCTION queue_buckets_tokens() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue_buckets_tokens() TO ledger_app;
