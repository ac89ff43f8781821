-- Installed extensions of the database and their versions.
SELECT extname::text AS name, extversion AS version FROM pg_extension
