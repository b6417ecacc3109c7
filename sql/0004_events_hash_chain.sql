-- Each event's hash is computed by the database from the bytes it stores, so the chain is recomputable from the table alone.
-- Mirrors ledger.events.canonical_bytes: type, job id, version, length-prefixed actor,
-- UTC time to the microsecond, and PostgreSQL's canonical text of the jsonb data.
CREATE FUNCTION event_canonical(
    type text, job_id uuid, version integer, actor text, occurred_at timestamptz, data jsonb
) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT convert_to(
        type || E'\n' || job_id::text || E'\n' || version::text || E'\n'
        || length(actor)::text || ':' || actor || E'\n'
        || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || E'\n'
        || data::text,
        'UTF8'
    )
$$;

ALTER TABLE events ADD CONSTRAINT events_type_format CHECK (type ~ '^[a-z_.]+\.v[0-9]+$');
