//! Role assignment requests and their approvals.

use super::tx::*;

impl RequestRead for SqlTx<'_> {
    fn request(&mut self, id: &str) -> Result<Option<RoleAssignmentRequest>> {
        self.one(
            &format!("SELECT {REQUEST_COLS} FROM requests q WHERE q.id = ?"),
            &params![id],
            request_row,
        )
    }
    fn pending_request(&mut self, key: &AssignmentKey) -> Result<Option<RoleAssignmentRequest>> {
        self.one(
            &format!(
                "SELECT {REQUEST_COLS} FROM requests q WHERE q.resource_id = ? AND q.role_definition_id = ? AND q.subject_id = ? AND q.state = ? \
                 AND q.sub_status IN ('Granted', 'PendingApproval', 'PendingAdminDecision')"
            ),
            &params![key.resource_id, key.role_definition_id, key.subject_id, key.state.as_str()],
            request_row,
        )
    }
    fn pending_requests_linked_to(
        &mut self,
        eligible_id: &str,
    ) -> Result<Vec<RoleAssignmentRequest>> {
        self.many(
            &format!(
                "SELECT {REQUEST_COLS} FROM requests q WHERE q.linked_eligible_id = ? AND q.sub_status IN ('PendingApproval', 'PendingAdminDecision')"
            ),
            &params![eligible_id],
            request_row,
        )
    }
    fn pending_requests_of(&mut self, subject_id: &str) -> Result<Vec<RoleAssignmentRequest>> {
        self.many(
            &format!(
                "SELECT {REQUEST_COLS} FROM requests q WHERE q.subject_id = ? AND q.sub_status IN ('Granted', 'PendingApproval', 'PendingAdminDecision')"
            ),
            &params![subject_id],
            request_row,
        )
    }
    fn list_requests(&mut self, q: &ListQuery) -> Result<Page<RoleAssignmentRequest>> {
        self.list(&REQUESTS, q, request_row)
    }
    fn approvals_by(&mut self, approver_id: &str, limit: u32) -> Result<Vec<Approval>> {
        self.many(
            "SELECT request_id, approver_id, approver_name, approved, justification, at FROM approvals WHERE approver_id = ? ORDER BY at DESC LIMIT ?",
            &params![approver_id, limit],
            approval_row,
        )
    }
    fn approvals(&mut self, request_id: &str) -> Result<Vec<Approval>> {
        self.many(
            "SELECT request_id, approver_id, approver_name, approved, justification, at FROM approvals WHERE request_id = ? ORDER BY at",
            &params![request_id],
            approval_row,
        )
    }
}

fn approval_row(r: &Row) -> Result<Approval> {
    Ok(Approval {
        request_id: r.get(0)?,
        approver_id: r.get(1)?,
        approver_name: r.get(2)?,
        approved: r.get(3)?,
        justification: r.get(4)?,
        at: ts(r.get(5)?)?,
    })
}

impl RequestWrite for SqlTx<'_> {
    fn insert_request(&mut self, r: &RoleAssignmentRequest) -> Result<()> {
        self.write_request(r, true).map(|_| ())
    }
    fn update_request(&mut self, r: &RoleAssignmentRequest) -> Result<()> {
        match self.write_request(r, false)? {
            1 => Ok(()),
            _ => Err(DomainError::new(
                ErrorCode::Conflict,
                format!("request `{}` was changed concurrently; retry", r.id),
            )),
        }
    }
    fn set_request_approvers(&mut self, request_id: &str, approvers: &[String]) -> Result<()> {
        for a in approvers {
            self.exec(
                "INSERT INTO request_approvers (request_id, approver_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                &params![request_id, a],
            )?;
        }
        Ok(())
    }
    fn insert_approval(&mut self, a: &Approval) -> Result<()> {
        self.exec(
            "INSERT INTO approvals (request_id, approver_id, approver_name, approved, justification, at) VALUES (?, ?, ?, ?, ?, ?)",
            &params![a.request_id, a.approver_id, a.approver_name, a.approved, a.justification, us(a.at)],
        )?;
        Ok(())
    }
}
