-- The ledger: one immutable row per job transition, hash-chained per job; the only source of truth.
CREATE TABLE events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid NOT NULL,
    version     integer NOT NULL CHECK (version >= 1),
    type        text NOT NULL,
    data        jsonb NOT NULL,
    actor       text NOT NULL CHECK (actor <> ''),
    occurred_at timestamptz NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    prev_hash   bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT events_job_id_version_key UNIQUE (job_id, version)
);

-- The global feed pages by (txid, position): stable, and final below the snapshot's xmin.
CREATE INDEX events_txid_position_idx ON events (txid, position);
CREATE INDEX events_occurred_at_idx ON events (occurred_at);
