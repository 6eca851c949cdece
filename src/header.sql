-- dealrisk install script, assembled by the Makefile from src/*.sql.
\echo Use "CREATE EXTENSION dealrisk" to load this file. \quit
