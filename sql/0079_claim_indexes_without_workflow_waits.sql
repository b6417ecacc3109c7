-- The claim's partial indexes held workflow jobs that cannot run (sql/0077: `blocked`, waiting for their dependencies, and `skipped`, ended without running); they now leave both out, and so do the claim's walks.
--
-- jobs_queue_due_idx and jobs_key_due_idx (sql/0065) kept every row whose status was not
-- processing, completed, failed or cancelled, so each blocked job was written into them
-- at its submission and again at its unblocking, and a queue holding only blocked jobs
-- was still listed by the claim's walks over queues and keys (jobs_groups_of,
-- jobs_claim_fair, ...), each such walk then finding nothing due in it.
--
-- The planner uses a partial index only where the query's WHERE implies its predicate,
-- so every function that walks these indexes gets the same longer list: their latest
-- definitions (sql/0070 and any later migration) are rewritten in place from the
-- catalog, the four-status list replaced by the six-status one and nothing else, so
-- the plans stay the same index walks (tests/db/test_workflow_claim_indexes.py checks
-- that with EXPLAIN). A later migration that redefines one of these functions must
-- spell the six statuses.

DROP INDEX jobs_queue_due_idx;
CREATE INDEX jobs_queue_due_idx ON jobs (tenant, queue, run_at, priority, created_at)
WHERE status NOT IN ('processing', 'completed', 'failed', 'cancelled', 'blocked', 'skipped')
  AND concurrency_key IS NULL;

DROP INDEX jobs_key_due_idx;
CREATE INDEX jobs_key_due_idx ON jobs (tenant, queue, concurrency_key, run_at, priority, created_at)
WHERE status NOT IN ('processing', 'completed', 'failed', 'cancelled', 'blocked', 'skipped')
  AND concurrency_key IS NOT NULL;

DO $$
DECLARE
    f regprocedure;
    old_list constant text := $q$'processing', 'completed', 'failed', 'cancelled'$q$;
    new_list constant text := $q$'processing', 'completed', 'failed', 'cancelled', 'blocked', 'skipped'$q$;
    rewritten integer := 0;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
        FROM pg_proc AS p
        JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'
          AND p.proname LIKE 'jobs\_%'
          AND strpos(p.prosrc, old_list) > 0
        ORDER BY p.proname
    LOOP
        EXECUTE replace(pg_get_functiondef(f), old_list, new_list);
        rewritten := rewritten + 1;
    END LOOP;
    IF rewritten = 0 THEN
        RAISE EXCEPTION 'no claim function walks the due indexes: 0079 has nothing to rewrite';
    END IF;
END
$$;
