-- IFlyChat schema, version 3: cost flags on usage rows, and the per-user AI quota counters.

-- false when the model was not in the price table (its cost_usd is then 0, not a real price).
ALTER TABLE ai_usage ADD COLUMN priced boolean NOT NULL DEFAULT true;

-- One row per user, changed only by INSERT ... ON CONFLICT DO UPDATE ... WHERE <fits>: the row
-- lock makes check-and-reserve atomic, so concurrent requests cannot overdraw the budget.
-- day_tokens counts the UTC day's settled usage plus the reservations of calls still running.
CREATE TABLE ai_quota (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    day           date NOT NULL,
    day_tokens    bigint NOT NULL DEFAULT 0 CHECK (day_tokens >= 0),
    window_start  timestamptz NOT NULL,
    window_calls  integer NOT NULL DEFAULT 0 CHECK (window_calls >= 0)
);
