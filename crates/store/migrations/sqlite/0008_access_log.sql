-- Rolegate schema v8: the access log. Nodes that share a database (PostgreSQL) append the
-- changes to effective access each write commits, and catch their in-memory access index
-- up from it before deciding; the embedded single-node store keeps the table (one SQL text
-- serves both backends) but never writes it.
CREATE TABLE access_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    changes TEXT NOT NULL
);
CREATE INDEX access_log_at ON access_log(at);
