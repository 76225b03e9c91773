-- Raw levels and labels packed one row per device and UTC minute (docs/ingest.md, "The
-- database schema"): each column an array with one element per window of that minute, so a
-- row is a few kilobytes that TOAST compresses (pglz), and the per-row overhead (tuple
-- header, line pointer, index entry) is paid once a minute instead of once a second.
-- Band levels are stored as smallint centi-dB (0.01 dB resolution), label scores as
-- smallint ten-thousandths. `levels`, `labels` and `detections` stay readable, with the
-- same columns and types, as views; each window's key is still stored once (ingest skips a
-- window whose offset is already in its minute's row, under a per-device advisory lock; the
-- views' INSERT triggers refuse it). Rollups become partitioned by UTC month (so retention
-- can drop them), and levels_minute / levels_hourly gain per-band energetic means.
-- Existing rows are moved here.

-- Quantisation (one definition, used by ingest, the triggers, the migration and the views);
-- values beyond the range are clamped to it, null stays null.
CREATE FUNCTION soundscape_centi(db double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN db IS NOT NULL THEN round(least(greatest(db, -327.67), 327.67) * 100)::smallint END
$$;
CREATE FUNCTION soundscape_score(s double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s IS NOT NULL THEN round(least(greatest(s, 0), 3.2767) * 10000)::smallint END
$$;
-- The jsonb band map of a levels message as smallint centi-dB in band order: always 41
-- elements (all null when the message had no bands), so they stack into a 2-D array.
CREATE FUNCTION soundscape_pack_bands(b jsonb) RETURNS smallint[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT soundscape_centi((b ->> n.name)::double precision)
                 FROM public.band_names n ORDER BY n.i)
$$;
-- The same from a real[] (the levels view's type, for its INSERT trigger).
CREATE FUNCTION soundscape_pack_bands(b real[]) RETURNS smallint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT soundscape_centi(b[k]) FROM generate_series(1, 41) AS k)
$$;
-- Row i of a packed n x 41 band array as real[] dB; null when all of it is null.
CREATE FUNCTION soundscape_unpack_bands(b smallint[], i bigint) RETURNS real[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN count(v) > 0 THEN array_agg((v / 100.0::float8)::real ORDER BY k) END
    FROM unnest(b[i:i][1:41]) WITH ORDINALITY AS u(v, k)
$$;
CREATE FUNCTION soundscape_unpack_scores(s smallint[]) RETURNS real[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg((v / 10000.0::float8)::real ORDER BY k) FROM unnest(s) WITH ORDINALITY AS u(v, k)
$$;
-- Offset of a window start in its UTC minute, in microseconds.
CREATE FUNCTION soundscape_offset(t timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM t - date_trunc('minute', t, 'UTC')) * 1000000)::integer
$$;
-- `e` with `by` added to every element (label-array end indices of an appended row).
CREATE FUNCTION soundscape_shift(e smallint[], by integer) RETURNS smallint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg((v + by)::smallint ORDER BY k) FROM unnest(e) WITH ORDINALITY AS u(v, k)
$$;

CREATE TABLE levels_packed (
    device text NOT NULL,
    minute timestamptz NOT NULL,
    offsets_us integer[] NOT NULL,
    seqs bigint[] NOT NULL,
    durations real[] NOT NULL,
    leq_db real[] NOT NULL,
    laeq_db real[] NOT NULL,
    lceq_db real[] NOT NULL,
    peak_db real[] NOT NULL,
    dbfs real[] NOT NULL,
    bands smallint[] NOT NULL,
    clipped boolean[] NOT NULL,
    gain_db real[] NOT NULL,
    sensitivity_dbv real[] NOT NULL,
    vadc real[] NOT NULL,
    uncalibrated boolean[] NOT NULL,
    sync_ids uuid[] NOT NULL,
    sync_times timestamptz[] NOT NULL,
    CONSTRAINT levels_packed_pkey PRIMARY KEY (device, minute)
) PARTITION BY RANGE (minute);

-- Labels of window i: label_ids[ends[i-1] + 1 : ends[i]] (ends[0] taken as 0), rank order.
CREATE TABLE labels_packed (
    device text NOT NULL,
    minute timestamptz NOT NULL,
    model text NOT NULL,
    offsets_us integer[] NOT NULL,
    seqs bigint[] NOT NULL,
    durations real[] NOT NULL,
    ends smallint[] NOT NULL,
    label_ids smallint[] NOT NULL,
    scores smallint[] NOT NULL,
    speech_present boolean[] NOT NULL,
    inference_ms real[] NOT NULL,
    sync_ids uuid[] NOT NULL,
    sync_times timestamptz[] NOT NULL,
    CONSTRAINT labels_packed_pkey PRIMARY KEY (device, minute, model)
) PARTITION BY RANGE (minute);

CREATE TABLE levels_packed_default PARTITION OF levels_packed DEFAULT
    WITH (toast_tuple_target = 128);
CREATE TABLE labels_packed_default PARTITION OF labels_packed DEFAULT
    WITH (toast_tuple_target = 128);

-- Rollups, partitioned by UTC month of bucket (retention drops whole months).
DROP FUNCTION soundscape_recompute_rollups();
ALTER TABLE levels_minute RENAME TO levels_minute_old;
ALTER TABLE levels_hourly RENAME TO levels_hourly_old;
ALTER TABLE labels_hourly RENAME TO labels_hourly_old;
ALTER TABLE summaries_hourly RENAME TO summaries_hourly_old;
ALTER TABLE indices_hourly RENAME TO indices_hourly_old;

-- bands: energetic mean per band (band_names order) over the bucket's windows with a value
-- for that band, each weighted by its duration; band_seconds: the most seconds any band has
-- a value for (the weight of the means when they are combined; the seconds of the windows
-- with bands when, as from the levels service, every such window has the same bands).
CREATE TABLE levels_minute (
    device text NOT NULL,
    bucket timestamptz NOT NULL,
    seconds double precision NOT NULL,
    leq_energy double precision NOT NULL,
    laeq_seconds double precision NOT NULL,
    laeq_energy double precision NOT NULL,
    lceq_seconds double precision NOT NULL,
    lceq_energy double precision NOT NULL,
    windows integer NOT NULL,
    band_seconds double precision NOT NULL DEFAULT 0,
    bands real[],
    PRIMARY KEY (device, bucket)
) PARTITION BY RANGE (bucket);
CREATE TABLE levels_hourly (LIKE levels_minute INCLUDING ALL) PARTITION BY RANGE (bucket);
CREATE TABLE labels_hourly (LIKE labels_hourly_old INCLUDING ALL) PARTITION BY RANGE (bucket);
CREATE TABLE summaries_hourly (LIKE summaries_hourly_old INCLUDING ALL)
    PARTITION BY RANGE (bucket);
CREATE TABLE indices_hourly (LIKE indices_hourly_old INCLUDING ALL) PARTITION BY RANGE (bucket);
DROP TABLE levels_minute_old, levels_hourly_old, labels_hourly_old, summaries_hourly_old,
    indices_hourly_old;
-- Labelled windows per device, hour and model: how many and their seconds (the
-- dashboard's classification coverage over long ranges).
CREATE TABLE labelled_hourly (
    device text NOT NULL,
    bucket timestamptz NOT NULL,
    model text NOT NULL,
    windows integer NOT NULL,
    seconds double precision NOT NULL,
    PRIMARY KEY (device, bucket, model)
) PARTITION BY RANGE (bucket);
CREATE TABLE labelled_hourly_default PARTITION OF labelled_hourly DEFAULT;
CREATE TABLE levels_minute_default PARTITION OF levels_minute DEFAULT;
CREATE TABLE levels_hourly_default PARTITION OF levels_hourly DEFAULT;
CREATE TABLE labels_hourly_default PARTITION OF labels_hourly DEFAULT;
CREATE TABLE summaries_hourly_default PARTITION OF summaries_hourly DEFAULT;
CREATE TABLE indices_hourly_default PARTITION OF indices_hourly DEFAULT;

-- The combination of two band means weighted by their seconds (a rollup row and what a
-- batch adds to it); an element null on one side takes the other's.
CREATE FUNCTION soundscape_band_merge(a real[], wa double precision, b real[],
                                      wb double precision) RETURNS real[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN a IS NULL OR wa <= 0 THEN b WHEN b IS NULL OR wb <= 0 THEN a ELSE
        (SELECT array_agg(CASE WHEN x IS NULL THEN y WHEN y IS NULL THEN x ELSE
                (10 * log10((wa * power(10::float8, x / 10.0) + wb * power(10::float8, y / 10.0))
                            / (wa + wb)))::real END ORDER BY k)
         FROM unnest(a, b) WITH ORDINALITY AS u(x, y, k)) END
$$;

-- Partitions: day partitions of levels_packed / labels_packed, and month partitions of the
-- rollups for the months of those days; the number created. Rows that had landed in a
-- default partition are moved into the new partition.
DROP FUNCTION soundscape_ensure_partitions(date[]);
CREATE FUNCTION soundscape_ensure_partitions(days date[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    d date;
    spec record;
    part text;
    lo timestamptz;
    hi timestamptz;
    stray boolean;
    made integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('soundscape_ensure_partitions'));
    FOR d IN SELECT DISTINCT u FROM unnest(days) AS u WHERE u IS NOT NULL ORDER BY 1 LOOP
        FOR spec IN SELECT * FROM (VALUES
                ('levels_packed', 'minute', 'day'), ('labels_packed', 'minute', 'day'),
                ('levels_minute', 'bucket', 'month'), ('levels_hourly', 'bucket', 'month'),
                ('labels_hourly', 'bucket', 'month'), ('summaries_hourly', 'bucket', 'month'),
                ('indices_hourly', 'bucket', 'month'), ('labelled_hourly', 'bucket', 'month'))
                AS s(parent, col, unit) LOOP
            lo := date_trunc(spec.unit, d::timestamp) AT TIME ZONE 'UTC';
            hi := lo + ('1 ' || spec.unit)::interval;
            part := spec.parent || '_p' || to_char(lo AT TIME ZONE 'UTC',
                CASE spec.unit WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END);
            CONTINUE WHEN to_regclass(part) IS NOT NULL;
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= %L AND %I < %L)',
                spec.parent || '_default', spec.col, lo, spec.col, hi) INTO stray;
            IF stray THEN
                EXECUTE format('CREATE TEMPORARY TABLE soundscape_moved ON COMMIT DROP '
                    'AS SELECT * FROM %I WITH NO DATA', spec.parent);
                EXECUTE format('WITH m AS (DELETE FROM %I WHERE %I >= %L AND %I < %L '
                    'RETURNING *) INSERT INTO soundscape_moved SELECT * FROM m',
                    spec.parent || '_default', spec.col, lo, spec.col, hi);
            END IF;
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)%s',
                part, spec.parent, lo, hi, CASE WHEN spec.unit = 'day'
                THEN ' WITH (toast_tuple_target = 128)' ELSE '' END);
            IF stray THEN
                EXECUTE format('INSERT INTO %I SELECT * FROM soundscape_moved', spec.parent);
                DROP TABLE soundscape_moved;
            END IF;
            made := made + 1;
        END LOOP;
    END LOOP;
    RETURN made;
END $$;
REVOKE ALL ON FUNCTION soundscape_ensure_partitions(date[]) FROM PUBLIC;

-- The views: one row per window, the columns and types of the 0005 tables, plus `minute`
-- (the UTC minute of window_start): a filter on it prunes partitions and reads only the
-- rows wanted, a filter on window_start alone unpacks every row (or use levels_between /
-- labels_between / detections_between below).
DROP VIEW detections;
DROP FUNCTION detections_insert();
ALTER TABLE levels RENAME TO levels_0005;
ALTER TABLE labels RENAME TO labels_0005;

CREATE VIEW levels AS
SELECT p.device, p.minute + u.off * interval '1 microsecond' AS window_start,
       u.seq AS window_seq, u.dur AS window_duration, u.leq::float8 AS leq_db,
       u.laeq::float8 AS laeq_db, u.lceq::float8 AS lceq_db, u.peak::float8 AS peak_db,
       u.dbfs::float8 AS dbfs, soundscape_unpack_bands(p.bands, u.i) AS bands, u.clipped,
       u.gain::float8 AS gain_db, u.sens::float8 AS sensitivity_dbv, u.vadc::float8 AS vadc,
       u.uncal AS uncalibrated, u.sid AS sync_id, u.st AS sync_time, p.minute
FROM levels_packed p
CROSS JOIN LATERAL unnest(p.offsets_us, p.seqs, p.durations, p.leq_db, p.laeq_db, p.lceq_db,
    p.peak_db, p.dbfs, p.clipped, p.gain_db, p.sensitivity_dbv, p.vadc, p.uncalibrated,
    p.sync_ids, p.sync_times) WITH ORDINALITY
    AS u(off, seq, dur, leq, laeq, lceq, peak, dbfs, clipped, gain, sens, vadc, uncal, sid, st, i);

CREATE VIEW labels AS
SELECT p.device, p.minute + u.off * interval '1 microsecond' AS window_start,
       u.seq AS window_seq, u.dur AS window_duration, p.model,
       p.label_ids[coalesce(p.ends[u.i - 1], 0) + 1 : u.e] AS label_ids,
       soundscape_unpack_scores(p.scores[coalesce(p.ends[u.i - 1], 0) + 1 : u.e]) AS scores,
       u.speech AS speech_present, u.ms AS inference_ms, u.sid AS sync_id, u.st AS sync_time,
       p.minute
FROM labels_packed p
CROSS JOIN LATERAL unnest(p.offsets_us, p.seqs, p.durations, p.ends, p.speech_present,
    p.inference_ms, p.sync_ids, p.sync_times) WITH ORDINALITY
    AS u(off, seq, dur, e, speech, ms, sid, st, i);

-- The prototype's rows, one per label, as in 0005 (plus `minute`).
CREATE VIEW detections AS
SELECT n.name AS label, u.rating, l.device, l.sync_id, l.sync_time, l.window_start,
       l.window_seq, l.window_duration, l.model, u.rank::smallint AS rank, l.speech_present,
       l.inference_ms, l.minute
FROM labels l
CROSS JOIN LATERAL unnest(l.label_ids, l.scores) WITH ORDINALITY AS u(label_id, rating, rank)
JOIN label_names n ON n.id = u.label_id;

-- The rows of `devices` in [lo, hi), reading only the minutes of that range (inlined by the
-- planner: partitions outside it are pruned).
CREATE FUNCTION levels_between(devices text[], lo timestamptz, hi timestamptz)
RETURNS SETOF levels LANGUAGE sql STABLE AS $$
    SELECT * FROM levels WHERE device = ANY(devices)
      AND minute >= date_trunc('minute', lo, 'UTC') AND minute < hi
      AND window_start >= lo AND window_start < hi
$$;
CREATE FUNCTION labels_between(devices text[], lo timestamptz, hi timestamptz)
RETURNS SETOF labels LANGUAGE sql STABLE AS $$
    SELECT * FROM labels WHERE device = ANY(devices)
      AND minute >= date_trunc('minute', lo, 'UTC') AND minute < hi
      AND window_start >= lo AND window_start < hi
$$;
CREATE FUNCTION detections_between(devices text[], lo timestamptz, hi timestamptz)
RETURNS SETOF detections LANGUAGE sql STABLE AS $$
    SELECT * FROM detections WHERE device = ANY(devices)
      AND minute >= date_trunc('minute', lo, 'UTC') AND minute < hi
      AND window_start >= lo AND window_start < hi
$$;

-- INSERT into the views (old tools, tests) appends the window to its minute's row; a
-- window already stored is refused as the tables' primary keys refused it. Rollups are not
-- maintained for rows written this way (soundscape_recompute_rollups()).
CREATE FUNCTION levels_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    m timestamptz := date_trunc('minute', NEW.window_start, 'UTC');
    o integer := soundscape_offset(NEW.window_start);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('soundscape_levels:' || NEW.device));
    IF EXISTS (SELECT 1 FROM levels_packed WHERE device = NEW.device AND minute = m
               AND o = ANY(offsets_us)) THEN
        RAISE unique_violation USING MESSAGE = format(
            'duplicate key value: levels (device, window_start)=(%s, %s) already exists',
            NEW.device, NEW.window_start);
    END IF;
    INSERT INTO levels_packed VALUES (NEW.device, m, ARRAY[o], ARRAY[NEW.window_seq],
        ARRAY[NEW.window_duration], ARRAY[NEW.leq_db], ARRAY[NEW.laeq_db], ARRAY[NEW.lceq_db],
        ARRAY[NEW.peak_db], ARRAY[NEW.dbfs],
        ARRAY[soundscape_pack_bands(NEW.bands)], ARRAY[coalesce(NEW.clipped, false)],
        ARRAY[NEW.gain_db], ARRAY[NEW.sensitivity_dbv], ARRAY[NEW.vadc],
        ARRAY[NEW.uncalibrated], ARRAY[NEW.sync_id], ARRAY[NEW.sync_time])
    ON CONFLICT (device, minute) DO UPDATE SET
        offsets_us = levels_packed.offsets_us || EXCLUDED.offsets_us,
        seqs = levels_packed.seqs || EXCLUDED.seqs,
        durations = levels_packed.durations || EXCLUDED.durations,
        leq_db = levels_packed.leq_db || EXCLUDED.leq_db,
        laeq_db = levels_packed.laeq_db || EXCLUDED.laeq_db,
        lceq_db = levels_packed.lceq_db || EXCLUDED.lceq_db,
        peak_db = levels_packed.peak_db || EXCLUDED.peak_db,
        dbfs = levels_packed.dbfs || EXCLUDED.dbfs,
        bands = levels_packed.bands || EXCLUDED.bands,
        clipped = levels_packed.clipped || EXCLUDED.clipped,
        gain_db = levels_packed.gain_db || EXCLUDED.gain_db,
        sensitivity_dbv = levels_packed.sensitivity_dbv || EXCLUDED.sensitivity_dbv,
        vadc = levels_packed.vadc || EXCLUDED.vadc,
        uncalibrated = levels_packed.uncalibrated || EXCLUDED.uncalibrated,
        sync_ids = levels_packed.sync_ids || EXCLUDED.sync_ids,
        sync_times = levels_packed.sync_times || EXCLUDED.sync_times;
    RETURN NEW;
END $$;
CREATE TRIGGER levels_insert INSTEAD OF INSERT ON levels
    FOR EACH ROW EXECUTE FUNCTION levels_insert();

CREATE FUNCTION labels_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    m timestamptz := date_trunc('minute', NEW.window_start, 'UTC');
    o integer := soundscape_offset(NEW.window_start);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('soundscape_labels:' || NEW.device));
    IF EXISTS (SELECT 1 FROM labels_packed WHERE device = NEW.device AND minute = m
               AND model = NEW.model AND o = ANY(offsets_us)) THEN
        RAISE unique_violation USING MESSAGE = format(
            'duplicate key value: labels (device, window_start, model)=(%s, %s, %s) already '
            'exists', NEW.device, NEW.window_start, NEW.model);
    END IF;
    INSERT INTO labels_packed VALUES (NEW.device, m, NEW.model, ARRAY[o], ARRAY[NEW.window_seq],
        ARRAY[NEW.window_duration], ARRAY[cardinality(NEW.label_ids)::smallint], NEW.label_ids,
        ARRAY(SELECT soundscape_score(s) FROM unnest(NEW.scores) WITH ORDINALITY AS u(s, k)
              ORDER BY k),
        ARRAY[NEW.speech_present], ARRAY[NEW.inference_ms], ARRAY[NEW.sync_id],
        ARRAY[NEW.sync_time])
    ON CONFLICT (device, minute, model) DO UPDATE SET
        offsets_us = labels_packed.offsets_us || EXCLUDED.offsets_us,
        seqs = labels_packed.seqs || EXCLUDED.seqs,
        durations = labels_packed.durations || EXCLUDED.durations,
        ends = labels_packed.ends
            || soundscape_shift(EXCLUDED.ends, cardinality(labels_packed.label_ids)),
        label_ids = labels_packed.label_ids || EXCLUDED.label_ids,
        scores = labels_packed.scores || EXCLUDED.scores,
        speech_present = labels_packed.speech_present || EXCLUDED.speech_present,
        inference_ms = labels_packed.inference_ms || EXCLUDED.inference_ms,
        sync_ids = labels_packed.sync_ids || EXCLUDED.sync_ids,
        sync_times = labels_packed.sync_times || EXCLUDED.sync_times;
    RETURN NEW;
END $$;
CREATE TRIGGER labels_insert INSTEAD OF INSERT ON labels
    FOR EACH ROW EXECUTE FUNCTION labels_insert();

-- An INSERT into detections appends the label to its window (a new window when there is
-- none yet; insert in rank order, the given rank is not used).
CREATE FUNCTION detections_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    lid smallint;
    m timestamptz := date_trunc('minute', NEW.window_start, 'UTC');
    o integer := soundscape_offset(NEW.window_start);
    p labels_packed;
    i integer;
    e integer;
BEGIN
    SELECT id INTO lid FROM label_names WHERE name = NEW.label;
    IF lid IS NULL THEN
        INSERT INTO label_names (name) VALUES (NEW.label) ON CONFLICT (name) DO NOTHING;
        SELECT id INTO lid FROM label_names WHERE name = NEW.label;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('soundscape_labels:' || NEW.device));
    SELECT * INTO p FROM labels_packed
    WHERE device = NEW.device AND minute = m AND model = NEW.model FOR UPDATE;
    i := CASE WHEN p.device IS NULL THEN NULL ELSE array_position(p.offsets_us, o) END;
    IF i IS NULL THEN
        INSERT INTO labels (device, window_start, window_seq, window_duration, model,
                            label_ids, scores, speech_present, inference_ms, sync_id,
                            sync_time)
        VALUES (NEW.device, NEW.window_start, NEW.window_seq, NEW.window_duration, NEW.model,
                ARRAY[lid], ARRAY[NEW.rating], NEW.speech_present, NEW.inference_ms,
                NEW.sync_id, NEW.sync_time);
        RETURN NEW;
    END IF;
    e := p.ends[i];
    UPDATE labels_packed SET
        label_ids = label_ids[1:e] || lid || label_ids[e + 1:],
        scores = scores[1:e] || soundscape_score(NEW.rating) || scores[e + 1:],
        ends = ends[1:i - 1] || soundscape_shift(ends[i:], 1)
    WHERE device = NEW.device AND minute = m AND model = NEW.model;
    RETURN NEW;
END $$;
CREATE TRIGGER detections_insert INSTEAD OF INSERT ON detections
    FOR EACH ROW EXECUTE FUNCTION detections_insert();

-- Move the existing rows: partitions for their days first, then rows, then rollups (the
-- days ahead are made by ingest at its next sync).
SELECT soundscape_ensure_partitions(ARRAY(
    SELECT DISTINCT (window_start AT TIME ZONE 'UTC')::date FROM levels_0005
    UNION SELECT DISTINCT (window_start AT TIME ZONE 'UTC')::date FROM labels_0005));

INSERT INTO levels_packed
SELECT device, date_trunc('minute', window_start, 'UTC') AS m,
       array_agg(soundscape_offset(window_start) ORDER BY window_start),
       array_agg(window_seq ORDER BY window_start),
       array_agg(window_duration ORDER BY window_start),
       array_agg(leq_db ORDER BY window_start), array_agg(laeq_db ORDER BY window_start),
       array_agg(lceq_db ORDER BY window_start), array_agg(peak_db ORDER BY window_start),
       array_agg(dbfs ORDER BY window_start),
       array_agg(soundscape_pack_bands(bands) ORDER BY window_start),
       array_agg(clipped ORDER BY window_start), array_agg(gain_db ORDER BY window_start),
       array_agg(sensitivity_dbv ORDER BY window_start), array_agg(vadc ORDER BY window_start),
       array_agg(uncalibrated ORDER BY window_start), array_agg(sync_id ORDER BY window_start),
       array_agg(sync_time ORDER BY window_start)
FROM levels_0005 GROUP BY 1, 2;

WITH w AS (
    SELECT l.*, date_trunc('minute', l.window_start, 'UTC') AS m,
           sum(cardinality(l.label_ids)) OVER (PARTITION BY l.device,
               date_trunc('minute', l.window_start, 'UTC'), l.model
               ORDER BY l.window_start) AS e
    FROM labels_0005 l
), flat AS (
    SELECT w.device, w.m, w.model, array_agg(u.id ORDER BY w.window_start, u.k) AS ids,
           array_agg(soundscape_score(u.s) ORDER BY w.window_start, u.k) AS sc
    FROM w CROSS JOIN LATERAL unnest(w.label_ids, w.scores) WITH ORDINALITY AS u(id, s, k)
    GROUP BY 1, 2, 3
)
INSERT INTO labels_packed
SELECT w.device, w.m, w.model, array_agg(soundscape_offset(w.window_start) ORDER BY w.window_start),
       array_agg(w.window_seq ORDER BY w.window_start),
       array_agg(w.window_duration ORDER BY w.window_start),
       array_agg(w.e::smallint ORDER BY w.window_start), f.ids, f.sc,
       array_agg(w.speech_present ORDER BY w.window_start),
       array_agg(w.inference_ms ORDER BY w.window_start),
       array_agg(w.sync_id ORDER BY w.window_start),
       array_agg(w.sync_time ORDER BY w.window_start)
FROM w JOIN flat f USING (device, m, model)
GROUP BY w.device, w.m, w.model, f.ids, f.sc;

DROP TABLE levels_0005;
DROP TABLE labels_0005;

-- The rollups recomputed from the raw rows: ingest maintains them as batches land; this
-- fills them for the rows moved above, and is the one recomputation that tests and
-- benchmarks (which insert raw rows directly) and an operator (after editing raw rows) run.
CREATE FUNCTION soundscape_recompute_rollups() RETURNS void LANGUAGE sql AS $$
    TRUNCATE levels_minute, levels_hourly, labels_hourly, summaries_hourly, indices_hourly,
        labelled_hourly;
    INSERT INTO levels_minute (device, bucket, seconds, leq_energy, laeq_seconds, laeq_energy,
                               lceq_seconds, lceq_energy, windows, band_seconds, bands)
    SELECT p.device, p.minute, s.*, b.band_seconds, b.bands
    FROM levels_packed p
    CROSS JOIN LATERAL (
        SELECT sum(d::float8), sum(d * power(10::float8, leq / 10)),
               coalesce(sum(d::float8) FILTER (WHERE laeq IS NOT NULL), 0),
               coalesce(sum(d * power(10::float8, laeq / 10)), 0),
               coalesce(sum(d::float8) FILTER (WHERE lceq IS NOT NULL), 0),
               coalesce(sum(d * power(10::float8, lceq / 10)), 0), count(*)::integer
        FROM unnest(p.durations, p.leq_db, p.laeq_db, p.lceq_db) AS u(d, leq, laeq, lceq)
    ) AS s
    CROSS JOIN LATERAL (
        SELECT coalesce(max(q.seconds), 0) AS band_seconds,
               CASE WHEN count(q.mean) > 0 THEN array_agg(q.mean ORDER BY q.j) END AS bands
        FROM (
            SELECT (x.k - 1) % 41 + 1 AS j,
                   sum(w.d::float8) FILTER (WHERE x.v IS NOT NULL) AS seconds,
                   (10 * log10(sum(w.d * 10 ^ (x.v / 1000.0::float8))
                               / sum(w.d::float8) FILTER (WHERE x.v IS NOT NULL)))::real AS mean
            -- durations by window joined, not subscripted (a subscript detoasts per element)
            FROM unnest(p.bands) WITH ORDINALITY AS x(v, k)
            JOIN unnest(p.durations) WITH ORDINALITY AS w(d, i) ON w.i = (x.k - 1) / 41 + 1
            GROUP BY 1
        ) q
    ) AS b;
    INSERT INTO levels_hourly (device, bucket, seconds, leq_energy, laeq_seconds, laeq_energy,
                               lceq_seconds, lceq_energy, windows, band_seconds, bands)
    WITH hb AS (
        SELECT device, date_trunc('hour', bucket, 'UTC') AS h, u.j,
               (10 * log10(sum(band_seconds * power(10::float8, u.x / 10.0))
                           / sum(band_seconds)))::real AS mean
        FROM levels_minute CROSS JOIN LATERAL unnest(bands) WITH ORDINALITY AS u(x, j)
        WHERE u.x IS NOT NULL AND band_seconds > 0 GROUP BY 1, 2, 3
    ), hbands AS (
        SELECT k.device, k.h, CASE WHEN count(hb.mean) > 0
                                   THEN array_agg(hb.mean ORDER BY s.j) END AS bands
        FROM (SELECT DISTINCT device, h FROM hb) k CROSS JOIN generate_series(1, 41) AS s(j)
        LEFT JOIN hb ON hb.device = k.device AND hb.h = k.h AND hb.j = s.j
        GROUP BY 1, 2
    ), sums AS (
        SELECT device, date_trunc('hour', bucket, 'UTC') AS h, sum(seconds) AS s1,
               sum(leq_energy) AS s2, sum(laeq_seconds) AS s3, sum(laeq_energy) AS s4,
               sum(lceq_seconds) AS s5, sum(lceq_energy) AS s6, sum(windows) AS s7,
               sum(band_seconds) AS s8
        FROM levels_minute GROUP BY 1, 2
    )
    SELECT s.device, s.h, s.s1, s.s2, s.s3, s.s4, s.s5, s.s6, s.s7, s.s8, hbands.bands
    FROM sums s LEFT JOIN hbands ON hbands.device = s.device AND hbands.h = s.h;
    INSERT INTO labels_hourly (device, bucket, model, label_id, windows, score_sum, score_max)
    SELECT p.device, date_trunc('hour', p.minute, 'UTC'), p.model, u.label_id, count(*),
           sum(u.score / 10000.0::float8), max((u.score / 10000.0::float8)::real)
    FROM labels_packed p CROSS JOIN LATERAL unnest(p.label_ids, p.scores) AS u(label_id, score)
    GROUP BY 1, 2, 3, 4;
    INSERT INTO labelled_hourly (device, bucket, model, windows, seconds)
    SELECT p.device, date_trunc('hour', p.minute, 'UTC'), p.model,
           sum(cardinality(p.offsets_us)),
           sum((SELECT sum(d::float8) FROM unnest(p.durations) AS d))
    FROM labels_packed p GROUP BY 1, 2, 3;

    INSERT INTO summaries_hourly
    SELECT device, date_trunc('hour', window_start, 'UTC'), window_duration, count(*),
           sum(window_duration::float8), sum(window_duration * power(10::float8, laeq_db / 10)),
           max(lamax_db), min(lamin_db), sum(window_duration * l10_db),
           sum(window_duration * l50_db), sum(window_duration * l90_db),
           sum(window_duration * coverage)
    FROM level_summaries GROUP BY 1, 2, 3;
    INSERT INTO indices_hourly
    SELECT device, date_trunc('hour', window_start, 'UTC'), window_duration, count(*),
           coalesce(sum(aci), 0), count(aci), coalesce(sum(adi), 0), count(adi),
           coalesce(sum(aei), 0), count(aei), coalesce(sum(bi), 0), count(bi),
           coalesce(sum(ndsi), 0), count(ndsi), coalesce(sum(ht), 0), count(ht),
           coalesce(sum(hf), 0), count(hf), coalesce(sum(events), 0), count(events)
    FROM indices GROUP BY 1, 2, 3;
$$;
REVOKE ALL ON FUNCTION soundscape_recompute_rollups() FROM PUBLIC;
-- month partitions of the rollups for the months of the summaries and indices too
SELECT soundscape_ensure_partitions(ARRAY(
    SELECT DISTINCT (window_start AT TIME ZONE 'UTC')::date FROM level_summaries
    UNION SELECT DISTINCT (window_start AT TIME ZONE 'UTC')::date FROM indices));
SELECT soundscape_recompute_rollups();
