-- A counter every change of the subjects table moves (insert, update, delete), so that a
-- node can tell in one read whether the directory it keeps in memory for the connectors'
-- planning is still current, whichever node changed it. Not copied by `rolegate copy`: a
-- copy starts at 0, as every node's cache starts empty.
CREATE TABLE directory_generation (n INTEGER NOT NULL);
INSERT INTO directory_generation (n) VALUES (0);
CREATE TRIGGER subjects_inserted AFTER INSERT ON subjects
BEGIN UPDATE directory_generation SET n = n + 1; END;
CREATE TRIGGER subjects_updated AFTER UPDATE ON subjects
BEGIN UPDATE directory_generation SET n = n + 1; END;
CREATE TRIGGER subjects_deleted AFTER DELETE ON subjects
BEGIN UPDATE directory_generation SET n = n + 1; END;
