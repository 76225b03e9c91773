-- TimescaleDB hypertables, when the extension is installed on the server; plain tables
-- otherwise (everything else works the same). Runs right after 0001, while the tables are
-- empty. To convert an existing plain database later: install TimescaleDB, then run
-- create_hypertable(..., migrate_data => true) on each table below.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        RAISE NOTICE 'TimescaleDB not available: plain tables';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        -- Our own indexes already cover (device, time) and time: no default indexes.
        PERFORM create_hypertable('detections', 'window_start',
            chunk_time_interval => interval '7 days', create_default_indexes => false,
            if_not_exists => true);
        PERFORM create_hypertable('levels', 'window_start',
            chunk_time_interval => interval '7 days', create_default_indexes => false,
            if_not_exists => true);
        PERFORM create_hypertable('level_summaries', 'window_start',
            chunk_time_interval => interval '30 days', create_default_indexes => false,
            if_not_exists => true);
        PERFORM create_hypertable('indices', 'window_start',
            chunk_time_interval => interval '30 days', create_default_indexes => false,
            if_not_exists => true);
        PERFORM create_hypertable('noise_events', 'window_start',
            chunk_time_interval => interval '30 days', create_default_indexes => false,
            if_not_exists => true);
    EXCEPTION
        -- Installed but not loadable (not in shared_preload_libraries) or not permitted:
        -- the whole conversion is rolled back and the tables stay plain; say so loudly.
        WHEN feature_not_supported OR insufficient_privilege OR object_not_in_prerequisite_state
            OR undefined_file OR undefined_function OR internal_error THEN
        RAISE WARNING 'TimescaleDB is available but could not be used (%): plain tables',
            SQLERRM;
    END;
END $$;
