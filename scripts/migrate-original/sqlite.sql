-- Exports the original (Flask) system's SQLite database as an Amber backup, the JSON
-- lines `amber import` reads:
--
--   sqlite3 -batch -readonly original.db < scripts/migrate-original/sqlite.sql > backup.jsonl
--   amber import < backup.jsonl
--
-- Needs sqlite3 3.38 or later (JSON functions built in). One read transaction, so the
-- trailer's count matches the rows written. The original's UUIDs stay the records' ids
-- (Amber gives fresh ids and keeps the UUIDs: GET /api/leaders/<uuid> still answers).
-- Naive UTC times become RFC 3339 UTC; a time SQLite cannot read is passed on as it is,
-- and `amber import` then refuses the file naming the line. `handles`, `tracking_topics`
-- and `metrics` go through as JSON (null handle entries dropped). On any SQL error
-- (e.g. a `metrics` value that is not JSON) the script stops before the trailer, and
-- `amber import` refuses the cut-short file.
.bail on
.headers off
.mode list
.nullvalue ''
BEGIN;
-- RFC 3339 UTC from a naive UTC time ('2024-05-01 12:00:00', '2024-05-01T12:00:00.123456')
-- or one with a zone; anything else is left for `amber import` to name.
SELECT json_object(
  'kind', 'leader',
  'id', CAST(id AS TEXT),
  'name', name,
  'handles', json_patch('{}', coalesce(handles, '{}')),
  'trackingTopics', json(coalesce(tracking_topics, '[]')),
  'createdAt', CASE WHEN typeof(created_at) = 'text'
    THEN coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', created_at), created_at)
    ELSE created_at END
) FROM leaders;
SELECT json_object(
  'kind', 'post',
  'id', CAST(id AS TEXT),
  'leaderId', CAST(leader_id AS TEXT),
  'platform', coalesce(platform, 'X'),
  'content', coalesce(content, ''),
  'timestamp', CASE WHEN typeof(coalesce(timestamp, created_at)) = 'text'
    THEN coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(timestamp, created_at)),
                  coalesce(timestamp, created_at))
    ELSE coalesce(timestamp, created_at) END,
  'sentiment', coalesce(sentiment, 'Neutral'),
  'metrics', json(metrics),
  'verificationStatus', coalesce(verification_status, 'Needs Review')
) FROM posts;
SELECT json_object(
  'kind', 'review',
  'id', CAST(id AS TEXT),
  'postId', CAST(post_id AS TEXT),
  'state', CASE lower(replace(replace(trim(coalesce(state, 'pending')), ' ', '_'), '-', '_'))
    WHEN 'pending' THEN 'pending'
    WHEN 'needs_review' THEN 'pending'
    WHEN 'open' THEN 'pending'
    WHEN 'approved' THEN 'approved'
    WHEN 'verified' THEN 'approved'
    WHEN 'rejected' THEN 'rejected'
    ELSE state END,
  'notes', notes,
  'reviewedBy', reviewer,
  'reviewedAt', CASE WHEN typeof(reviewed_at) = 'text'
    THEN coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', reviewed_at), reviewed_at)
    ELSE reviewed_at END,
  'updatedAt', CASE WHEN typeof(coalesce(updated_at, reviewed_at)) = 'text'
    THEN coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(updated_at, reviewed_at)),
                  coalesce(updated_at, reviewed_at))
    ELSE coalesce(updated_at, reviewed_at) END
) FROM review_items;
SELECT json_object(
  'kind', 'trailer',
  'records', (SELECT count(*) FROM leaders) + (SELECT count(*) FROM posts)
    + (SELECT count(*) FROM review_items),
  'damagedSkipped', 0
);
COMMIT;
