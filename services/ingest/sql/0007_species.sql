-- Bird species BirdNET detected (SpeciesResult, topic {prefix}/{device}/species): one row per
-- species of a window, ranked by score (1: highest). Keyed like every window result by the
-- window (device, window_start) and, as labels are, the model, plus the species: a result
-- delivered twice is stored once (ON CONFLICT (device, window_start, model, scientific_name)
-- DO NOTHING). Not partitioned: detections are sparse (only windows with a species above
-- the minimum confidence publish one).
CREATE TABLE IF NOT EXISTS species (
    device text NOT NULL,
    window_start timestamptz NOT NULL,
    window_seq bigint NOT NULL,
    window_duration real NOT NULL,
    model text NOT NULL,
    scientific_name text NOT NULL,
    common_name text NOT NULL,
    score real NOT NULL,
    rank smallint NOT NULL,
    min_confidence real NOT NULL,
    location_filtered boolean NOT NULL,
    inference_ms real,
    sync_id uuid NOT NULL,
    sync_time timestamptz NOT NULL,
    CONSTRAINT species_pkey PRIMARY KEY (device, window_start, model, scientific_name)
);
CREATE INDEX IF NOT EXISTS species_time ON species (window_start DESC);
CREATE INDEX IF NOT EXISTS species_name_time ON species (scientific_name, window_start DESC);
