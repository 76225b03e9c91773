-- Gaps reported by the services that lost audio (GapReport, topic {prefix}/{device}/gaps) and
-- the broker's drops go into the gaps table beside ingest's own spool overflows. `kind` is
-- the cause (docs/ingest.md lists them); for a reported gap first_start/last_start are the
-- start and end of the lost audio. `node` is the service node that lost it (null for rows
-- written by ingest itself). `count` (samples, chunks or windows, by cause) may be unknown,
-- and capture counts samples: bigint. `uid` is derived from the report, so a report
-- delivered twice is stored once (ON CONFLICT (uid) DO NOTHING).
ALTER TABLE gaps ADD COLUMN IF NOT EXISTS node text;
ALTER TABLE gaps ALTER COLUMN count TYPE bigint;
ALTER TABLE gaps ALTER COLUMN count DROP NOT NULL;
CREATE INDEX IF NOT EXISTS gaps_kind_time ON gaps (kind, first_start);
