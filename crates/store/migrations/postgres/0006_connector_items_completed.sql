-- Reconciliation asks which items of a connector succeeded since its pass began: by
-- completion time, however many items there are.
CREATE INDEX connector_items_completed ON connector_items(connector, state, completed_at);
