-- Wake-ups for the worker pool: NOTIFY when runnable work appears or a running job is cancelled (a wake-up only, never data).
-- ledger_jobs carries an empty payload, so PostgreSQL folds all of one transaction's
-- notifications into one; ledger_cancel carries only the cancelled job's id.
CREATE FUNCTION jobs_notify_runnable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR OLD.status IS DISTINCT FROM NEW.status
       OR OLD.run_at IS DISTINCT FROM NEW.run_at THEN
        PERFORM pg_notify('ledger_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_runnable
AFTER INSERT OR UPDATE ON jobs
FOR EACH ROW
WHEN (NEW.status IN ('pending', 'retrying'))
EXECUTE FUNCTION jobs_notify_runnable();

CREATE FUNCTION jobs_notify_cancelled() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ledger_cancel', NEW.job_id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_cancelled
AFTER UPDATE OF status ON jobs
FOR EACH ROW
WHEN (OLD.status = 'processing' AND NEW.status = 'cancelled')
EXECUTE FUNCTION jobs_notify_cancelled();
