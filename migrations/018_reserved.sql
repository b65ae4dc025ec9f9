-- Reserved: migration 018 belongs to another branch of issue 20 (break-glass
-- containment). tern refuses a gap in the numbering, so this branch carries
-- an empty 018 until the two are merged; the merge keeps the other 018 and
-- drops this file.
SELECT 1;

---- create above / drop below ----

SELECT 1;
