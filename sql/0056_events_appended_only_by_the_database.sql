-- The database decides every stored event's position, chain link, hash, transaction id and time: an application role that could INSERT into events chose them (a far-future txid hid a forged event from the feed, the checkpoints and the bundles), so it now appends only through events_append, and writes nothing into the jobs view but what that append projects.
-- Replaces the INSERT of ledger/queries.sql's events_append (0001, 0004, 0041): the
-- same set-based statement, inside a SECURITY DEFINER function owned by the schema's
-- owner. The caller names what happened (job, version, type, actor, data); the
-- function computes the rest. An event's time is the statement's start, never before
-- its predecessor's (a clock stepped back cannot order a job's history backwards).
CREATE FUNCTION events_append(
    job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]
) RETURNS TABLE (
    "position" bigint, job_id uuid, version integer, txid bigint,
    occurred_at timestamptz, prev_hash bytea, hash bytea
)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO events (job_id, version, type, actor, occurred_at, data, prev_hash, hash)
    SELECT u.job_id, u.version, u.type, u.actor, t.at, u.data, p.prev_hash,
           sha256(p.prev_hash || event_canonical(u.type, u.job_id, u.version, u.actor, t.at, u.data))
    FROM unnest(job_ids, versions, types, actors, datas)
        AS u (job_id, version, type, actor, data)
    LEFT JOIN LATERAL (
        SELECT e.hash, e.occurred_at
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
    CROSS JOIN LATERAL (
        SELECT greatest(statement_timestamp(), prev.occurred_at) AS at
    ) AS t
    RETURNING position, job_id, version, txid::text::bigint, occurred_at, prev_hash, hash
$$;

REVOKE ALL ON FUNCTION events_append(uuid[], integer[], text[], text[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION events_append(uuid[], integer[], text[], text[], jsonb[]) TO ledger_app;

-- No direct INSERT (nor COPY, nor OVERRIDING SYSTEM VALUE) into events.
REVOKE INSERT ON events FROM ledger_app;

-- The jobs view is written only by the append's own projection (the trigger runs as
-- the function's owner). Rebuilding it is the owner's (`ledger projections rebuild`).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON jobs FROM ledger_app;

-- The claim locks the rows it takes (FOR UPDATE needs UPDATE on jobs): it runs as the
-- owner too; it changes no row.
ALTER FUNCTION jobs_claimable(integer, text[])
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION jobs_claimable(integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_claimable(integer, text[]) TO ledger_app;
