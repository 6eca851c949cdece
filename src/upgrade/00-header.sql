-- dealrisk 0.2.0 -> 0.3.0: trust on real CRM exports (issue #9).
-- Assembled by the Makefile from src/upgrade/*.sql in name order while
-- 0.3.0 is being developed; frozen into src/versions/ when it is released.
\echo Use "ALTER EXTENSION dealrisk UPDATE TO '0.3.0'" to load this file. \quit
