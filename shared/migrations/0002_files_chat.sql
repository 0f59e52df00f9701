-- A file may belong to a chat (uploaded into it): deleting the chat deletes the file too.
-- The application removes the S3 objects first and then the chat, whose delete cascades here.
ALTER TABLE files ADD COLUMN chat_id uuid REFERENCES chats (id) ON DELETE CASCADE;
CREATE INDEX files_chat_idx ON files (chat_id) WHERE chat_id IS NOT NULL;
