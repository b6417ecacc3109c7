-- The database itself refuses UPDATE, DELETE and TRUNCATE on events; the application role cannot lift it.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'history is never edited; append a new event instead';
END;
$$;

CREATE TRIGGER events_no_update_delete
BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
BEFORE TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- The application runs as a member of ledger_app, which owns nothing: it cannot
-- disable triggers (owner only) and holds no UPDATE, DELETE or TRUNCATE on events.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_app') THEN
        CREATE ROLE ledger_app NOLOGIN;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO ledger_app;
GRANT SELECT, INSERT ON events TO ledger_app;
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM ledger_app;

-- Tables created by later migrations are the application's to read and write.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ledger_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO ledger_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO ledger_app;
