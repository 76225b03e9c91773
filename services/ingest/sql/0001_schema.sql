-- The soundscape schema: the contract between ingest (which writes) and the dashboard and
-- other readers. Columns may be added by later migrations; none listed here is renamed or
-- removed. Times are timestamptz (UTC); levels are dB; see docs/ingest.md.

CREATE TABLE devices (
    id text PRIMARY KEY,
    name text,
    latitude double precision,
    longitude double precision,
    model text,
    calibration jsonb,
    sync_interval double precision,
    noise_threshold_db double precision,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE syncs (
    sync_id uuid PRIMARY KEY,
    sync_time timestamptz NOT NULL,
    source text NOT NULL,
    rows integer NOT NULL,
    offered integer NOT NULL DEFAULT 0,
    results integer NOT NULL DEFAULT 0,
    gaps integer NOT NULL DEFAULT 0
);
CREATE INDEX syncs_time ON syncs (sync_time);

-- One row per label of a labels result: the original prototype's label, rating, device,
-- sync_id, sync_time, plus the window key and the model.
CREATE TABLE detections (
    label text NOT NULL,
    rating real NOT NULL,
    device text NOT NULL,
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL,
    window_start timestamptz NOT NULL,
    window_seq bigint NOT NULL,
    window_duration real NOT NULL,
    model text NOT NULL,
    rank smallint NOT NULL,
    speech_present boolean,
    inference_ms real,
    CONSTRAINT detections_key UNIQUE (device, window_start, model, label)
);
CREATE INDEX detections_time ON detections (window_start DESC);
CREATE INDEX detections_label_time ON detections (label, window_start DESC);
CREATE INDEX detections_sync_time ON detections (sync_time);

CREATE TABLE levels (
    device text NOT NULL,
    window_start timestamptz NOT NULL,
    window_seq bigint NOT NULL,
    window_duration real NOT NULL,
    leq_db double precision NOT NULL,
    laeq_db double precision,
    lceq_db double precision,
    peak_db double precision,
    dbfs double precision,
    bands jsonb,
    clipped boolean NOT NULL DEFAULT false,
    gain_db double precision,
    sensitivity_dbv double precision,
    vadc double precision,
    uncalibrated boolean NOT NULL,
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL,
    CONSTRAINT levels_pkey PRIMARY KEY (device, window_start)
);
CREATE INDEX levels_time ON levels (window_start DESC);

CREATE TABLE level_summaries (
    device text NOT NULL,
    window_start timestamptz NOT NULL,
    window_seq bigint NOT NULL,
    window_duration real NOT NULL,
    laeq_db double precision NOT NULL,
    lamax_db double precision NOT NULL,
    lamin_db double precision NOT NULL,
    l10_db double precision NOT NULL,
    l50_db double precision NOT NULL,
    l90_db double precision NOT NULL,
    coverage double precision NOT NULL,
    uncalibrated boolean NOT NULL,
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL,
    CONSTRAINT level_summaries_pkey PRIMARY KEY (device, window_start, window_duration)
);
CREATE INDEX level_summaries_time ON level_summaries (window_start DESC);

CREATE TABLE indices (
    device text NOT NULL,
    window_start timestamptz NOT NULL,
    window_seq bigint NOT NULL,
    window_duration real NOT NULL,
    aci double precision,
    adi double precision,
    aei double precision,
    bi double precision,
    ndsi double precision,
    ht double precision,
    hf double precision,
    events bigint,
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL,
    CONSTRAINT indices_pkey PRIMARY KEY (device, window_start, window_duration)
);
CREATE INDEX indices_time ON indices (window_start DESC);

CREATE TABLE noise_events (
    device text NOT NULL,
    window_start timestamptz NOT NULL,
    window_seq bigint NOT NULL,
    window_duration real NOT NULL,
    threshold_db double precision NOT NULL,
    laeq_db double precision NOT NULL,
    lamax_db double precision NOT NULL,
    classes jsonb NOT NULL DEFAULT '[]',
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL,
    CONSTRAINT noise_events_pkey PRIMARY KEY (device, window_start)
);
CREATE INDEX noise_events_time ON noise_events (window_start DESC);

-- Results known to be lost: `count` windows of `device` with starts in [first_start,
-- last_start]. `kind` says why ('spool_overflow': ingest's spool was full and dropped its
-- oldest results); `result` is the topic leaf of what was lost (labels, levels...) if known.
CREATE TABLE gaps (
    id bigserial PRIMARY KEY,
    uid uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    device text NOT NULL,
    kind text NOT NULL,
    result text,
    first_start timestamptz NOT NULL,
    last_start timestamptz NOT NULL,
    count integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL
);
CREATE INDEX gaps_device_time ON gaps (device, first_start);
