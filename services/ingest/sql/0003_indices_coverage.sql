-- Fraction of an indices window that had audio (IndicesResult.coverage, 0..1); null for
-- rows stored before it existed or sent by a producer that does not fill it. Sums such as
-- aci read lower over a partial window. Nullable and appended, like every later column, so
-- ingest can still store rows spooled by an older version (see schema.Table.complete).
-- The reader's table-level SELECT and the writer's table-level INSERT cover it.
ALTER TABLE indices ADD COLUMN IF NOT EXISTS coverage real;
