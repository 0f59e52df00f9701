-- Login back-off (shared/throttle.py): one row per login attempt that has not succeeded, per
-- scope ('account': the email tried, known or not; 'client': the caller's source IP). Keys are
-- SHA-256 digests, so neither emails nor addresses of strangers are stored in the clear.
-- A successful login deletes its account's rows and its own client row; rows older than the
-- sliding window are pruned as new attempts arrive.
CREATE TABLE login_attempts (
    id          uuid PRIMARY KEY,
    scope       text NOT NULL CHECK (scope IN ('account', 'client')),
    key         text NOT NULL CHECK (char_length(key) = 64),
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_key_idx ON login_attempts (scope, key, attempted_at);
CREATE INDEX login_attempts_age_idx ON login_attempts (attempted_at);
