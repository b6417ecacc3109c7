-- Queues are per tenant (issue #15): tenant A's queue "mail" and tenant B's "mail" are two queues, with two event streams, two settings, two token buckets and two sets of round-robin turns, so A's limit or pause never holds B's jobs.
-- A queue's settings row takes the tenant of its events (an event's tenant is its
-- stream's, sql/0063), and is keyed by (tenant, name); `stream_id` stays unique
-- because the stream ids of tenants other than `default` are salted with the tenant
-- (ledger/queues.py; default's are unchanged, so its existing streams and rows stay as
-- they are). The claim state (queue_buckets, queue_key_turns) is keyed the same way.
--
-- A job is held by the settings of its own tenant's queue of its name. The claim reads
-- a group (a queue's jobs without a key, or one key's) by walking that group's index
-- only, as before: both group indexes gain the tenant as their first column, and every
-- helper takes the tenant beside the queue. Workers name no tenant: they claim across
-- tenants, restricted queues in (tenant, name) order (one lock order for every
-- claimer). The unlimited fast path (jobs_claimable, while no queue anywhere has a
-- setting) is unchanged.

-- The queues' settings, keyed by tenant and name. Rows stored before are default's.
ALTER TABLE queues ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE queues ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE queues DROP CONSTRAINT queues_pkey;
ALTER TABLE queues ADD CONSTRAINT queues_pkey PRIMARY KEY (tenant, name);
DROP INDEX queues_restricted_idx;
CREATE INDEX queues_restricted_idx ON queues (tenant, name) WHERE restricted;

ALTER TABLE queue_buckets ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE queue_buckets ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE queue_buckets DROP CONSTRAINT queue_buckets_pkey;
ALTER TABLE queue_buckets ADD CONSTRAINT queue_buckets_pkey PRIMARY KEY (tenant, queue);

ALTER TABLE queue_key_turns ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE queue_key_turns ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE queue_key_turns DROP CONSTRAINT queue_key_turns_pkey;
ALTER TABLE queue_key_turns ADD CONSTRAINT queue_key_turns_pkey
    PRIMARY KEY (tenant, queue, concurrency_key);
DROP INDEX queue_key_turns_latest_idx;
CREATE INDEX queue_key_turns_latest_idx ON queue_key_turns (tenant, queue, served_at);

-- Due jobs by group, a group being now a tenant's queue (or one key of it): the same
-- predicates as sql/0059, the tenant first.
DROP INDEX jobs_queue_due_idx;
CREATE INDEX jobs_queue_due_idx ON jobs (tenant, queue, run_at, priority, created_at)
WHERE status NOT IN ('processing', 'completed', 'failed', 'cancelled') AND concurrency_key IS NULL;
DROP INDEX jobs_key_due_idx;
CREATE INDEX jobs_key_due_idx ON jobs (tenant, queue, concurrency_key, run_at, priority, created_at)
WHERE status NOT IN ('processing', 'completed', 'failed', 'cancelled') AND concurrency_key IS NOT NULL;

-- One fold step of a queue's settings (the same rule as ledger.queues.evolve); the row
-- is its events' tenant's.
CREATE OR REPLACE FUNCTION queue_view_step(s queues, e events) RETURNS queues
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n queues;
BEGIN
    IF s.name IS NULL AND e.version <> 1 THEN
        RAISE EXCEPTION 'event % for queue stream % before its first', e.type, e.job_id;
    END IF;
    n.tenant := e.tenant;
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

CREATE OR REPLACE FUNCTION queues_project_appended() RETURNS trigger
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
        INSERT INTO queues (tenant, name, stream_id, version, concurrency, rate_limit,
                            rate_period_seconds, rate_burst, per_key_concurrency, fairness,
                            paused, updated_by, updated_at)
        VALUES (s.tenant, s.name, s.stream_id, s.version, s.concurrency, s.rate_limit,
                s.rate_period_seconds, s.rate_burst, s.per_key_concurrency, s.fairness,
                s.paused, s.updated_by, s.updated_at)
        ON CONFLICT (tenant, name) DO UPDATE
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

-- The group helpers take the tenant (`tenant_id`: a parameter named like the column
-- would be read as the column).
DROP FUNCTION jobs_due_in_group(text, text, text[], uuid[], integer, boolean);
DROP FUNCTION jobs_groups_of(text);
DROP FUNCTION jobs_queue_has_due(text, text[]);

-- Up to `n` due jobs of one group of a tenant's queue (its jobs without a concurrency
-- key when `key` is NULL, else that key's), in claim order, not in `taken`; locked
-- when `lock`. Each read walks its group's own index in that index's order.
CREATE FUNCTION jobs_due_in_group(
    tenant_id text, q text, key text, job_types text[], taken uuid[], n integer, lock boolean
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
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, run_at, priority, created_at
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    ELSIF key IS NULL THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, run_at, priority, created_at
        LIMIT n;
    ELSIF lock THEN
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key = key
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    ELSE
        RETURN QUERY SELECT * FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key = key
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types) AND job_id <> ALL(taken)
        ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at
        LIMIT n;
    END IF;
END;
$$;

-- The groups of a tenant's queue with unfinished jobs (NULL: its jobs without a key,
-- first when it has any), by skip scans of the group indexes.
CREATE FUNCTION jobs_groups_of(tenant_id text, q text) RETURNS text[]
LANGUAGE sql STABLE
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    WITH RECURSIVE k (key) AS (
        (SELECT concurrency_key FROM jobs
         WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NOT NULL
           AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, concurrency_key LIMIT 1)
        UNION ALL
        SELECT (SELECT concurrency_key FROM jobs
                WHERE tenant = tenant_id AND queue = q AND concurrency_key > k.key
                  AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
                ORDER BY tenant, queue, concurrency_key LIMIT 1)
        FROM k WHERE k.key IS NOT NULL
    )
    SELECT CASE WHEN (
               SELECT true FROM jobs
               WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
                 AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
               ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
           ) THEN ARRAY[NULL::text] ELSE '{}'::text[] END
           || coalesce((SELECT array_agg(k.key) FROM k WHERE k.key IS NOT NULL), '{}')
$$;

-- Whether a tenant's queue has a job of `job_types` due now.
CREATE FUNCTION jobs_queue_has_due(tenant_id text, q text, job_types text[]) RETURNS boolean
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
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types)
        ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
    ), (
        SELECT true FROM jobs
        WHERE tenant = tenant_id AND queue = q AND concurrency_key IS NOT NULL
          AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
          AND run_at <= now() AND type = ANY(job_types)
        ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
    ), false)
$$;

REVOKE ALL ON FUNCTION jobs_due_in_group(text, text, text, text[], uuid[], integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_groups_of(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs_queue_has_due(text, text, text[]) FROM PUBLIC;

-- sql/0062's claim of one queue, its reads and writes keyed by the queue's tenant.
CREATE OR REPLACE FUNCTION jobs_claim_from_queue(q queues, room integer, job_types text[]) RETURNS SETOF jobs
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
        SELECT count(*) INTO running FROM jobs
        WHERE status = 'processing' AND tenant = q.tenant AND queue = q.name;
        room := least(room, q.concurrency - running);
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        SELECT * INTO b FROM queue_buckets WHERE tenant = q.tenant AND queue = q.name;
        IF NOT FOUND THEN
            b.tenant := q.tenant;
            b.queue := q.name;
            b.tokens := q.rate_burst;
            b.refilled_at := at;
            b.last_claimed := '{}';
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
        FROM unnest(jobs_groups_of(q.tenant, q.name)) AS g (key)
        LEFT JOIN queue_key_turns AS t
            ON t.tenant = q.tenant AND t.queue = q.name AND t.concurrency_key = coalesce(g.key, '')
        LEFT JOIN (
            SELECT concurrency_key AS key, count(*)::integer AS n FROM jobs
            WHERE status = 'processing' AND tenant = q.tenant AND queue = q.name GROUP BY 1
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
                        q.tenant, q.name, keys[i], job_types, taken, least(room, allowance[i]), true)
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
                    SELECT * INTO j
                    FROM jobs_due_in_group(q.tenant, q.name, keys[i], job_types, taken, 1, true);
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
                CROSS JOIN LATERAL jobs_due_in_group(
                    q.tenant, q.name, keys[a.i], job_types, taken, 1, false) AS h
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
        -- The turns, in serving order, written in key order (sql/0059, sql/0062).
        INSERT INTO queue_key_turns (tenant, queue, concurrency_key, served_at)
        SELECT q.tenant, q.name, s.key, at + make_interval(secs => max(s.turn) * 1e-6)
        FROM unnest(served) WITH ORDINALITY AS s (key, turn)
        GROUP BY s.key
        ORDER BY s.key
        ON CONFLICT (tenant, queue, concurrency_key) DO UPDATE
        SET served_at = excluded.served_at;
    ELSIF q.fairness = 'round_robin' AND cardinality(served) > 0 THEN
        -- Alone, a group's turn is rewritten only when another group was served after
        -- it (sql/0062).
        UPDATE queue_key_turns AS t SET served_at = at
        WHERE t.tenant = q.tenant AND t.queue = q.name AND t.concurrency_key = served[1]
          AND t.served_at < (SELECT max(o.served_at) FROM queue_key_turns AS o
                             WHERE o.tenant = q.tenant AND o.queue = q.name);
        IF NOT FOUND THEN
            INSERT INTO queue_key_turns (tenant, queue, concurrency_key, served_at)
            VALUES (q.tenant, q.name, served[1], at)
            ON CONFLICT (tenant, queue, concurrency_key) DO NOTHING;
        END IF;
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        INSERT INTO queue_buckets (tenant, queue, tokens, refilled_at, last_claimed)
        VALUES (q.tenant, q.name, b.tokens - coalesce(array_length(taken, 1), 0), at, taken)
        ON CONFLICT (tenant, queue) DO UPDATE
        SET tokens = excluded.tokens, refilled_at = excluded.refilled_at,
            last_claimed = CASE WHEN cardinality(excluded.last_claimed) > 0
                                THEN excluded.last_claimed ELSE queue_buckets.last_claimed END;
    END IF;
END;
$$;

-- sql/0059's claim across every tenant: each restricted (tenant, queue) with due jobs
-- in turn, in (tenant, name) order (the one lock order of every claimer), then the
-- unrestricted groups. A job is held by its own tenant's queue of its name only.
CREATE OR REPLACE FUNCTION jobs_claim_next(max_jobs integer, job_types text[]) RETURNS SETOF jobs
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    q queues;
    taken integer := 0;
    n integer;
    open_tenants text[];
    open_queues text[];
    keyed_groups text[];
BEGIN
    IF NOT EXISTS (SELECT FROM queues WHERE queues.restricted) THEN
        RETURN QUERY SELECT * FROM jobs_claimable(max_jobs, job_types);
        RETURN;
    END IF;
    FOR q IN
        SELECT * FROM queues AS c
        WHERE c.restricted AND NOT c.paused AND jobs_queue_has_due(c.tenant, c.name, job_types)
        ORDER BY c.tenant, c.name
    LOOP
        EXIT WHEN taken >= max_jobs;
        -- A limit serializes the claimers of its queue (each counts what runs and spends
        -- tokens after the last one committed); fairness alone needs no lock. Either way
        -- the settings are read as they are now.
        SELECT * INTO q FROM queues WHERE tenant = q.tenant AND name = q.name;
        CONTINUE WHEN NOT FOUND;
        IF q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL
           OR q.per_key_concurrency IS NOT NULL THEN
            SELECT * INTO q FROM queues WHERE tenant = q.tenant AND name = q.name FOR UPDATE;
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
    -- The unrestricted (tenant, queue) groups with runnable jobs: skip scans of the two
    -- group indexes (one probe a tenant's queue), restricted ones left out.
    WITH RECURSIVE u (tenant, queue) AS (
        (SELECT tenant, queue FROM jobs
         WHERE concurrency_key IS NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.tenant, x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT tenant, queue FROM jobs
            WHERE (tenant, queue) > (u.tenant, u.queue) AND concurrency_key IS NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    SELECT array_agg(u.tenant), array_agg(u.queue) INTO open_tenants, open_queues FROM u
    WHERE NOT EXISTS (SELECT FROM queues AS r
                      WHERE r.tenant = u.tenant AND r.name = u.queue AND r.restricted);
    WITH RECURSIVE u (tenant, queue) AS (
        (SELECT tenant, queue FROM jobs
         WHERE concurrency_key IS NOT NULL AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
         ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1)
        UNION ALL
        SELECT x.tenant, x.queue
        FROM u CROSS JOIN LATERAL (
            SELECT tenant, queue FROM jobs
            WHERE (tenant, queue) > (u.tenant, u.queue) AND concurrency_key IS NOT NULL
              AND status NOT IN ('processing', 'completed', 'failed', 'cancelled')
            ORDER BY tenant, queue, concurrency_key, run_at, priority, created_at LIMIT 1
        ) AS x
    )
    -- A group named by one string: neither a tenant id nor a queue name holds a newline.
    SELECT array_agg(u.tenant || E'\n' || u.queue) INTO keyed_groups FROM u
    WHERE NOT EXISTS (SELECT FROM queues AS r
                      WHERE r.tenant = u.tenant AND r.name = u.queue AND r.restricted);
    -- The oldest due jobs among them: each group's jobs without a key from its own
    -- index; keyed jobs of unrestricted queues (rare: a key matters only to a
    -- restricted queue) from the due index, filtered to those groups.
    RETURN QUERY
    SELECT c.* FROM (
        SELECT o.*
        FROM unnest(coalesce(open_tenants, '{}'), coalesce(open_queues, '{}')) AS u (tenant, queue)
        CROSS JOIN LATERAL jobs_due_in_group(
            u.tenant, u.queue, NULL, job_types, '{}', max_jobs - taken, true) AS o
        UNION ALL
        SELECT k.* FROM (
            SELECT * FROM jobs
            WHERE keyed_groups IS NOT NULL
              AND status IN ('pending', 'retrying') AND run_at <= now()
              AND type = ANY(job_types) AND tenant || E'\n' || queue = ANY(keyed_groups)
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

-- The retry clock's alarm (sql/0059), a rate-limited queue's bucket read by its tenant.
CREATE OR REPLACE FUNCTION jobs_next_due(job_types text[], lookback_seconds double precision)
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
            SELECT * INTO b FROM queue_buckets WHERE tenant = q.tenant AND queue = q.name;
            IF FOUND AND b.tokens < 1 AND jobs_queue_has_due(q.tenant, q.name, job_types) THEN
                soonest := least(soonest, b.refilled_at + make_interval(
                    secs => (1 - b.tokens) * q.rate_period_seconds / q.rate_limit));
            END IF;
        END LOOP;
    END IF;
    RETURN extract(epoch FROM soonest - clock_timestamp())::double precision;
END;
$$;

-- A job leaving `processing` in its tenant's restricted queue frees room: wake the
-- claimers.
CREATE OR REPLACE FUNCTION jobs_notify_room() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM queues WHERE restricted) AND EXISTS (
        SELECT FROM before_rows AS o
        JOIN after_rows AS n ON n.job_id = o.job_id
        JOIN queues AS q ON q.tenant = o.tenant AND q.name = o.queue
        WHERE o.status = 'processing' AND n.status <> 'processing' AND q.restricted
    ) THEN
        PERFORM pg_notify('ledger_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

-- Each rate-limited queue's tokens now (sql/0061), with its tenant.
DROP FUNCTION queue_buckets_tokens();
CREATE FUNCTION queue_buckets_tokens()
RETURNS TABLE (tenant text, queue text, tokens double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
SELECT b.tenant, b.queue,
       least(q.rate_burst::double precision,
             b.tokens + greatest(0, extract(epoch FROM clock_timestamp() - coalesce(
                 (SELECT greatest(b.refilled_at, max(j.started_at))
                  FROM jobs AS j WHERE j.job_id = ANY(b.last_claimed)),
                 b.refilled_at))) * q.rate_limit / q.rate_period_seconds)
FROM queue_buckets AS b
JOIN queues AS q ON q.tenant = b.tenant AND q.name = b.queue
WHERE q.rate_limit IS NOT NULL
ORDER BY b.tenant, b.queue;
$$;

REVOKE ALL ON FUNCTION queue_buckets_tokens() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue_buckets_tokens() TO ledger_app;
