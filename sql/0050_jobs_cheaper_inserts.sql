-- Submitting a job wrote an index no query reads and called a PL/pgSQL trigger per row; each costs every batch of submissions (measured with pg_stat_statements in bench).
-- jobs_runnable_idx (queue first) served no query: claims read across queues through
-- jobs_due_idx (0020), the list pages through jobs_created_idx and jobs_status_created_idx.
DROP INDEX jobs_runnable_idx;

-- New rows ring ledger_jobs once per statement, not once per row: a batch of 1,000
-- submissions made 1,000 PL/pgSQL calls for what PostgreSQL folds into one notification.
-- Updates keep their row trigger: its WHEN clause already filters in C, and claims and
-- completions (most updates) never call it.
DROP TRIGGER jobs_notify_runnable ON jobs;

CREATE TRIGGER jobs_notify_runnable
AFTER UPDATE ON jobs
FOR EACH ROW
WHEN (NEW.status IN ('pending', 'retrying'))
EXECUTE FUNCTION jobs_notify_runnable();

CREATE FUNCTION jobs_notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM inserted WHERE status IN ('pending', 'retrying')) THEN
        PERFORM pg_notify('ledger_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_inserted
AFTER INSERT ON jobs
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT
EXECUTE FUNCTION jobs_notify_inserted();
