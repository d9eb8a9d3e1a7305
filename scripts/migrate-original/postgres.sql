-- Exports the original (Flask) system's Postgres database as an Amber backup, the JSON
-- lines `amber import` reads:
--
--   psql -At "$DATABASE_URL" -f scripts/migrate-original/postgres.sql > backup.jsonl
--   amber import < backup.jsonl
--
-- One read-only REPEATABLE READ transaction, so the trailer's count matches the rows
-- written. The original's UUIDs stay the records' ids (Amber gives fresh ids and keeps
-- the UUIDs: GET /api/leaders/<uuid> still answers). Times (naive UTC `timestamp`, or
-- text) become RFC 3339 UTC; `handles`, `tracking_topics` and `metrics` (json, jsonb or
-- text) go through as JSON, null handle entries dropped. On any error the script stops
-- before the trailer, and `amber import` refuses the cut-short file.
\set QUIET on
\set ON_ERROR_STOP on
\pset format unaligned
\pset tuples_only on
SET TIME ZONE 'UTC';
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT json_build_object(
  'kind', 'leader',
  'id', id::text,
  'name', name,
  'handles', jsonb_strip_nulls(coalesce(handles::jsonb, '{}')),
  'trackingTopics', coalesce(tracking_topics::jsonb, '[]'),
  'createdAt', to_char(created_at::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
) FROM leaders;
SELECT json_build_object(
  'kind', 'post',
  'id', id::text,
  'leaderId', leader_id::text,
  'platform', coalesce(platform, 'X'),
  'content', coalesce(content, ''),
  'timestamp', to_char(coalesce(timestamp::timestamp, created_at::timestamp),
                       'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  'sentiment', coalesce(sentiment, 'Neutral'),
  'metrics', metrics::json,
  'verificationStatus', coalesce(verification_status, 'Needs Review')
) FROM posts;
SELECT json_build_object(
  'kind', 'review',
  'id', id::text,
  'postId', post_id::text,
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
  'reviewedAt', to_char(reviewed_at::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  'updatedAt', to_char(coalesce(updated_at::timestamp, reviewed_at::timestamp),
                       'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
) FROM review_items;
SELECT json_build_object(
  'kind', 'trailer',
  'records', (SELECT count(*) FROM leaders) + (SELECT count(*) FROM posts)
    + (SELECT count(*) FROM review_items),
  'damagedSkipped', 0
);
COMMIT;
