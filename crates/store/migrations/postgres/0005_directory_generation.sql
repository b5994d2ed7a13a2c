-- A counter every change of the subjects table moves (insert, update, delete), so that a
-- node can tell in one read whether the directory it keeps in memory for the connectors'
-- planning is still current, whichever node changed it. Not copied by `rolegate copy`: a
-- copy starts at 0, as every node's cache starts empty.
CREATE TABLE directory_generation (n BIGINT NOT NULL);
INSERT INTO directory_generation (n) VALUES (0);
CREATE FUNCTION bump_directory_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE directory_generation SET n = n + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER subjects_changed AFTER INSERT OR UPDATE OR DELETE ON subjects
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
