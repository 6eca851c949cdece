-- bi.sql: views for BI tools and for people who would rather look than
-- read (issue #12; docs/bi.md).
--
-- GUI query builders cannot call a function that takes a regclass, and a
-- role that should only look at numbers should not need SELECT on the
-- deals or EXECUTE on dealrisk's internals.  So dealrisk.set_source() picks
-- the deal source once; it and every refresh() compute the diagnosis of
-- that source into snapshot tables of dealrisk (the operator's role reads
-- the source, with its trust checks), and the schema dealrisk_bi holds
-- plain views over those tables with stable names, types and units (rates
-- and risk in percent, periods labelled '2024-Q3').  The views belong to the
-- extension: a role given USAGE on dealrisk_bi and SELECT on its views reads
-- them and nothing else.  A section that cannot be computed from the source
-- (no closed_date for a trend, a deal_stage that cannot support a funnel, no
-- active model) leaves its view empty and says why in dealrisk_bi.status.

CREATE SCHEMA dealrisk_bi;
COMMENT ON SCHEMA dealrisk_bi IS
	'Views for BI tools (Metabase, Superset, Grafana, Tableau): the diagnosis, the open pipeline and the models of the deal source chosen by dealrisk.set_source(), rates and risk in percent; grant USAGE on the schema and SELECT on its views (docs/bi.md)';

-- What the views report on --------------------------------------------------

CREATE TABLE dealrisk.bi_config (
	singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	source     regclass,
	model      text CHECK (model IS NULL OR pg_catalog.btrim(model) OPERATOR(pg_catalog.<>) ''),
	set_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	set_by     text NOT NULL DEFAULT CURRENT_USER
);
COMMENT ON TABLE dealrisk.bi_config IS
	'The deal source the views of dealrisk_bi report on (one row, set by dealrisk.set_source()): source NULL follows the source of dealrisk.watch(); model NULL is the watched model, else ''default''';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.bi_config', '');

-- The snapshot: written by set_source() and refresh(), read by the views.
-- No dump: a restore has them again at the next refresh().
CREATE TABLE dealrisk.bi_sections (
	view_name  text PRIMARY KEY,
	built_at   timestamptz NOT NULL,
	source     text NOT NULL,
	model_id   bigint,
	as_of      date,
	"rows"     bigint NOT NULL,
	note       text
);
COMMENT ON TABLE dealrisk.bi_sections IS
	'One row per view of dealrisk_bi with a snapshot: when it was built, from which source and model, as of which date, how many rows, and why it is empty or incomplete (read through dealrisk_bi.status)';

CREATE TABLE dealrisk.bi_headline (
	singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	deals         bigint NOT NULL,
	closed        bigint NOT NULL,
	won           bigint NOT NULL,
	lost          bigint NOT NULL,
	open          bigint NOT NULL,
	unknown       bigint NOT NULL,
	win_rate      float8,
	ci_low        float8,
	ci_high       float8,
	first_closed  date,
	last_closed   date,
	high_risk_cutoff  float8,
	high_risk_policy  text
);
COMMENT ON TABLE dealrisk.bi_headline IS 'The headline counts of the BI source (read through dealrisk_bi.headline)';

CREATE TABLE dealrisk.bi_win_rate (
	grain         text NOT NULL CHECK (grain IN ('quarter', 'month')),
	period_start  date NOT NULL,
	closed        bigint NOT NULL,
	won           bigint NOT NULL,
	win_rate      float8,
	ci_low        float8,
	ci_high       float8,
	change        float8,
	p_value       float8,
	is_partial    boolean NOT NULL,
	PRIMARY KEY (grain, period_start)
);
COMMENT ON TABLE dealrisk.bi_win_rate IS 'dealrisk.win_rate_trend() of the BI source by quarter and by month (read through dealrisk_bi.win_rate_by_quarter and win_rate_by_month)';

CREATE TABLE dealrisk.bi_cycle (
	period_start   date PRIMARY KEY,
	closed         bigint NOT NULL,
	median_days    float8,
	p75_days       float8,
	mean_days      float8,
	change_median  float8,
	p_value        float8,
	significant    boolean,
	is_partial     boolean NOT NULL
);
COMMENT ON TABLE dealrisk.bi_cycle IS 'dealrisk.cycle_trend() of the BI source by quarter (read through dealrisk_bi.cycle_by_quarter)';

CREATE TABLE dealrisk.bi_funnel (
	"position"             int NOT NULL,
	stage                  text NOT NULL,
	is_late                boolean,
	reached                bigint,
	won                    bigint,
	lost_here              bigint,
	open_here              bigint,
	conversion_to_next     float8,
	cumulative_conversion  float8,
	win_rate               float8,
	caveat                 text
);
COMMENT ON TABLE dealrisk.bi_funnel IS 'dealrisk.funnel() of the BI source (read through dealrisk_bi.funnel)';

CREATE TABLE dealrisk.bi_drivers (
	ord                int PRIMARY KEY,
	rank               int,
	kind               text NOT NULL,
	driver             text,
	dims               text[],
	baseline_closed    bigint,
	baseline_win_rate  float8,
	baseline_share     float8,
	recent_closed      bigint,
	recent_win_rate    float8,
	recent_share       float8,
	effect             float8,
	contribution       float8,
	ci_low             float8,
	ci_high            float8,
	p_value            float8,
	q_value            float8,
	explains           text[],
	description        text
);
COMMENT ON TABLE dealrisk.bi_drivers IS 'dealrisk.drivers() of the BI source: the drivers of the latest change, the remainder and the total (read through dealrisk_bi.drivers)';

CREATE TABLE dealrisk.bi_open_deals (
	deal_id        text PRIMARY KEY,
	sales_rep_id   text,
	industry       text,
	region         text,
	product_type   text,
	lead_source    text,
	deal_stage     text,
	deal_amount    numeric,
	created_date   date,
	days_open      int,
	days_in_stage  int,
	risk           float8,
	band           text,
	high_risk      boolean,
	top_factor     text,
	top_reason     text,
	action         text,
	expected_close_date  date
);
COMMENT ON TABLE dealrisk.bi_open_deals IS 'Every open deal of the BI source with its risk, band, top reason and action under the BI model (read through dealrisk_bi.open_pipeline, risk_by_rep and risk_by_segment)';

CREATE TABLE dealrisk.bi_forecast (
	group_by            text NOT NULL CHECK (group_by IN ('total', 'sales_rep_id', 'close_month')),
	group_value         text,
	open_deals          bigint NOT NULL,
	pipeline_value      numeric,
	expected_wins       float8,
	wins_low            float8,
	wins_high           float8,
	expected_won_value  numeric,
	won_value_low       numeric,
	won_value_high      numeric,
	deals_past_won_cycles  bigint,
	deals_without_age      bigint,
	deals_without_amount   bigint,
	interval_method     text
);
COMMENT ON TABLE dealrisk.bi_forecast IS 'dealrisk.forecast() of the BI source over 90 days, in total, per rep and per expected close month (read through dealrisk_bi.forecast)';

CREATE TABLE dealrisk.bi_checks (
	ord       int PRIMARY KEY,
	"check"   text NOT NULL,
	severity  text NOT NULL,
	finding   text,
	hint      text
);
COMMENT ON TABLE dealrisk.bi_checks IS 'dealrisk.check_source() of the BI source (read through dealrisk_bi.source_checks)';

CREATE TABLE dealrisk.bi_diagnosis (
	line_no  int PRIMARY KEY,
	line     text NOT NULL
);
COMMENT ON TABLE dealrisk.bi_diagnosis IS 'dealrisk.diagnose() of the BI source, one row per line (read through dealrisk_bi.diagnosis)';

-- Building the snapshot -----------------------------------------------------

-- The source and model the views report on: the ones set by set_source(),
-- else the watched ones; an error naming what to do when there is none.
CREATE FUNCTION dealrisk._bi_target(OUT source regclass, OUT model text)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.bi_config;
	w_source regclass;
	w_model text;
BEGIN
	SELECT * INTO cfg FROM dealrisk.bi_config;
	SELECT w.source, w.model INTO w_source, w_model FROM dealrisk.watch_config w;
	source := coalesce(cfg.source, w_source);
	IF source IS NULL THEN
		RAISE EXCEPTION 'dealrisk_bi has no deal source'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Call dealrisk.set_source(''deals'') with the table or view of your deals, or dealrisk.watch() it.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) source::pg_catalog.oid) THEN
		RAISE EXCEPTION 'the deal source of dealrisk_bi (oid %) no longer exists', source::pg_catalog.oid
			USING ERRCODE = 'undefined_table',
			      HINT = 'Call dealrisk.set_source() with the table or view that holds the deals now.';
	END IF;
	model := coalesce(cfg.model, CASE WHEN source OPERATOR(pg_catalog.=) w_source THEN w_model END, 'default');
END
$$;
COMMENT ON FUNCTION dealrisk._bi_target() IS
	'The source and model of dealrisk_bi: set by set_source(), else the watched ones (internal)';

-- One section of the snapshot: clear_sql empties its table and fill_sql
-- refills it (both run with $1 the source and $2 arg), note_sql, when given,
-- says what the rows themselves report; in a subtransaction of its own, so
-- that a section that fails is left empty with its error as the note and
-- the others are still built.  Returns the rows written.
CREATE FUNCTION dealrisk._bi_fill(view_name text, clear_sql text, fill_sql text, note_sql text, source regclass,
	arg text, model_id bigint, as_of date, built timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	note text;
BEGIN
	EXECUTE clear_sql USING source, arg;
	EXECUTE fill_sql USING source, arg;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF note_sql IS NOT NULL THEN
		EXECUTE note_sql INTO note;
	END IF;
	PERFORM dealrisk._bi_section(view_name, source, model_id, as_of, built, n, note);
	RETURN n;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS note = MESSAGE_TEXT;
	PERFORM dealrisk._bi_section(view_name, source, model_id, as_of, built, 0, note);
	RETURN 0;
END
$$;
COMMENT ON FUNCTION dealrisk._bi_fill(text, text, text, text, regclass, text, bigint, date, timestamptz) IS
	'Refills one snapshot table of dealrisk_bi in a subtransaction, recording its rows or its error in bi_sections (internal)';

-- Rebuilds every snapshot table of dealrisk_bi from the source, each section
-- on its own: a section that fails (a column missing, no model) is left
-- empty with the reason in bi_sections, and the others are still built.
-- Runs with the caller's privileges: the source is read, and checked for
-- trust, as the role that calls set_source() or refresh().
CREATE FUNCTION dealrisk._bi_build()
RETURNS TABLE(view_name text, "rows" bigint, note text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	t record;
	src regclass;
	mdl text;
	mid bigint;
	asof date := dealrisk._as_of();
	built timestamptz := pg_catalog.clock_timestamp();
	n bigint;
	msg text;
	sec text;
	cols text[] := ARRAY['sales_rep_id', 'industry', 'region', 'product_type', 'lead_source', 'deal_stage'];
	missing text[];
	exprs text;
	amount text;
	created text;
	in_stage text;
	bad_amounts bigint;
	thr float8 := 50;
	top float8 := 0.1;
	cut float8;
	risks float8[];
	ins text;
	score_error text;
	open_rows text;
BEGIN
	t := dealrisk._bi_target();
	src := t.source;
	mdl := t.model;
	-- one build at a time; readers keep reading the previous snapshot until
	-- this transaction commits
	LOCK TABLE dealrisk.bi_sections IN EXCLUSIVE MODE;
	PERFORM dealrisk._check_source(src, ARRAY['outcome']);
	SELECT m.id INTO mid FROM dealrisk.models m WHERE m.name OPERATOR(pg_catalog.=) mdl AND m.active;
	DELETE FROM dealrisk.bi_sections;

	-- headline
	sec := 'headline';
	BEGIN
		DELETE FROM dealrisk.bi_headline;
		EXECUTE pg_catalog.format($q$
			INSERT INTO dealrisk.bi_headline (deals, closed, won, lost, open, unknown, win_rate, ci_low, ci_high,
			                                  first_closed, last_closed)
			SELECT y.deals, y.closed, y.won, y.lost, y.open, y.unknown, (y.ci).rate, (y.ci).ci_low, (y.ci).ci_high,
			       y.first_closed, y.last_closed
			FROM (SELECT pg_catalog.count(*) AS deals, pg_catalog.count(*) FILTER (WHERE x.cls IN ('won', 'lost')) AS closed,
			             pg_catalog.count(*) FILTER (WHERE x.cls OPERATOR(pg_catalog.=) 'won') AS won,
			             pg_catalog.count(*) FILTER (WHERE x.cls OPERATOR(pg_catalog.=) 'lost') AS lost,
			             pg_catalog.count(*) FILTER (WHERE x.cls OPERATOR(pg_catalog.=) 'open') AS open,
			             pg_catalog.count(*) FILTER (WHERE x.cls OPERATOR(pg_catalog.=) 'unknown') AS unknown,
			             dealrisk.win_rate_ci(CASE x.cls WHEN 'won' THEN true WHEN 'lost' THEN false END) AS ci,
			             pg_catalog.min(x.cl) FILTER (WHERE x.cls IN ('won', 'lost') AND pg_catalog.isfinite(x.cl)) AS first_closed,
			             pg_catalog.max(x.cl) FILTER (WHERE x.cls IN ('won', 'lost') AND pg_catalog.isfinite(x.cl)) AS last_closed
			      FROM (SELECT coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls, %s AS cl FROM %s d) x) y$q$,
			CASE WHEN dealrisk._has_column(src, 'closed_date') THEN 'd.closed_date::date' ELSE 'NULL::date' END, src);
		PERFORM dealrisk._bi_section(sec, src, mid, asof, built, 1, NULL);
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		PERFORM dealrisk._bi_section(sec, src, mid, asof, built, 0, msg);
	END;

	-- the sections that are a diagnostic function's rows
	FOREACH sec IN ARRAY ARRAY['quarter', 'month'] LOOP
		PERFORM dealrisk._bi_fill('win_rate_by_' || sec,
			'DELETE FROM dealrisk.bi_win_rate w WHERE w.grain OPERATOR(pg_catalog.=) $2',
			'INSERT INTO dealrisk.bi_win_rate SELECT $2, w.period_start, w.closed, w.won, w.win_rate, w.ci_low, w.ci_high,'
			' w.change, w.p_value, w.is_partial FROM dealrisk.win_rate_trend($1, $2) w',
			NULL, src, sec, mid, asof, built);
	END LOOP;
	PERFORM dealrisk._bi_fill('cycle_by_quarter', 'DELETE FROM dealrisk.bi_cycle',
		'INSERT INTO dealrisk.bi_cycle SELECT c.period_start, c.closed, c.median_days, c.p75_days, c.mean_days,'
		' c.change_median, c.p_value, c.significant, c.is_partial FROM dealrisk.cycle_trend($1, ''quarter'') c',
		NULL, src, NULL, mid, asof, built);
	-- a funnel that cannot be read from this data comes back as caveats
	PERFORM dealrisk._bi_fill('funnel', 'DELETE FROM dealrisk.bi_funnel',
		'INSERT INTO dealrisk.bi_funnel SELECT f."position", f.stage, f.is_late, f.reached, f.won, f.lost_here, f.open_here,'
		' f.conversion_to_next, f.cumulative_conversion, f.win_rate, f.caveat FROM dealrisk.funnel($1) f',
		'SELECT pg_catalog.max(f.caveat) FROM dealrisk.bi_funnel f', src, NULL, mid, asof, built);
	PERFORM dealrisk._bi_fill('drivers', 'DELETE FROM dealrisk.bi_drivers',
		'INSERT INTO dealrisk.bi_drivers SELECT o."ordinality", o.rank, o.kind, o.driver, o.dims, o.baseline_closed,'
		' o.baseline_win_rate, o.baseline_share, o.recent_closed, o.recent_win_rate, o.recent_share, o.effect,'
		' o.contribution, o.ci_low, o.ci_high, o.p_value, o.q_value, o.explains, o.description'
		' FROM dealrisk.drivers($1) WITH ORDINALITY o',
		NULL, src, NULL, mid, asof, built);
	PERFORM dealrisk._bi_fill('source_checks', 'DELETE FROM dealrisk.bi_checks',
		'INSERT INTO dealrisk.bi_checks SELECT c.ord, c."check", c.severity, c.finding, c.hint'
		' FROM dealrisk.check_source($1) WITH ORDINALITY c("check", severity, finding, hint, ord)',
		NULL, src, NULL, mid, asof, built);
	PERFORM dealrisk._bi_fill('diagnosis', 'DELETE FROM dealrisk.bi_diagnosis',
		'INSERT INTO dealrisk.bi_diagnosis SELECT l.no, l.line'
		' FROM pg_catalog.regexp_split_to_table(dealrisk.diagnose($1), E''\n'') WITH ORDINALITY l(line, no)',
		NULL, src, NULL, mid, asof, built);

	-- every open deal: its segments, amount and age, and (with an active
	-- model) its risk, band, top reason and action.  A column the source
	-- lacks is NULL in every row, and the note says which.
	sec := 'open_pipeline';
	BEGIN
		SELECT coalesce(pg_catalog.array_agg(c ORDER BY o) FILTER (WHERE NOT dealrisk._has_column(src, c)), '{}'),
		       pg_catalog.string_agg(CASE WHEN dealrisk._has_column(src, c) THEN pg_catalog.format('d.%I::text', c)
		                                  ELSE 'NULL::text' END, ', ' ORDER BY o)
		INTO missing, exprs
		FROM pg_catalog.unnest(cols) WITH ORDINALITY u(c, o);
		amount := CASE WHEN dealrisk._has_column(src, 'deal_amount') THEN 'd.deal_amount::pg_catalog.float8' ELSE 'NULL::pg_catalog.float8' END;
		created := CASE WHEN dealrisk._has_column(src, 'created_date') THEN 'd.created_date::date' ELSE 'NULL::date' END;
		in_stage := CASE WHEN dealrisk._has_column(src, 'stage_entered_date') THEN 'd.stage_entered_date::date' ELSE 'NULL::date' END;
		IF NOT dealrisk._has_column(src, 'deal_amount') THEN missing := missing || 'deal_amount'::text; END IF;
		IF NOT dealrisk._has_column(src, 'created_date') THEN missing := missing || 'created_date'::text; END IF;
		IF NOT dealrisk._has_column(src, 'stage_entered_date') THEN missing := missing || 'stage_entered_date'::text; END IF;
		PERFORM dealrisk._check_source(src, ARRAY['deal_id', 'outcome']);
		DELETE FROM dealrisk.bi_open_deals;
		-- a Citus distributed source: its open deals are read once into a
		-- temporary table of the coordinator, where they are explained
		-- (Citus cannot push the lateral explanation down to the shards)
		open_rows := src::pg_catalog.text;
		IF dealrisk._distributed(src) THEN
			IF pg_catalog.to_regclass('pg_temp.dealrisk_bi_rows') IS NOT NULL THEN
				DROP TABLE pg_temp.dealrisk_bi_rows;
			END IF;
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_bi_rows ON COMMIT DROP AS SELECT * FROM %s d'
				' WHERE dealrisk.is_won(d.outcome) IS NULL', src);
			open_rows := 'pg_temp.dealrisk_bi_rows';
		END IF;
		ins := pg_catalog.format($q$
			INSERT INTO dealrisk.bi_open_deals (deal_id, sales_rep_id, industry, region, product_type, lead_source,
			                                    deal_stage, deal_amount, created_date, days_open, days_in_stage,
			                                    risk, band, top_factor, top_reason, action)
			SELECT s.deal_id, s.sales_rep_id, s.industry, s.region, s.product_type, s.lead_source, s.deal_stage,
			       CASE WHEN s.amount OPERATOR(pg_catalog.<>) ALL ('{NaN,Infinity,-Infinity}'::pg_catalog.float8[])
			            THEN s.amount::pg_catalog.numeric END,
			       CASE WHEN pg_catalog.isfinite(s.created) THEN s.created END,
			       CASE WHEN pg_catalog.isfinite(s.created) THEN $2 OPERATOR(pg_catalog.-) s.created END,
			       CASE WHEN pg_catalog.isfinite(s.in_stage) THEN $2 OPERATOR(pg_catalog.-) s.in_stage END,
			       s.risk, dealrisk.risk_band(s.risk), x.factor, x.reason, s.action
			FROM (SELECT d.deal_id::text AS deal_id, %s, %s AS amount, %s AS created, %s AS in_stage,
			             CASE WHEN $1 IS NOT NULL THEN dealrisk.deal_risk(d, $1) END AS risk,
			             CASE WHEN $1 IS NOT NULL THEN dealrisk.recommended_action(d, $1) END AS action,
			             d AS deal
			      FROM %s d
			      WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL) s
			       (deal_id, sales_rep_id, industry, region, product_type, lead_source, deal_stage, amount, created,
			        in_stage, risk, action, deal)
			LEFT JOIN LATERAL (SELECT e.factor, e.reason FROM dealrisk.deal_risk_explain(s.deal, $1) e
			                   WHERE $1 IS NOT NULL LIMIT 1) x ON true$q$,
			exprs, amount, created, in_stage, open_rows);
		-- scored by the model when it can score this source; else listed
		-- unscored, with the reason
		BEGIN
			EXECUTE ins USING CASE WHEN mid IS NOT NULL THEN mdl END, asof;
			GET DIAGNOSTICS n = ROW_COUNT;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS score_error = MESSAGE_TEXT;
			EXECUTE ins USING NULL::text, asof;
			GET DIAGNOSTICS n = ROW_COUNT;
		END;
		-- high-risk by the alert policy of watch() when the views follow the
		-- watched source and model, else by its default (the riskiest 10%,
		-- at risk 50 or more): the same deals the alerts and
		-- dealrisk_watch.high_risk_deals name, never half the pipeline
		SELECT w.threshold, w.top_fraction INTO thr, top FROM dealrisk.watch_config w
		WHERE w.source OPERATOR(pg_catalog.=) src AND w.model OPERATOR(pg_catalog.=) mdl;
		thr := coalesce(thr, 50);
		top := coalesce(top, 0.1);
		IF mid IS NOT NULL AND score_error IS NULL THEN
			SELECT pg_catalog.array_agg(o.risk) INTO risks FROM dealrisk.bi_open_deals o;
			cut := dealrisk._high_risk_cutoff(coalesce(risks, '{}'), thr, top);
			UPDATE dealrisk.bi_open_deals o SET high_risk = o.risk OPERATOR(pg_catalog.>=) cut;
			UPDATE dealrisk.bi_headline SET high_risk_cutoff = cut, high_risk_policy = dealrisk._policy_words(thr, top);
		END IF;
		SELECT pg_catalog.count(*) FILTER (WHERE o.deal_amount IS NULL) INTO bad_amounts FROM dealrisk.bi_open_deals o;
		msg := pg_catalog.concat_ws('; ',
			CASE WHEN mid IS NULL THEN pg_catalog.format('no active model named %L: risk, band, reason and action are empty (train one: dealrisk.train(%L))',
			                                             mdl, dealrisk._source_name(src))
			     WHEN score_error IS NOT NULL THEN pg_catalog.format('risk, band, reason and action are empty: model %L cannot score this source: %s',
			                                             mdl, score_error) END,
			CASE WHEN missing OPERATOR(pg_catalog.<>) '{}' THEN pg_catalog.format('the source has no %s: empty in every row',
			                                                     pg_catalog.array_to_string(missing, ', ')) END,
			CASE WHEN bad_amounts > 0 AND 'deal_amount' OPERATOR(pg_catalog.<>) ALL (missing)
			     THEN pg_catalog.format('%s open deals have no finite deal_amount: counted in open_deals, not in the values', bad_amounts) END);
		PERFORM dealrisk._bi_section(sec, src, mid, asof, built, n, nullif(msg, ''));
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		DELETE FROM dealrisk.bi_open_deals;
		PERFORM dealrisk._bi_section(sec, src, mid, asof, built, 0, msg);
	END;

	-- the forecast of the next 90 days, and each open deal's expected close
	-- date (for value_at_risk_by_week)
	sec := 'forecast';
	BEGIN
		DELETE FROM dealrisk.bi_forecast;
		INSERT INTO dealrisk.bi_forecast
		SELECT CASE WHEN f.is_total THEN 'total' ELSE g.by END, f.group_value, f.open_deals, f.pipeline_value,
		       f.expected_wins, f.wins_low, f.wins_high, f.expected_won_value, f.won_value_low, f.won_value_high,
		       f.deals_past_won_cycles, f.deals_without_age, f.deals_without_amount, f.interval_method
		FROM (VALUES ('sales_rep_id', 1), ('close_month', 2)) g(by, o)
		CROSS JOIN LATERAL dealrisk.forecast(src, CASE WHEN g.by OPERATOR(pg_catalog.=) 'sales_rep_id' AND NOT dealrisk._has_column(src, 'sales_rep_id')
		                                               THEN NULL ELSE g.by END, interval '90 days', NULL, mdl) f
		WHERE NOT f.is_total OR g.o OPERATOR(pg_catalog.=) 1;
		GET DIAGNOSTICS n = ROW_COUNT;
		UPDATE dealrisk.bi_open_deals o SET expected_close_date = f.expected_close
		FROM dealrisk._forecast_deals(src, 90, mdl, NULL) f WHERE f.deal_id OPERATOR(pg_catalog.=) o.deal_id;
		PERFORM dealrisk._bi_section(sec, src, mid, asof, built, n, NULL);
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		PERFORM dealrisk._bi_section(sec, src, mid, asof, built, 0, msg);
	END;

	RETURN QUERY SELECT s.view_name, s."rows", s.note FROM dealrisk.bi_sections s ORDER BY s.view_name;
END
$fn$;
COMMENT ON FUNCTION dealrisk._bi_build() IS
	'Recomputes every snapshot of dealrisk_bi from its source, each section on its own; returns each view, its rows and why it is empty or incomplete (internal)';

-- Records how one section of the snapshot went.
CREATE FUNCTION dealrisk._bi_section(view_name text, source regclass, model_id bigint, as_of date,
	built timestamptz, n bigint, note text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO dealrisk.bi_sections AS s (view_name, built_at, source, model_id, as_of, "rows", note)
	VALUES ($1, $5, dealrisk._source_name($2), $3, $4, $6, $7)
	ON CONFLICT (view_name) DO UPDATE SET built_at = EXCLUDED.built_at, source = EXCLUDED.source,
		model_id = EXCLUDED.model_id, as_of = EXCLUDED.as_of, "rows" = EXCLUDED."rows", note = EXCLUDED.note;
$$;
COMMENT ON FUNCTION dealrisk._bi_section(text, regclass, bigint, date, timestamptz, bigint, text) IS
	'Records the outcome of one section of the dealrisk_bi snapshot in bi_sections (internal)';

CREATE FUNCTION dealrisk.set_source(source regclass DEFAULT NULL, model text DEFAULT NULL)
RETURNS TABLE(view_name text, "rows" bigint, note text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF pg_catalog.btrim(model) OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'model must be a model name or NULL, got an empty string'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Leave it out to use the watched model (or ''default'').';
	END IF;
	IF source IS NULL AND NOT EXISTS (SELECT 1 FROM dealrisk.watch_config) THEN
		RAISE EXCEPTION 'set_source() needs a source: nothing is watched'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Pass the table or view of your deals: SELECT * FROM dealrisk.set_source(''deals'');';
	END IF;
	IF source IS NOT NULL THEN
		PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	END IF;
	INSERT INTO dealrisk.bi_config AS b (singleton, source, model, set_at, set_by)
	VALUES (true, source, model, pg_catalog.now(), CURRENT_USER)
	ON CONFLICT (singleton) DO UPDATE SET source = EXCLUDED.source, model = EXCLUDED.model,
		set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by;
	RETURN QUERY SELECT * FROM dealrisk._bi_build();
END
$$;
COMMENT ON FUNCTION dealrisk.set_source(regclass, text) IS
	'Chooses the deal source (NULL: the watched one, following later watch() calls) and model (NULL: the watched model, else ''default'') that the views of dealrisk_bi report on, and computes them now; refresh() recomputes them. Returns each view, its rows and why it is empty or incomplete';

-- The views ------------------------------------------------------------------
-- Percent columns end in _pct (0-100, two decimals), percentage-point
-- changes in _pts; p- and q-values stay fractions.

CREATE VIEW dealrisk_bi.status AS
SELECT s.view_name, s.built_at, s.source, s.model_id, s.as_of, s."rows", s.note
FROM dealrisk.bi_sections s;
COMMENT ON VIEW dealrisk_bi.status IS
	'When each view of dealrisk_bi was computed, from which source and model, as of which date, its rows, and why it is empty or incomplete';

CREATE VIEW dealrisk_bi.win_rate_by_quarter AS
SELECT pg_catalog.to_char(w.period_start, 'YYYY-"Q"Q') AS period, w.period_start,
       (w.period_start OPERATOR(pg_catalog.+) interval '3 months' OPERATOR(pg_catalog.-) interval '1 day')::date AS period_end,
       w.closed, w.won, w.closed OPERATOR(pg_catalog.-) w.won AS lost,
       pg_catalog.round((100 * w.win_rate)::numeric, 2) AS win_rate_pct,
       pg_catalog.round((100 * w.ci_low)::numeric, 2) AS ci_low_pct,
       pg_catalog.round((100 * w.ci_high)::numeric, 2) AS ci_high_pct,
       pg_catalog.round((100 * w.change)::numeric, 2) AS change_pts,
       w.p_value, w.is_partial
FROM dealrisk.bi_win_rate w WHERE w.grain OPERATOR(pg_catalog.=) 'quarter';

CREATE VIEW dealrisk_bi.headline AS
SELECT s.source, s.as_of, s.built_at, h.deals, h.closed, h.won, h.lost, h.open, h.unknown,
       pg_catalog.round((100 * h.win_rate)::numeric, 2) AS win_rate_pct,
       pg_catalog.round((100 * h.ci_low)::numeric, 2) AS ci_low_pct,
       pg_catalog.round((100 * h.ci_high)::numeric, 2) AS ci_high_pct,
       h.first_closed, h.last_closed,
       q.period AS latest_quarter, q.win_rate_pct AS latest_quarter_win_rate_pct,
       q.change_pts AS latest_quarter_change_pts, q.p_value AS latest_quarter_p_value,
       o.open_deals, o.pipeline_value, o.high_risk_deals, o.high_risk_value,
       pg_catalog.round(h.high_risk_cutoff::numeric, 1) AS high_risk_cutoff, h.high_risk_policy
FROM dealrisk.bi_headline h
LEFT JOIN dealrisk.bi_sections s ON s.view_name OPERATOR(pg_catalog.=) 'headline'
LEFT JOIN LATERAL (SELECT w.period, w.win_rate_pct, w.change_pts, w.p_value FROM dealrisk_bi.win_rate_by_quarter w
                   WHERE NOT w.is_partial ORDER BY w.period_start DESC LIMIT 1) q ON true
LEFT JOIN LATERAL (SELECT pg_catalog.count(*) AS open_deals, pg_catalog.sum(p.deal_amount) AS pipeline_value,
                          pg_catalog.count(*) FILTER (WHERE p.high_risk) AS high_risk_deals,
                          coalesce(pg_catalog.sum(p.deal_amount) FILTER (WHERE p.high_risk), 0) AS high_risk_value
                   FROM dealrisk.bi_open_deals p) o ON true;

CREATE VIEW dealrisk_bi.win_rate_by_month AS
SELECT pg_catalog.to_char(w.period_start, 'YYYY-MM') AS period, w.period_start,
       (w.period_start OPERATOR(pg_catalog.+) interval '1 month' OPERATOR(pg_catalog.-) interval '1 day')::date AS period_end,
       w.closed, w.won, w.closed OPERATOR(pg_catalog.-) w.won AS lost,
       pg_catalog.round((100 * w.win_rate)::numeric, 2) AS win_rate_pct,
       pg_catalog.round((100 * w.ci_low)::numeric, 2) AS ci_low_pct,
       pg_catalog.round((100 * w.ci_high)::numeric, 2) AS ci_high_pct,
       pg_catalog.round((100 * w.change)::numeric, 2) AS change_pts,
       w.p_value, w.is_partial
FROM dealrisk.bi_win_rate w WHERE w.grain OPERATOR(pg_catalog.=) 'month';

CREATE VIEW dealrisk_bi.cycle_by_quarter AS
SELECT pg_catalog.to_char(c.period_start, 'YYYY-"Q"Q') AS period, c.period_start,
       (c.period_start OPERATOR(pg_catalog.+) interval '3 months' OPERATOR(pg_catalog.-) interval '1 day')::date AS period_end,
       c.closed, c.median_days, c.p75_days, pg_catalog.round(c.mean_days::numeric, 1) AS mean_days,
       c.change_median AS change_median_days, c.p_value, c.significant, c.is_partial
FROM dealrisk.bi_cycle c;

CREATE VIEW dealrisk_bi.funnel AS
SELECT f."position", f.stage, f.is_late, f.reached, f.won, f.lost_here, f.open_here,
       pg_catalog.round((100 * f.conversion_to_next)::numeric, 2) AS conversion_to_next_pct,
       pg_catalog.round((100 * f.cumulative_conversion)::numeric, 2) AS cumulative_conversion_pct,
       pg_catalog.round((100 * f.win_rate)::numeric, 2) AS win_rate_pct,
       f.caveat
FROM dealrisk.bi_funnel f;

CREATE VIEW dealrisk_bi.drivers AS
SELECT d.ord AS row_order, d.rank, d.kind, d.driver, pg_catalog.array_to_string(d.dims, ', ') AS dimensions,
       d.baseline_closed, pg_catalog.round((100 * d.baseline_win_rate)::numeric, 2) AS baseline_win_rate_pct,
       pg_catalog.round((100 * d.baseline_share)::numeric, 2) AS baseline_share_pct,
       d.recent_closed, pg_catalog.round((100 * d.recent_win_rate)::numeric, 2) AS recent_win_rate_pct,
       pg_catalog.round((100 * d.recent_share)::numeric, 2) AS recent_share_pct,
       pg_catalog.round((100 * d.effect)::numeric, 2) AS effect_pts,
       pg_catalog.round((100 * d.contribution)::numeric, 2) AS contribution_pts,
       pg_catalog.round((100 * d.ci_low)::numeric, 2) AS ci_low_pts,
       pg_catalog.round((100 * d.ci_high)::numeric, 2) AS ci_high_pts,
       d.p_value, d.q_value, pg_catalog.array_to_string(d.explains, '; ') AS explains, d.description
FROM dealrisk.bi_drivers d;

CREATE VIEW dealrisk_bi.open_pipeline AS
SELECT o.deal_id, o.sales_rep_id, o.industry, o.region, o.product_type, o.lead_source, o.deal_stage,
       o.deal_amount, o.created_date, o.days_open, o.days_in_stage,
       pg_catalog.round(o.risk::numeric, 1) AS risk, o.band, o.high_risk, o.top_factor, o.top_reason, o.action,
       o.expected_close_date
FROM dealrisk.bi_open_deals o;

CREATE VIEW dealrisk_bi.risk_by_rep AS
SELECT o.sales_rep_id, pg_catalog.count(*) AS open_deals, pg_catalog.sum(o.deal_amount) AS pipeline_value,
       pg_catalog.round(pg_catalog.avg(o.risk)::numeric, 1) AS mean_risk,
       pg_catalog.count(*) FILTER (WHERE o.high_risk) AS high_risk_deals,
       coalesce(pg_catalog.sum(o.deal_amount) FILTER (WHERE o.high_risk), 0) AS high_risk_value,
       pg_catalog.round(pg_catalog.sum(o.deal_amount OPERATOR(pg_catalog.*) o.risk::numeric) OPERATOR(pg_catalog./) 100, 2)
         AS expected_lost_value
FROM dealrisk.bi_open_deals o GROUP BY o.sales_rep_id;

CREATE VIEW dealrisk_bi.risk_by_segment AS
SELECT s.dimension, s.segment, pg_catalog.count(*) AS open_deals, pg_catalog.sum(s.deal_amount) AS pipeline_value,
       pg_catalog.round(pg_catalog.avg(s.risk)::numeric, 1) AS mean_risk,
       pg_catalog.count(*) FILTER (WHERE s.high_risk) AS high_risk_deals,
       coalesce(pg_catalog.sum(s.deal_amount) FILTER (WHERE s.high_risk), 0) AS high_risk_value,
       pg_catalog.round(pg_catalog.sum(s.deal_amount OPERATOR(pg_catalog.*) s.risk::numeric) OPERATOR(pg_catalog./) 100, 2)
         AS expected_lost_value
FROM (SELECT v.dimension, v.segment, o.deal_amount, o.risk, o.high_risk
      FROM dealrisk.bi_open_deals o
      CROSS JOIN LATERAL (VALUES ('industry', o.industry), ('region', o.region), ('product_type', o.product_type),
                                 ('lead_source', o.lead_source), ('deal_stage', o.deal_stage)) v(dimension, segment)
      WHERE v.segment IS NOT NULL) s
GROUP BY s.dimension, s.segment;

CREATE VIEW dealrisk_bi.value_at_risk_by_week AS
SELECT w.week_start, (w.week_start OPERATOR(pg_catalog.+) 6) AS week_end, pg_catalog.count(*) AS open_deals,
       pg_catalog.sum(w.deal_amount) AS pipeline_value,
       pg_catalog.round(pg_catalog.sum(w.deal_amount OPERATOR(pg_catalog.*) w.risk::numeric) OPERATOR(pg_catalog./) 100, 2)
         AS expected_lost_value,
       pg_catalog.count(*) FILTER (WHERE w.high_risk) AS high_risk_deals,
       coalesce(pg_catalog.sum(w.deal_amount) FILTER (WHERE w.high_risk), 0) AS high_risk_value
FROM (SELECT pg_catalog.date_trunc('week', o.expected_close_date::timestamp)::date AS week_start, o.deal_amount, o.risk, o.high_risk
      FROM dealrisk.bi_open_deals o) w
GROUP BY w.week_start;

CREATE VIEW dealrisk_bi.forecast AS
SELECT f.group_by, f.group_value, f.open_deals, f.pipeline_value,
       pg_catalog.round(f.expected_wins::numeric, 1) AS expected_wins, f.wins_low, f.wins_high,
       f.expected_won_value, f.won_value_low, f.won_value_high,
       f.deals_past_won_cycles, f.deals_without_age, f.deals_without_amount, f.interval_method
FROM dealrisk.bi_forecast f;

CREATE VIEW dealrisk_bi.source_checks AS
SELECT c.ord AS row_order, c."check", c.severity, c.finding, c.hint FROM dealrisk.bi_checks c;

CREATE VIEW dealrisk_bi.diagnosis AS
SELECT d.line_no, d.line FROM dealrisk.bi_diagnosis d;

-- Live views of the models and the refresh (no snapshot needed)
CREATE VIEW dealrisk_bi.model_quality AS
SELECT m.name AS model_name, m.id AS model_id, m.metrics OPERATOR(pg_catalog.->>) 'method' AS method, m.source,
       m.created_at AS trained_at, m.activated_at,
       (m.metrics OPERATOR(pg_catalog.->>) 'n_train')::bigint AS train_deals,
       (m.metrics OPERATOR(pg_catalog.->>) 'n_test')::bigint AS holdout_deals,
       pg_catalog.round(((m.metrics OPERATOR(pg_catalog.->>) 'auc')::float8)::numeric, 4) AS holdout_auc,
       pg_catalog.round(((m.metrics OPERATOR(pg_catalog.->>) 'log_loss')::float8)::numeric, 4) AS holdout_log_loss,
       pg_catalog.round(((m.metrics OPERATOR(pg_catalog.->>) 'brier')::float8)::numeric, 4) AS holdout_brier,
       pg_catalog.round(((m.metrics OPERATOR(pg_catalog.->>) 'brier_base')::float8)::numeric, 4) AS base_rate_brier,
       pg_catalog.round((100 * (m.metrics OPERATOR(pg_catalog.->>) 'accuracy')::float8)::numeric, 2) AS holdout_accuracy_pct,
       pg_catalog.round((100 * (m.metrics OPERATOR(pg_catalog.->>) 'base_rate')::float8)::numeric, 2) AS holdout_win_rate_pct
FROM dealrisk.models m WHERE m.active;

CREATE VIEW dealrisk_bi.model_calibration AS
SELECT m.name AS model_name, m.id AS model_id, (c.v OPERATOR(pg_catalog.->>) 'decile')::int AS decile,
       (c.v OPERATOR(pg_catalog.->>) 'n')::bigint AS deals,
       pg_catalog.round((100 * (c.v OPERATOR(pg_catalog.->>) 'predicted')::float8)::numeric, 2) AS predicted_win_pct,
       pg_catalog.round((100 * (c.v OPERATOR(pg_catalog.->>) 'observed')::float8)::numeric, 2) AS observed_win_pct
FROM dealrisk.models m
CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(
	CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'calibration') OPERATOR(pg_catalog.=) 'array'
	     THEN m.metrics OPERATOR(pg_catalog.->) 'calibration' ELSE '[]'::jsonb END) c(v)
WHERE m.active;

CREATE VIEW dealrisk_bi.refresh_status AS
SELECT * FROM dealrisk.refresh_status;

COMMENT ON VIEW dealrisk_bi.headline IS
	'One row: the deals of the BI source (closed, won, lost, open, unknown), the overall win rate with its 95% Wilson interval in percent, the latest complete quarter''s win rate and change, and the open pipeline''s value and high-risk part';
COMMENT ON VIEW dealrisk_bi.win_rate_by_quarter IS
	'Win rate per calendar quarter of closed_date: period ''2024-Q3'', closed, won, lost, rate and 95% Wilson interval in percent, change from the previous quarter in points with its two-proportion p-value; is_partial marks the quarter still under way (do not chart it as a drop)';
COMMENT ON VIEW dealrisk_bi.win_rate_by_month IS
	'Win rate per calendar month of closed_date: period ''2024-07'', as win_rate_by_quarter';
COMMENT ON VIEW dealrisk_bi.cycle_by_quarter IS
	'Sales-cycle length (days from created_date to closed_date) of the deals closed in each quarter: median, 75th percentile, mean, change of the median with its p-value; is_partial marks the quarter under way';
COMMENT ON VIEW dealrisk_bi.funnel IS
	'The stage funnel of dealrisk.funnel(): per stage, deals that reached it, won, lost there, open there, conversion to the next stage and from the first, win rate, in percent; caveat says when deal_stage cannot support a funnel (read it before the numbers)';
COMMENT ON VIEW dealrisk_bi.drivers IS
	'The drivers of the latest change of the win rate (dealrisk.drivers()): each segment whose win rate (kind rate) or share (kind mix) moved the overall rate, its effect and contribution in points with a 95% interval, p- and q-values, the drivers it explains; then the remainder and the total';
COMMENT ON VIEW dealrisk_bi.open_pipeline IS
	'Every open deal of the BI source: segment columns, amount, created date, days open and in stage, and under the BI model its risk (0-100), band, whether the alert policy makes it high-risk, top factor and reason, recommended action, and expected close date (dealrisk.forecast())';
COMMENT ON VIEW dealrisk_bi.risk_by_rep IS
	'The open pipeline per sales rep: deals, value, mean risk, high-risk deals (band high or critical) and their value, and expected lost value (sum of amount x risk / 100)';
COMMENT ON VIEW dealrisk_bi.risk_by_segment IS
	'The open pipeline per segment of industry, region, product_type, lead_source and deal_stage: as risk_by_rep';
COMMENT ON VIEW dealrisk_bi.value_at_risk_by_week IS
	'The open pipeline by week (Monday to Sunday) of expected close (dealrisk.forecast(): creation date plus the median cycle of won deals like it that were still open at its age; NULL week: no estimate): deals, value, expected lost value (sum of amount x risk / 100), high-risk deals and their value';
COMMENT ON VIEW dealrisk_bi.forecast IS
	'dealrisk.forecast() of the BI source over the next 90 days: group_by total, sales_rep_id or close_month; pipeline value, expected wins and won value with their 90% intervals, and the deals it cannot forecast';
COMMENT ON VIEW dealrisk_bi.source_checks IS
	'The preflight of the BI source (dealrisk.check_source()): one row per finding with its severity and hint';
COMMENT ON VIEW dealrisk_bi.diagnosis IS
	'dealrisk.diagnose() of the BI source, one row per line';
COMMENT ON VIEW dealrisk_bi.model_quality IS
	'The active models: method, source, when trained and activated, training and holdout deals, holdout AUC, log loss, Brier (and the base rate''s), accuracy and win rate in percent';
COMMENT ON VIEW dealrisk_bi.model_calibration IS
	'Calibration of each active model on its holdout: per decile of predicted win probability, the deals, the mean predicted and the observed win rate in percent';
COMMENT ON VIEW dealrisk_bi.refresh_status IS
	'dealrisk.refresh_status: the health of the daily refresh (the pg_cron columns are NULL for a role that may not read pg_cron''s tables)';

-- Privileges: set_source() is an operator's function; the builders are its
-- helpers.  The views give nothing to PUBLIC: docs/bi.md grants them.
REVOKE EXECUTE ON FUNCTION
	dealrisk.set_source(regclass, text),
	dealrisk._bi_build(),
	dealrisk._bi_fill(text, text, text, text, regclass, text, bigint, date, timestamptz),
	dealrisk._bi_section(text, regclass, bigint, date, timestamptz, bigint, text),
	dealrisk._bi_target()
FROM PUBLIC;
