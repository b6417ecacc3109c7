-- Signed checkpoints of the global feed: each states the digest of every event up to a feed cursor, signed with a key kept outside the database.
CREATE TABLE audit_checkpoints (
    checkpoint_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the feed cursor (txid, position) it covers up to, inclusive
    txid          bigint NOT NULL,
    position      bigint NOT NULL,
    event_count   bigint NOT NULL CHECK (event_count >= 0),
    -- d_n = sha256(d_{n-1} || hash_n) over events in feed order, from 32 zero bytes
    digest        bytea NOT NULL CHECK (octet_length(digest) = 32),
    -- the checkpoint it extends (zeros: the start of the feed) and the events since, as a witness
    base_txid     bigint NOT NULL,
    base_position bigint NOT NULL,
    base_count    bigint NOT NULL CHECK (base_count >= 0 AND base_count <= event_count),
    base_digest   bytea NOT NULL CHECK (octet_length(base_digest) = 32),
    witness       bytea NOT NULL,
    -- Ed25519 over 'job-ledger-checkpoint:v1:<txid>.<position>:<event_count>:<digest hex>'
    signature     bytea NOT NULL CHECK (octet_length(signature) = 64),
    key_id        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_checkpoints_cursor_idx ON audit_checkpoints (txid, position);

-- The application writes checkpoints and reads them; it never rewrites or removes one.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM ledger_app;
