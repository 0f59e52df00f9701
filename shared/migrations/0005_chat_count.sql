-- Each user's number of chats, kept by triggers, so GET /chats reports `total` without
-- counting the user's chats on every call (the cost of a count grows with the chats; this not).
ALTER TABLE users ADD COLUMN chat_count integer NOT NULL DEFAULT 0 CHECK (chat_count >= 0);

UPDATE users u SET chat_count = c.n FROM (SELECT user_id, count(*) AS n FROM chats GROUP BY user_id) c
WHERE c.user_id = u.id;

CREATE FUNCTION chats_count_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE users SET chat_count = chat_count + 1 WHERE id = NEW.user_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE users SET chat_count = chat_count - 1 WHERE id = OLD.user_id;
    ELSIF NEW.user_id IS DISTINCT FROM OLD.user_id THEN
        UPDATE users SET chat_count = chat_count - 1 WHERE id = OLD.user_id;
        UPDATE users SET chat_count = chat_count + 1 WHERE id = NEW.user_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER chats_count AFTER INSERT OR DELETE OR UPDATE OF user_id ON chats
FOR EACH ROW EXECUTE FUNCTION chats_count_trigger();
