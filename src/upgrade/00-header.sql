-- dealrisk 0.3.0 -> 0.4.0: drivers that explain each other away (issue #13).
-- Assembled by the Makefile from src/upgrade/*.sql in name order while
-- 0.4.0 is being developed; frozen into src/versions/ when it is released.
\echo Use "ALTER EXTENSION dealrisk UPDATE TO '0.4.0'" to load this file. \quit
