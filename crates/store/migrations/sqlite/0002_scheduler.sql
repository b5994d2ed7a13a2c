-- Rolegate schema v2: indexes for the background scheduler (decisions.md §10). Each job
-- finds its due rows with one range scan of a small partial index, already in due order,
-- so a pass costs O(rows due), not O(table). The status column leads each index so the
-- planner prefers it over `requests_sub_status` (which would need a sort).
--
-- Ended assignments are found through `assignments_end` (0001_initial.sql).

-- Granted requests by start: "future-start grants whose start has come".
CREATE INDEX requests_granted_start ON requests(sub_status, start_at)
    WHERE sub_status = 'Granted';

-- Pending approvals by deadline: "approvals nobody decided in time".
CREATE INDEX requests_approval_deadline ON requests(sub_status, approval_deadline)
    WHERE sub_status = 'PendingApproval';
