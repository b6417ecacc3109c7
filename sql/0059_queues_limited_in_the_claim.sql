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
-- that has due jobs is claimed in turn, a queue with a limit under a lock on its
-- `queues` row (taken in name order: no deadlock between claimers) after counting what
-- runs now, so limits hold across processes; then the unrestricted queues fill what is
-- left.

ALTER TABLE jobs ADD COLUMN concurrency_key text;

-- Due jobs by group: a queue's jobs without a concurrency key, and each key's. Every
-- runnable job is in exactly one of the two (one index write, as for jobs_due_idx), and
-- a claim that reads a group walks that group's jobs only, never another queue's or
-- key's backlog.
--
-- Their predicate names the runnable statuses by the ones they are not: the same rows
-- (the view holds no other status), but a query written that way can use only these
-- indexes, never jobs_due_idx (whose predicate it does not imply). Read with equality
-- on the queue, both give the same order, and a planner misled by estimates (a queue
-- or key with no such rows looks like one with many) walked jobs_due_idx past every
-- other queue's backlog instead; spelled this way, it cannot.
CREATE INDEX jobs_queue_due_idx ON jobs (queue, run_at, priority, created_at)
WHERE status NOT IN ('processing', 'completed', 'failed', 'cancelled') AND concurrency_key IS NULL;
CREATE INDEX jobs_key_due_idx ON jobs (queue, concurrency_key, run_at, priority, created_at)
WHERE status NOT IN ('processing', 'completed', 'failed', 'cancelled') AND concurrency_key IS NOT NULL;

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

-- Up to `n` due jobs of one group of a queue (its jobs without a concurrency key when
-- `key` is NULL, else that key's), in claim order, not in `taken`; locked when `lock`.
-- Each read walks its group's own index in that index's order, so it never passes
-- another group's or queue's backlog.
CREATE FUNCTION jobs_due_in_group(
    q text, key text, job_types text[], taken uuid[], n integer, lock boolean
) RETURNS SETOF jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    IF key IS NULL AND lock THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE queue = q AND concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY queue, run_at, priority, created_at
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    ELSIF key IS NULL THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE queue = q AND concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY queue, run_at, priority, created_at
        LIMIT n;
    ELSIF lock THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE queue = q AND concurrency_key = key AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY queue, concurrency_key, run_at, priority, created_at
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    ELSE
        RETURN QUERY SELECT * FROM jobs
        WHERE queue = q AND concurrency_key = key AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY queue, concurrency_key, run_at, priority, created_at
        LIMIT n;
    END IF;
END;
$$;

-- The groups of a queue with runnable jobs: NULL (its jobs without a key) first when
-- it has any, then each key (a skip scan of jobs_key_due_idx: one probe a key).
CREATE FUNCTION jobs_groups_of(q text) RETURNS text[]
LANGUAGE sql STABLE
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    WITH RECURSIVE k (key) AS (
        (SELECT concurrency_key FROM jobs
         WHERE queue = q AND concurrency_key IS NOT NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY queue, concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobs
                WHERE queue = q AND concurrency_key > k.key
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY queue, concurrency_key LIMIT 1)
        FROM k WHERE k.key IS NOT NULL
    )
    SELECT CASE WHEN (
               SELECT true FROM jobs
               WHERE queue = q AND concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
               ORDER BY queue, run_at, priority, created_at LIMIT 1
           ) THEN ARRAY[NULL::text] ELSE '{}'::text[] END
           || coalesce((SELECT array_agg(k.key) FROM k WHERE k.key IS NOT NULL), '{}')
$$;

-- Whether a queue has a job of `job_types` due now.
CREATE FUNCTION jobs_queue_has_due(q text, job_types text[]) RETURNS boolean
LANGUAGE sql STABLE
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    -- Scalar subqueries, not EXISTS: the planner drops an EXISTS's ORDER BY, and with
    -- it the order that makes it walk the group's own index.
    SELECT coalesce((
        SELECT true FROM jobs
        WHERE queue = q AND concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types)
        ORDER BY queue, run_at, priority, created_at LIMIT 1
    ), (
        SELECT true FROM jobs
        WHERE queue = q AND concurrency_key IS NOT NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types)
        ORDER BY queue, concurrency_key, run_at, priority, created_at LIMIT 1
    ), false)
$$;

-- Up to `room` due jobs of one restricted queue, locked, under its limits. The caller
-- holds the queue's row lock when it has a limit.
--
-- Groups (its jobs without a key, and each key) with runnable jobs, each allowed what
-- its per-key limit leaves: round-robin serves the group served longest ago first, one
-- job a group a turn; FIFO takes the oldest head of all groups each time; a group left
-- alone takes its jobs at once. The cost is the jobs taken and the groups, never
-- another group's or queue's backlog.
CREATE FUNCTION jobs_claim_from_queue(q queues, room integer, job_types text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
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
    served text[] := '{}';
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
            -- Refilled from the recorded claim time of the last claim's jobs (later
            -- than its clock), so the limit holds on the times the ledger shows.
            SELECT greatest(b.refilled_at, max(started_at)) INTO since
            FROM jobs WHERE job_id = ANY(b.last_claimed);
            b.tokens := least(q.rate_burst::double precision,
                              b.tokens + greatest(0, extract(epoch FROM at - coalesce(since, b.refilled_at)))
                                         * q.rate_limit / q.rate_period_seconds);
        END IF;
        room := least(room, floor(b.tokens)::integer);
    END IF;
    IF room > 0 THEN
        SELECT array_agg(g.key ORDER BY t.served_at NULLS FIRST, g.key NULLS FIRST),
               array_agg(coalesce(q.per_key_concurrency - coalesce(r.n, 0), room)
                         ORDER BY t.served_at NULLS FIRST, g.key NULLS FIRST)
        INTO keys, allowance
        FROM unnest(jobs_groups_of(q.name)) AS g (key)
        LEFT JOIN queue_key_turns AS t
            ON t.queue = q.name AND t.concurrency_key = coalesce(g.key, '')
        LEFT JOIN (
            SELECT concurrency_key AS key, count(*)::integer AS n FROM jobs
            WHERE status = 'processing' AND queue = q.name GROUP BY 1
        ) AS r ON r.key IS NOT DISTINCT FROM g.key;
        LOOP
            EXIT WHEN room <= 0 OR keys IS NULL;
            progress := false;
            SELECT array_agg(o) INTO active FROM generate_subscripts(allowance, 1) AS o
            WHERE allowance[o] > 0;
            EXIT WHEN active IS NULL;
            IF cardinality(active) = 1 THEN
                -- One group left with room (a backlog of one key): its jobs at once.
                i := active[1];
                n := room;
                FOR j IN
                    SELECT * FROM jobs_due_in_group(
                        q.name, keys[i], job_types, taken, least(room, allowance[i]), true)
                LOOP
                    taken := taken || j.job_id;
                    room := room - 1;
                    RETURN NEXT j;
                END LOOP;
                IF room < n THEN
                    served := served || coalesce(keys[i], '');
                END IF;
                EXIT;
            END IF;
            IF q.fairness = 'round_robin' THEN
                FOREACH i IN ARRAY active LOOP
                    EXIT WHEN room <= 0;
                    SELECT * INTO j FROM jobs_due_in_group(q.name, keys[i], job_types, taken, 1, true);
                    IF NOT FOUND THEN
                        allowance[i] := 0;
                        CONTINUE;
                    END IF;
                    allowance[i] := allowance[i] - 1;
                    room := room - 1;
                    taken := taken || j.job_id;
                    progress := true;
                    served := served || coalesce(keys[i], '');
                    RETURN NEXT j;
                END LOOP;
            ELSE
                SELECT h.* INTO j
                FROM unnest(active) AS a (i)
                CROSS JOIN LATERAL jobs_due_in_group(q.name, keys[a.i], job_types, taken, 1, false) AS h
                ORDER BY h.run_at, h.priority, h.created_at
                LIMIT 1;
                IF FOUND THEN
                    taken := taken || j.job_id;
                    i := array_position(keys, j.concurrency_key);
                    allowance[i] := allowance[i] - 1;
                    progress := true;
                    PERFORM FROM jobs WHERE job_id = j.job_id
                        AND status NOT IN ('processing', 'completed', 'failed', 'cancelled') FOR UPDATE SKIP LOCKED;
                    IF FOUND THEN
                        room := room - 1;
                        RETURN NEXT j;
                    END IF;
                ELSE
                    EXIT;
                END IF;
            END IF;
            EXIT WHEN NOT progress;
        END LOOP;
    END IF;
    IF q.fairness = 'round_robin' AND cardinality(served) > 0 AND cardinality(keys) > 1 THEN
        -- The turns, in serving order, written in key order: claimers of one queue (it
        -- takes no lock without a limit) lock the turn rows in one order, never deadlock.
        -- Alone, a group's turn is recorded once, not rewritten on every claim (a row
        -- write each, on which concurrent claimers would queue): a group that appears
        -- later has never been served, so it goes first either way.
        INSERT INTO queue_key_turns (queue, concurrency_key, served_at)
        SELECT q.name, s.key, at + make_interval(secs => max(s.turn) * 1e-6)
        FROM unnest(served) WITH ORDINALITY AS s (key, turn)
        GROUP BY s.key
        ORDER BY s.key
        ON CONFLICT (queue, concurrency_key) DO UPDATE
        SET served_at = excluded.served_at;
    ELSIF q.fairness = 'round_robin' AND cardinality(served) > 0 THEN
        INSERT INTO queue_key_turns (queue, concurrency_key, served_at)
        VALUES (q.name, served[1], at)
        ON CONFLICT (queue, concurrency_key) DO NOTHING;
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
-- settings. With no restricted queue it is jobs_claimable, unchanged. Otherwise each
-- restricted queue with due jobs is claimed (one with a limit under its row lock, taken
-- in name order: claimers never deadlock), then the unrestricted queues fill what is
-- left, each read through its own index, so a restricted queue's backlog is never walked.
CREATE FUNCTION jobs_claim_next(max_jobs integer, job_types text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    restricted text[];
    q queues;
    taken integer := 0;
    n integer;
    open_queues text[];
    keyed_queues text[];
BEGIN
    SELECT array_agg(name ORDER BY name) INTO restricted FROM queues WHERE queues.restricted;
    IF restricted IS NULL THEN
        RETURN QUERY SELECT * FROM jobs_claimable(max_jobs, job_types);
        RETURN;
    END IF;
    FOR q IN
        SELECT * FROM queues AS c
        WHERE c.restricted AND NOT c.paused AND jobs_queue_has_due(c.name, job_types)
        ORDER BY c.name
    LOOP
        EXIT WHEN taken >= max_jobs;
        -- A limit serializes the claimers of its queue (each counts what runs and spends
        -- tokens after the last one committed); fairness alone needs no lock. Either way
        -- the settings are read as they are now.
        SELECT * INTO q FROM queues WHERE name = q.name;
        CONTINUE WHEN NOT FOUND;
        IF q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL
           OR q.per_key_concurrency IS NOT NULL THEN
            SELECT * INTO q FROM queues WHERE name = q.name FOR UPDATE;
            CONTINUE WHEN NOT FOUND;  -- replaced by a rebuild meanwhile: the next round
        END IF;
        CONTINUE WHEN q.paused OR NOT q.restricted;
        RETURN QUERY SELECT * FROM jobs_claim_from_queue(q, max_jobs - taken, job_types);
        GET DIAGNOSTICS n = ROW_COUNT;
        taken := taken + n;
    END LOOP;
    IF taken >= max_jobs THEN
        RETURN;
    END IF;
    -- The unrestricted queues with runnable jobs: skip scans of the two group indexes
    -- (one probe a queue), restricted ones left out.
    WITH RECURSIVE u (queue) AS (
        (SELECT queue FROM jobs
         WHERE concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY queue, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT (SELECT queue FROM jobs
                WHERE queue > u.queue AND concurrency_key IS NULL
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY queue, run_at, priority, created_at LIMIT 1)
        FROM u WHERE u.queue IS NOT NULL
    )
    SELECT array_agg(u.queue) INTO open_queues FROM u
    WHERE u.queue IS NOT NULL AND u.queue <> ALL(restricted);
    WITH RECURSIVE u (queue) AS (
        (SELECT queue FROM jobs
         WHERE concurrency_key IS NOT NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY queue, concurrency_key, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT (SELECT queue FROM jobs
                WHERE queue > u.queue AND concurrency_key IS NOT NULL
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY queue, concurrency_key, run_at, priority, created_at LIMIT 1)
        FROM u WHERE u.queue IS NOT NULL
    )
    SELECT array_agg(u.queue) INTO keyed_queues FROM u
    WHERE u.queue IS NOT NULL AND u.queue <> ALL(restricted);
    -- The oldest due jobs among them: each queue's jobs without a key from its own
    -- index; keyed jobs of unrestricted queues (rare: a key matters only to a
    -- restricted queue) from the due index, filtered to those queues.
    RETURN QUERY
    SELECT c.* FROM (
        SELECT o.*
        FROM unnest(coalesce(open_queues, '{}')) AS u (queue)
        CROSS JOIN LATERAL jobs_due_in_group(u.queue, NULL, job_types, '{}', max_jobs - taken, true) AS o
        UNION ALL
        SELECT k.* FROM (
            SELECT * FROM jobs
            WHERE keyed_queues IS NOT NULL
              AND status IN ('pending', 'retrying') AND run_at <= now()
              AND type = ANY(job_types) AND queue = ANY(keyed_queues)
              AND concurrency_key IS NOT NULL
            ORDER BY run_at, priority, created_at
            LIMIT max_jobs - taken
            FOR UPDATE SKIP LOCKED
        ) AS k
    ) AS c
    ORDER BY c.run_at, c.priority, c.created_at
    LIMIT max_jobs - taken;
END;
$$;

REVOKE ALL ON FUNCTION jobs_claim_next(integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claim_next(integer, text[]) TO ledger_app;
REVOKE ALL ON FUNCTION jobs_claim_from_queue(queues, integer, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_due_in_group(text, text, text[], uuid[], integer, boolean) FROM PUBLIC;

-- Seconds until the claim could next take a job of `job_types` (the retry clock's
-- alarm). With no restricted queue: the earliest runnable job, as before. Otherwise
-- only jobs that became due in the last `lookback_seconds` (since the claim round that
-- just ran began) or are not due yet: every job due before it that the round left is
-- held back by its queue's settings (a full round asks for no alarm), and is woken by a NOTIFY
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
            IF FOUND AND b.tokens < 1 AND jobs_queue_has_due(q.name, job_types) THEN
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
