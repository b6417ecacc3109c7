-- Bulk retry and cancel (issue #16, ledger.bulk) record their request id on each job's
-- event (`bulk_request_id` in job.retried.v1 and job.cancelled.v1 data): this index finds
-- a request's events, for the auditor's "what did request R do" and for the repeat of a
-- request id, which must change nothing more. Partial: the events that carry no request
-- id (every other event, the append's hot path) are not in it.
CREATE INDEX events_bulk_request_idx
    ON events (tenant, (data->>'bulk_request_id'))
    WHERE data ? 'bulk_request_id';
