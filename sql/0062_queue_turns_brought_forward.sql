-- A round-robin queue serves the least recently served key first, also to a claim of
-- one job: a key that drains alone has its turn brought forward when another key was
-- served since (sql/0059 wrote a lone key's turn once, so a key alone for a while kept
-- its first turn and went before every key served since). The newest turn of a queue
-- is read through an index of its own.

CREATE INDEX queue_key_turns_latest_idx ON queue_key_turns (queue, served_at);

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
        -- Alone, a group's turn is rewritten only when another group was served after
        -- it (else a key that drains alone would keep the turn of its first claim and
        -- go before a key served since, and a claim of one job would take its job).
        -- A row the condition excludes is not locked, so claimers of one key's
        -- backlog queue on its turn row once per other key's service, not per claim.
        UPDATE queue_key_turns AS t SET served_at = at
        WHERE t.queue = q.name AND t.concurrency_key = served[1]
          AND t.served_at < (SELECT max(o.served_at) FROM queue_key_turns AS o
                             WHERE o.queue = q.name);
        IF NOT FOUND THEN
            INSERT INTO queue_key_turns (queue, concurrency_key, served_at)
            VALUES (q.name, served[1], at)
            ON CONFLICT (queue, concurrency_key) DO NOTHING;
        END IF;
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
