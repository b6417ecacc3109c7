-- Queues become first-class: their settings (concurrency, rate limit, per-key concurrency, fairness, paused) change only by events in the ledger and are enforced inside the claim, in the database, so no number of worker processes can together exceed them.
-- Replaces job_view_step, job_view_apply and jobs_project_appended (sql/0051): the view
-- gains `concurrency_key` (from the submission; a job without one has NULL), and the
-- jobs projection takes only job.* events, since the ledger now also holds queue.*
-- events. A queue's events form one stream (its `job_id` column holds the stream id,
-- uuid5 of the queue's name; see ledger/queues.py), hash-chained and in the feed like a
-- job's, and projected by the same append into `queues`.
--
-- The claim (`jobs_claim_next`, replacing the callers' use of jobs_claimable) takes the
-- old path, unchanged, while no queue has a setting. Otherwise each restricted queue
-- that has due jobs is claimed from under a lock on its `queues` row (taken in name
-- order: no deadlock between claimers), after counting what runs now, so limits hold
-- across processes; then the unrestricted queues fill what is left.

ALTER TABLE jobs ADD COLUMN concurrency_key text;

-- Due jobs by queue and key: a restricted queue's claim reads its own jobs only, never
-- the other queues' backlog (and a key's, never the other keys').
CREATE INDEX jobs_queue_due_idx ON jobs (queue, (coalesce(concurrency_key, '')), run_at, priority, created_at)
WHERE status IN ('pending', 'retrying');

CREATE OR REPLACE FUNCTION job_view_step(s jobs, e events) RETURNS SETOF jobs
LANGUAGE sql IMMUTABLE ROWS 1 AS $$
SELECT
    CASE WHEN e.type = 'job.submitted.v1' THEN e.job_id ELSE s.job_id END,
    e.version,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'job_type' ELSE s.type END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'queue' ELSE s.queue END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (CASE e.data->>'priority' WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)::smallint
         ELSE s.priority END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN 'pending'
        WHEN 'job.claimed.v1' THEN 'processing'
        WHEN 'job.completed.v1' THEN 'completed'
        WHEN 'job.retry_scheduled.v1' THEN
            CASE WHEN e.data->>'next_attempt_at' IS NOT NULL THEN 'retrying' ELSE 'failed' END
        WHEN 'job.failed.v1' THEN
            CASE WHEN e.data->>'next_attempt_at' IS NOT NULL THEN 'retrying' ELSE 'failed' END
        WHEN 'job.lease_expired.v1' THEN
            CASE WHEN e.data->>'next_attempt_at' IS NOT NULL THEN 'retrying' ELSE 'failed' END
        WHEN 'job.cancelled.v1' THEN 'cancelled'
        WHEN 'job.released.v1' THEN 'pending'
        WHEN 'job.retried.v1' THEN 'pending'
        ELSE s.status
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->'payload' ELSE s.payload END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN NULL
        WHEN 'job.completed.v1' THEN e.data->'result'
        WHEN 'job.retried.v1' THEN NULL
        ELSE s.result
    END,
    CASE
        WHEN e.type IN ('job.submitted.v1', 'job.completed.v1', 'job.retried.v1') THEN NULL
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN e.data->>'error'
        ELSE s.error
    END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN 0
        WHEN 'job.claimed.v1' THEN (e.data->>'attempt')::integer
        WHEN 'job.released.v1' THEN s.attempt - 1
        WHEN 'job.retried.v1' THEN 0
        ELSE s.attempt
    END,
    CASE e.type
        WHEN 'job.submitted.v1' THEN (e.data->>'max_attempts')::integer
        WHEN 'job.retried.v1' THEN coalesce((e.data->>'max_attempts')::integer, s.max_attempts)
        ELSE s.max_attempts
    END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'timeout_seconds')::double precision ELSE s.timeout_seconds END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'backoff_base_seconds')::double precision ELSE s.backoff_base_seconds END,
    CASE WHEN e.type = 'job.submitted.v1'
         THEN (e.data->>'backoff_cap_seconds')::double precision ELSE s.backoff_cap_seconds END,
    CASE
        WHEN e.type = 'job.submitted.v1' THEN (e.data->>'run_at')::timestamptz
        WHEN e.type IN ('job.claimed.v1', 'job.cancelled.v1') THEN NULL
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN (e.data->>'next_attempt_at')::timestamptz
        WHEN e.type IN ('job.released.v1', 'job.retried.v1') THEN e.occurred_at
        ELSE s.run_at
    END,
    CASE
        WHEN e.type = 'job.claimed.v1' THEN e.data->>'worker_id'
        WHEN e.type IN ('job.completed.v1', 'job.retry_scheduled.v1', 'job.failed.v1',
                        'job.lease_expired.v1', 'job.cancelled.v1', 'job.released.v1') THEN NULL
        ELSE s.worker_id
    END,
    CASE
        WHEN e.type = 'job.claimed.v1' THEN (e.data->>'lease_until')::timestamptz
        WHEN e.type IN ('job.completed.v1', 'job.retry_scheduled.v1', 'job.failed.v1',
                        'job.lease_expired.v1', 'job.cancelled.v1', 'job.released.v1') THEN NULL
        ELSE s.lease_until
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'idempotency_key' ELSE s.idempotency_key END,
    CASE WHEN e.type = 'job.submitted.v1' THEN (e.data->>'replay_of')::uuid ELSE s.replay_of END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.actor ELSE s.submitted_by END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.occurred_at ELSE s.created_at END,
    e.occurred_at,
    CASE e.type
        WHEN 'job.claimed.v1' THEN e.occurred_at
        WHEN 'job.retried.v1' THEN NULL
        ELSE s.started_at
    END,
    CASE
        WHEN e.type IN ('job.completed.v1', 'job.cancelled.v1') THEN e.occurred_at
        WHEN e.type IN ('job.retry_scheduled.v1', 'job.failed.v1', 'job.lease_expired.v1')
            THEN CASE WHEN e.data->>'next_attempt_at' IS NULL THEN e.occurred_at
                      ELSE s.completed_at END
        WHEN e.type = 'job.retried.v1' THEN NULL
        ELSE s.completed_at
    END,
    CASE WHEN e.type = 'job.submitted.v1' THEN e.data->>'concurrency_key' ELSE s.concurrency_key END
WHERE CASE
    WHEN e.type = 'job.submitted.v1' THEN s.job_id IS NULL
    ELSE s.job_id IS NOT NULL
         AND e.type IN ('job.claimed.v1', 'job.completed.v1', 'job.retry_scheduled.v1',
                        'job.failed.v1', 'job.lease_expired.v1', 'job.cancelled.v1',
                        'job.released.v1', 'job.retried.v1', 'job.replayed.v1')
END OR job_view_refuse(e.type, e.job_id, s.job_id IS NOT NULL)
$$;

CREATE OR REPLACE FUNCTION job_view_apply(e events) RETURNS void
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
            completed_at = s.completed_at, concurrency_key = s.concurrency_key
        WHERE job_id = e.job_id;
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION jobs_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    later bigint;
    applied bigint;
BEGIN
    IF EXISTS (
        SELECT FROM appended WHERE type LIKE 'job.%' GROUP BY job_id HAVING count(*) > 1
    ) THEN
        PERFORM job_view_apply(e::events)
        FROM (SELECT * FROM appended WHERE type LIKE 'job.%' ORDER BY position) AS e;
        RETURN NULL;
    END IF;

    INSERT INTO jobs
    SELECT s.*
    FROM appended AS e
    CROSS JOIN LATERAL job_view_step(NULL::jobs, e::events) AS s
    WHERE e.version = 1
      AND e.type LIKE 'job.%';

    SELECT count(*) INTO later FROM appended WHERE version > 1 AND type LIKE 'job.%';
    IF later = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE jobs AS j
    SET (version, type, queue, priority, status, payload, result, error, attempt,
         max_attempts, timeout_seconds, backoff_base_seconds, backoff_cap_seconds, run_at,
         worker_id, lease_until, idempotency_key, replay_of, submitted_by, created_at,
         updated_at, started_at, completed_at, concurrency_key)
      = (n.version, n.type, n.queue, n.priority, n.status, n.payload, n.result,
         n.error, n.attempt, n.max_attempts, n.timeout_seconds,
         n.backoff_base_seconds, n.backoff_cap_seconds, n.run_at, n.worker_id,
         n.lease_until, n.idempotency_key, n.replay_of, n.submitted_by,
         n.created_at, n.updated_at, n.started_at, n.completed_at, n.concurrency_key)
    FROM (
        SELECT s.*
        FROM appended AS e
        JOIN jobs AS prior ON prior.job_id = e.job_id
        CROSS JOIN LATERAL job_view_step(prior, e::events) AS s
        WHERE e.version > 1
          AND e.type LIKE 'job.%'
    ) AS n
    WHERE j.job_id = n.job_id;
    GET DIAGNOSTICS applied = ROW_COUNT;
    IF applied < later THEN
        -- Some later event's job has no row: the per-row fold raises its error for it.
        PERFORM job_view_apply(e::events)
        FROM appended AS e
        WHERE e.version > 1
          AND e.type LIKE 'job.%'
          AND NOT EXISTS (SELECT FROM jobs AS j WHERE j.job_id = e.job_id);
    END IF;
    RETURN NULL;
END;
$$;

-- The queues' current settings: a projection of the queue.* events, like `jobs`.
-- A queue with no row (or a row with no setting) is unrestricted.
CREATE TABLE queues (
    name text PRIMARY KEY,
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL CHECK (version >= 1),
    concurrency integer CHECK (concurrency >= 0),
    rate_limit integer CHECK (rate_limit >= 1),
    rate_period_seconds double precision CHECK (rate_period_seconds > 0),
    rate_burst integer CHECK (rate_burst >= 1),
    per_key_concurrency integer CHECK (per_key_concurrency >= 1),
    fairness text NOT NULL CHECK (fairness IN ('fifo', 'round_robin')),
    paused boolean NOT NULL,
    restricted boolean GENERATED ALWAYS AS (
        paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL
        OR per_key_concurrency IS NOT NULL OR fairness <> 'fifo'
    ) STORED,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK ((rate_limit IS NULL) = (rate_period_seconds IS NULL)
           AND (rate_limit IS NULL) = (rate_burst IS NULL))
);

-- One fold step of a queue's settings (the same rule as ledger.queues.evolve).
CREATE FUNCTION queue_view_step(s queues, e events) RETURNS queues
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n queues;
BEGIN
    IF s.name IS NULL AND e.version <> 1 THEN
        RAISE EXCEPTION 'event % for queue stream % before its first', e.type, e.job_id;
    END IF;
    n.name := e.data->>'queue';
    n.stream_id := e.job_id;
    n.version := e.version;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    n.paused := coalesce(s.paused, false);
    n.fairness := coalesce(s.fairness, 'fifo');
    n.concurrency := s.concurrency;
    n.rate_limit := s.rate_limit;
    n.rate_period_seconds := s.rate_period_seconds;
    n.rate_burst := s.rate_burst;
    n.per_key_concurrency := s.per_key_concurrency;
    CASE e.type
        WHEN 'queue.configured.v1' THEN
            n.concurrency := (e.data->>'concurrency')::integer;
            n.rate_limit := (e.data->'rate_limit'->>'limit')::integer;
            n.rate_period_seconds := (e.data->'rate_limit'->>'period_seconds')::double precision;
            n.rate_burst := (e.data->'rate_limit'->>'burst')::integer;
            n.per_key_concurrency := (e.data->>'per_key_concurrency')::integer;
            n.fairness := e.data->>'fairness';
        WHEN 'queue.paused.v1' THEN
            n.paused := true;
        WHEN 'queue.resumed.v1' THEN
            n.paused := false;
        ELSE
            RAISE EXCEPTION 'unknown event type % (queue stream %)', e.type, e.job_id;
    END CASE;
    RETURN n;
END;
$$;

CREATE AGGREGATE queue_view_fold(events) (
    SFUNC = queue_view_step,
    STYPE = queues
);

-- Projects the statement's queue events into `queues` (at most one per queue in a
-- statement, as the store appends them) and wakes the workers: a limit raised or a
-- queue resumed may make due jobs claimable.
CREATE FUNCTION queues_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e events;
    s queues;
BEGIN
    FOR e IN SELECT * FROM appended WHERE type LIKE 'queue.%' ORDER BY position LOOP
        SELECT * INTO s FROM queues WHERE stream_id = e.job_id FOR UPDATE;
        IF NOT FOUND THEN
            s := NULL;
        END IF;
        s := queue_view_step(s, e);
        INSERT INTO queues (name, stream_id, version, concurrency, rate_limit,
                            rate_period_seconds, rate_burst, per_key_concurrency, fairness,
                            paused, updated_by, updated_at)
        VALUES (s.name, s.stream_id, s.version, s.concurrency, s.rate_limit,
                s.rate_period_seconds, s.rate_burst, s.per_key_concurrency, s.fairness,
                s.paused, s.updated_by, s.updated_at)
        ON CONFLICT (name) DO UPDATE
        SET version = excluded.version, concurrency = excluded.concurrency,
            rate_limit = excluded.rate_limit,
            rate_period_seconds = excluded.rate_period_seconds,
            rate_burst = excluded.rate_burst,
            per_key_concurrency = excluded.per_key_concurrency,
            fairness = excluded.fairness, paused = excluded.paused,
            updated_by = excluded.updated_by, updated_at = excluded.updated_at;
        PERFORM pg_notify('ledger_jobs', '');
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_project_queues
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION queues_project_appended();

-- A rate-limited queue's token bucket: claim state, not a projection (it is only
-- written by the claim, under the queue's lock). `last_claimed` are the jobs its last
-- claim took: the next refill counts from their recorded claim time, so the limit holds
-- on the times the ledger records, not only on the claim's own clock.
CREATE TABLE queue_buckets (
    queue text PRIMARY KEY,
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    last_claimed uuid[] NOT NULL DEFAULT '{}'
);

-- When each key of a round-robin queue was last served: the claim serves the least
-- recently served key first.
CREATE TABLE queue_key_turns (
    queue text NOT NULL,
    concurrency_key text NOT NULL,
    served_at timestamptz NOT NULL,
    PRIMARY KEY (queue, concurrency_key)
);

-- Up to `room` due jobs of one restricted queue, locked, under its limits. The caller
-- holds the queue's row lock.
-- Planned for each call's values, and (as in sql/0053) with sorts priced out even when
-- statistics are missing: a key's probe must walk jobs_queue_due_idx, not the due index
-- past every other key's backlog (7 ms a claim behind 20,000 jobs of one key).
CREATE FUNCTION jobs_claim_from_queue(q queues, room integer, job_types text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
DECLARE
    running integer;
    b queue_buckets;
    since timestamptz;
    at timestamptz := clock_timestamp();
    keys text[];
    allowance integer[];
    taken uuid[] := '{}';
    j jobs;
    i integer;
    n integer;
    active integer[];
    progress boolean;
BEGIN
    IF q.concurrency IS NOT NULL THEN
        SELECT count(*) INTO running FROM jobs WHERE status = 'processing' AND queue = q.name;
        room := least(room, q.concurrency - running);
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        SELECT * INTO b FROM queue_buckets WHERE queue = q.name;
        IF NOT FOUND THEN
            b := ROW(q.name, q.rate_burst, at, '{}');
        ELSE
            SELECT greatest(b.refilled_at, max(started_at)) INTO since
            FROM jobs WHERE job_id = ANY(b.last_claimed);
            b.tokens := least(q.rate_burst::double precision,
                              b.tokens + greatest(0, extract(epoch FROM at - coalesce(since, b.refilled_at)))
                                         * q.rate_limit / q.rate_period_seconds);
        END IF;
        room := least(room, floor(b.tokens)::integer);
    END IF;
    IF room > 0 THEN
        -- By key (jobs without one share the key ''): the keys with runnable jobs (a
        -- skip scan of jobs_queue_due_idx), each allowed what its per-key limit leaves;
        -- round-robin serves the key served longest ago first, one job a key a turn;
        -- FIFO takes the oldest head each time; a key alone takes its jobs at once. Every
        -- read walks jobs_queue_due_idx in its own order (queue, key, run_at, ...), so
        -- its cost is the jobs taken and the keys, never another key's or queue's backlog.
        WITH RECURSIVE k (key) AS (
            (SELECT coalesce(concurrency_key, '') FROM jobs
             WHERE queue = q.name AND status IN ('pending', 'retrying')
             ORDER BY coalesce(concurrency_key, '') LIMIT 1)
            UNION ALL
            SELECT (SELECT coalesce(concurrency_key, '') FROM jobs
                    WHERE queue = q.name AND status IN ('pending', 'retrying')
                      AND coalesce(concurrency_key, '') > k.key
                    ORDER BY coalesce(concurrency_key, '') LIMIT 1)
            FROM k WHERE k.key IS NOT NULL
        )
        SELECT array_agg(k.key ORDER BY t.served_at NULLS FIRST, k.key),
               array_agg(coalesce(q.per_key_concurrency - coalesce(r.n, 0), room) ORDER BY t.served_at NULLS FIRST, k.key)
        INTO keys, allowance
        FROM k
        LEFT JOIN queue_key_turns AS t ON t.queue = q.name AND t.concurrency_key = k.key
        LEFT JOIN (
            SELECT coalesce(concurrency_key, '') AS key, count(*)::integer AS n FROM jobs
            WHERE status = 'processing' AND queue = q.name GROUP BY 1
        ) AS r ON r.key = k.key
        WHERE k.key IS NOT NULL;
        IF keys IS NULL THEN
            keys := '{}';
        END IF;
        LOOP
            EXIT WHEN room <= 0;
            progress := false;
            SELECT array_agg(o) INTO active FROM generate_subscripts(allowance, 1) AS o
            WHERE allowance[o] > 0;
            IF cardinality(active) = 1 THEN
                -- One key left with room (a backlog of one key): its jobs at once.
                i := active[1];
                n := room;
                FOR j IN
                    SELECT * FROM jobs
                    WHERE queue = q.name AND coalesce(concurrency_key, '') = keys[i]
                      AND status IN ('pending', 'retrying') AND run_at <= now()
                      AND type = ANY(job_types) AND job_id <> ALL(taken)
                    ORDER BY queue, coalesce(concurrency_key, ''), run_at, priority, created_at
                    LIMIT least(room, allowance[i])
                    FOR UPDATE SKIP LOCKED
                LOOP
                    taken := taken || j.job_id;
                    room := room - 1;
                    RETURN NEXT j;
                END LOOP;
                IF q.fairness = 'round_robin' AND room < n THEN
                    INSERT INTO queue_key_turns (queue, concurrency_key, served_at)
                    VALUES (q.name, keys[i], clock_timestamp())
                    ON CONFLICT (queue, concurrency_key) DO UPDATE SET served_at = excluded.served_at;
                END IF;
                EXIT;
            END IF;
            EXIT WHEN active IS NULL;
            IF q.fairness = 'round_robin' THEN
                FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
                    EXIT WHEN room <= 0;
                    CONTINUE WHEN allowance[i] <= 0;
                    SELECT * INTO j FROM jobs
                    WHERE queue = q.name AND coalesce(concurrency_key, '') = keys[i]
                      AND status IN ('pending', 'retrying') AND run_at <= now()
                      AND type = ANY(job_types) AND job_id <> ALL(taken)
                    ORDER BY queue, coalesce(concurrency_key, ''), run_at, priority, created_at
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED;
                    IF NOT FOUND THEN
                        allowance[i] := 0;
                        CONTINUE;
                    END IF;
                    allowance[i] := allowance[i] - 1;
                    room := room - 1;
                    taken := taken || j.job_id;
                    progress := true;
                    INSERT INTO queue_key_turns (queue, concurrency_key, served_at)
                    VALUES (q.name, keys[i], clock_timestamp())
                    ON CONFLICT (queue, concurrency_key) DO UPDATE SET served_at = excluded.served_at;
                    RETURN NEXT j;
                END LOOP;
            ELSE
                SELECT h.* INTO j
                FROM unnest(keys, allowance) AS k (key, allowed)
                CROSS JOIN LATERAL (
                    SELECT * FROM jobs
                    WHERE queue = q.name AND coalesce(concurrency_key, '') = k.key
                      AND status IN ('pending', 'retrying') AND run_at <= now()
                      AND type = ANY(job_types) AND job_id <> ALL(taken)
                    ORDER BY queue, coalesce(concurrency_key, ''), run_at, priority, created_at
                    LIMIT 1
                ) AS h
                WHERE k.allowed > 0
                ORDER BY h.run_at, h.priority, h.created_at
                LIMIT 1;
                IF FOUND THEN
                    taken := taken || j.job_id;
                    i := array_position(keys, coalesce(j.concurrency_key, ''));
                    allowance[i] := allowance[i] - 1;
                    PERFORM FROM jobs WHERE job_id = j.job_id
                        AND status IN ('pending', 'retrying') FOR UPDATE SKIP LOCKED;
                    IF FOUND THEN
                        room := room - 1;
                        RETURN NEXT j;
                    END IF;
                    progress := true;
                END IF;
            END IF;
            EXIT WHEN NOT progress;
        END LOOP;
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        INSERT INTO queue_buckets (queue, tokens, refilled_at, last_claimed)
        VALUES (q.name, b.tokens - coalesce(array_length(taken, 1), 0), at, taken)
        ON CONFLICT (queue) DO UPDATE
        SET tokens = excluded.tokens, refilled_at = excluded.refilled_at,
            last_claimed = CASE WHEN cardinality(excluded.last_claimed) > 0
                                THEN excluded.last_claimed ELSE queue_buckets.last_claimed END;
    END IF;
END;
$$;

-- The claim: up to `max_jobs` due jobs of `job_types`, locked, within every queue's
-- settings. With no restricted queue it is jobs_claimable, unchanged.
CREATE FUNCTION jobs_claim_next(max_jobs integer, job_types text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
DECLARE
    restricted text[];
    q queues;
    taken integer := 0;
    n integer;
BEGIN
    SELECT array_agg(name ORDER BY name) INTO restricted FROM queues WHERE queues.restricted;
    IF restricted IS NULL THEN
        RETURN QUERY SELECT * FROM jobs_claimable(max_jobs, job_types);
        RETURN;
    END IF;
    FOR q IN
        SELECT * FROM queues AS c
        WHERE c.restricted AND NOT c.paused
          AND EXISTS (
              SELECT FROM jobs
              WHERE queue = c.name AND status IN ('pending', 'retrying')
                AND run_at <= now() AND type = ANY(job_types)
              ORDER BY queue, coalesce(concurrency_key, ''), run_at, priority, created_at
              LIMIT 1
          )
        ORDER BY c.name
    LOOP
        EXIT WHEN taken >= max_jobs;
        -- Serialize the claimers of this queue; read its settings as they are now.
        SELECT * INTO q FROM queues WHERE name = q.name FOR UPDATE;
        CONTINUE WHEN q.paused OR NOT q.restricted;
        RETURN QUERY SELECT * FROM jobs_claim_from_queue(q, max_jobs - taken, job_types);
        GET DIAGNOSTICS n = ROW_COUNT;
        taken := taken + n;
    END LOOP;
    IF taken < max_jobs THEN
        RETURN QUERY
        SELECT * FROM jobs
        WHERE status IN ('pending', 'retrying')
          AND run_at <= now()
          AND type = ANY(job_types)
          AND queue <> ALL(restricted)
        ORDER BY run_at, priority, created_at
        LIMIT max_jobs - taken
        FOR UPDATE SKIP LOCKED;
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION jobs_claim_next(integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_next(integer, text[]) TO ledger_app;
REVOKE ALL ON FUNCTION jobs_claim_from_queue(queues, integer, text[]) FROM PUBLIC;

-- Seconds until the claim could next take a job of `job_types` (the retry clock's
-- alarm). With no restricted queue: the earliest runnable job, as before. Otherwise
-- only jobs that became due in the last `lookback_seconds` (since the claim round that
-- just ran began) or are not due yet: every job due before it that the round left is held back
-- by its queue's settings (a full round asks for no alarm), and is woken by a NOTIFY
-- (a job leaving `processing` in a restricted queue, a queue event) instead, so a
-- blocked backlog neither sets a busy alarm nor is scanned. A rate-limited queue
-- with due jobs and no token adds the time of its next token.
CREATE FUNCTION jobs_next_due(job_types text[], lookback_seconds double precision)
RETURNS double precision
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    soonest timestamptz;
    since timestamptz;
    q queues;
    b queue_buckets;
BEGIN
    IF NOT EXISTS (SELECT FROM queues WHERE queues.restricted) THEN
        SELECT min(run_at) INTO soonest FROM jobs
        WHERE status IN ('pending', 'retrying') AND type = ANY(job_types);
    ELSE
        since := clock_timestamp() - make_interval(secs => lookback_seconds);
        SELECT min(run_at) INTO soonest FROM jobs
        WHERE status IN ('pending', 'retrying') AND type = ANY(job_types) AND run_at > since;
        FOR q IN SELECT * FROM queues WHERE queues.restricted AND NOT paused
                 AND rate_limit IS NOT NULL LOOP
            SELECT * INTO b FROM queue_buckets WHERE queue = q.name;
            IF FOUND AND b.tokens < 1 AND EXISTS (
                SELECT FROM jobs WHERE queue = q.name AND status IN ('pending', 'retrying')
                  AND run_at <= now() AND type = ANY(job_types)
            ) THEN
                soonest := least(soonest, b.refilled_at + make_interval(
                    secs => (1 - b.tokens) * q.rate_period_seconds / q.rate_limit));
            END IF;
        END LOOP;
    END IF;
    RETURN extract(epoch FROM soonest - clock_timestamp())::double precision;
END;
$$;

REVOKE ALL ON FUNCTION jobs_next_due(text[], double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_next_due(text[], double precision) TO ledger_app;

-- A job leaving `processing` in a restricted queue frees room: wake the claimers
-- (NOTIFY only wakes; a transaction's identical notifications fold into one). With no
-- restricted queue this is one probe of an empty index.
CREATE FUNCTION jobs_notify_room() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM queues WHERE restricted) AND EXISTS (
        SELECT FROM before_rows AS o
        JOIN after_rows AS n ON n.job_id = o.job_id
        JOIN queues AS q ON q.name = o.queue
        WHERE o.status = 'processing' AND n.status <> 'processing' AND q.restricted
    ) THEN
        PERFORM pg_notify('ledger_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE INDEX queues_restricted_idx ON queues (name) WHERE restricted;

CREATE TRIGGER jobs_notify_room
AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
FOR EACH STATEMENT
EXECUTE FUNCTION jobs_notify_room();

GRANT SELECT ON queues TO ledger_app;
