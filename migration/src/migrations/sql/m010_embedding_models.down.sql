-- m010 down: the registry only; chunks keep their stamps in metadata.
-- Undoes exactly the up; no client of an earlier release reads this table.
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS embedding_models;
