-- The files a user's message named (by file_url or file_ids), resolved when it was stored, so a
-- regenerate answers with the same documents the original answer saw.
ALTER TABLE messages ADD COLUMN file_ids uuid[] NOT NULL DEFAULT '{}';
