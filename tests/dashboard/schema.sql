-- The tables of the schema contract (common brief), as the dashboard reads them.
-- A stand-in for ingest's migrations, used only when services/ingest provides none.
CREATE TABLE devices (
    id text PRIMARY KEY, name text, latitude double precision, longitude double precision,
    model text, calibration jsonb, sync_interval double precision,
    noise_threshold_db double precision, updated_at timestamptz
);
CREATE TABLE syncs (sync_id uuid PRIMARY KEY, sync_time timestamptz, source text, rows integer);
CREATE TABLE detections (
    label text, rating real, device text, sync_id uuid, sync_time timestamptz,
    window_start timestamptz, window_seq bigint, window_duration real, model text,
    rank smallint, speech_present boolean, inference_ms real,
    UNIQUE (device, window_start, model, label)
);
CREATE TABLE levels (
    device text, window_start timestamptz, window_seq bigint, window_duration real,
    leq_db double precision, laeq_db double precision, lceq_db double precision,
    peak_db double precision, dbfs double precision, bands jsonb, clipped boolean,
    gain_db double precision, sensitivity_dbv double precision, vadc double precision,
    uncalibrated boolean, sync_id uuid, sync_time timestamptz,
    PRIMARY KEY (device, window_start)
);
CREATE TABLE level_summaries (
    device text, window_start timestamptz, window_duration real, laeq_db double precision,
    lamax_db double precision, lamin_db double precision, l10_db double precision,
    l50_db double precision, l90_db double precision, coverage real, uncalibrated boolean,
    sync_id uuid, sync_time timestamptz,
    PRIMARY KEY (device, window_start, window_duration)
);
CREATE TABLE indices (
    device text, window_start timestamptz, window_duration real, aci double precision,
    adi double precision, aei double precision, bi double precision, ndsi double precision,
    ht double precision, hf double precision, events integer, sync_id uuid,
    sync_time timestamptz,
    PRIMARY KEY (device, window_start, window_duration)
);
CREATE TABLE noise_events (
    device text, window_start timestamptz, window_duration real, threshold_db double precision,
    laeq_db double precision, lamax_db double precision, classes jsonb, sync_id uuid,
    sync_time timestamptz,
    PRIMARY KEY (device, window_start)
);
CREATE TABLE gaps (
    id bigserial PRIMARY KEY, device text, kind text, first_start timestamptz,
    last_start timestamptz, count integer, recorded_at timestamptz, sync_id uuid,
    sync_time timestamptz
);
