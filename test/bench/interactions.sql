-- interactions.sql: sample deals whose outcome has planted interactions,
-- for the tree-model benchmarks of issue #10 (test/bench/gbm_quality.sh,
-- test/bench/gbm_speed.sh).  Not part of the extension.
--
--   psql -X -v tbl=ix_50k -v n=50000 -v seed=42 -f test/bench/interactions.sql
--
-- The deals are dealrisk.sample_deals(n, seed) (dates, reps, industries,
-- regions, products, lead sources, amounts, cycles, which deals are still
-- open as of 2024-12-31); only the outcome of each closed deal is drawn
-- again, from a win probability of its own (column planted_win_prob):
--
--   logit = 0.2
--     - 0.4 FinTech + 0.3 SaaS                      (industry)
--     - 0.6 Outbound + 0.3 Referral                 (lead_source)
--     - 0.8 rep_7 + 0.5 rep_3                       (sales_rep_id)
--     + product x region, no main effect of either on its own:
--         Enterprise/APAC +1.2, Enterprise/Europe -1.2,
--         Core/India -1.0, Core/Europe +0.5,
--         Pro/North America +0.8, Pro/APAC -0.6
--     + a non-monotone cycle effect: -0.7 z^2 (at most -2.5), with
--         z = (ln(sales_cycle_days) - ln 55) / 0.6, and another -1.0 for
--         deals closed within 5 days: very fast and very slow deals lose
--     - 0.6 when deal_amount is above twice its product's typical amount
--         (8,000 Core, 18,000 Pro, 60,000 Enterprise): amount x product
--
-- won = hash_uniform(seed, i, 101) < planted_win_prob (stream 101 is not
-- one of sample_deals' streams), i the deal's row number.  A won deal ends
-- in stage Closed, a lost one in the stage sample_deals gave it (Negotiation
-- where that was Closed).  The activity dates are sample_deals' (they do
-- not enter the probability); the benchmarks train on industry, region,
-- product_type, lead_source, sales_rep_id, deal_amount and cycle_days only.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP TABLE IF EXISTS :"tbl";
CREATE TABLE :"tbl" AS
SELECT x.deal_id, x.created_date, x.closed_date, x.sales_rep_id, x.industry, x.region,
	x.product_type, x.lead_source,
	CASE WHEN x.outcome IS NULL THEN x.deal_stage
	     WHEN x.won THEN 'Closed'
	     WHEN x.deal_stage = 'Closed' THEN 'Negotiation'
	     ELSE x.deal_stage END AS deal_stage,
	x.deal_amount, x.sales_cycle_days,
	CASE WHEN x.outcome IS NULL THEN NULL WHEN x.won THEN 'Won' ELSE 'Lost' END AS outcome,
	x.last_activity_date, x.stage_entered_date,
	x.p AS planted_win_prob
FROM (
	SELECT q.*, dealrisk.hash_uniform(:seed, q.i, 101) < q.p AS won
	FROM (
		SELECT s.*, substr(s.deal_id, 2)::bigint AS i,
			1 / (1 + exp(-(0.2
				- 0.4 * (s.industry = 'FinTech')::int + 0.3 * (s.industry = 'SaaS')::int
				- 0.6 * (s.lead_source = 'Outbound')::int + 0.3 * (s.lead_source = 'Referral')::int
				- 0.8 * (s.sales_rep_id = 'rep_7')::int + 0.5 * (s.sales_rep_id = 'rep_3')::int
				+ CASE s.product_type || '/' || s.region
					WHEN 'Enterprise/APAC' THEN 1.2 WHEN 'Enterprise/Europe' THEN -1.2
					WHEN 'Core/India' THEN -1.0 WHEN 'Core/Europe' THEN 0.5
					WHEN 'Pro/North America' THEN 0.8 WHEN 'Pro/APAC' THEN -0.6
					ELSE 0 END
				- least(2.5, 0.7 * power((ln(greatest(s.sales_cycle_days, 1)) - ln(55)) / 0.6, 2))
				- 1.0 * (s.sales_cycle_days <= 5)::int
				- 0.6 * (s.deal_amount > 2 * CASE s.product_type WHEN 'Core' THEN 8000
				                                            WHEN 'Pro' THEN 18000 ELSE 60000 END)::int
			)::float8)) AS p
		FROM dealrisk.sample_deals(:n, :seed) s
	) q
) x;
ALTER TABLE :"tbl" ADD PRIMARY KEY (deal_id);
VACUUM ANALYZE :"tbl";
