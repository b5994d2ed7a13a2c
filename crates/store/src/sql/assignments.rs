//! Role assignments, live and in history.

use super::tx::*;

impl AssignmentRead for SqlTx<'_> {
    fn assignment(&mut self, id: &str) -> Result<Option<RoleAssignment>> {
        self.one(
            &format!("SELECT {ASSIGNMENT_COLS} FROM assignments a WHERE a.id = ?"),
            &params![id],
            assignment_row,
        )
    }
    fn assignment_in_history(&mut self, id: &str) -> Result<Option<RoleAssignment>> {
        self.one(
            &format!("SELECT {ASSIGNMENT_COLS} FROM assignment_history a WHERE a.id = ?"),
            &params![id],
            assignment_row,
        )
    }
    fn assignments_with_key(&mut self, key: &AssignmentKey) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!(
                "SELECT {ASSIGNMENT_COLS} FROM assignments a WHERE a.resource_id = ? AND a.role_definition_id = ? AND a.subject_id = ? AND a.state = ?"
            ),
            &params![key.resource_id, key.role_definition_id, key.subject_id, key.state.as_str()],
            assignment_row,
        )
    }
    fn expired_in_history(
        &mut self,
        key: &AssignmentKey,
        since: Timestamp,
    ) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!(
                "SELECT {ASSIGNMENT_COLS} FROM assignment_history a WHERE a.resource_id = ? AND a.role_definition_id = ? AND a.subject_id = ? \
                 AND a.state = ? AND a.end_reason = 'Expired' AND a.end_at > ? ORDER BY a.end_at DESC LIMIT 10"
            ),
            &params![key.resource_id, key.role_definition_id, key.subject_id, key.state.as_str(), us(since)],
            assignment_row,
        )
    }
    fn expired_assignments_of(
        &mut self,
        subject_id: &str,
        since: Timestamp,
    ) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!(
                "SELECT {ASSIGNMENT_COLS} FROM assignment_history a WHERE a.subject_id = ? \
                 AND a.end_reason = 'Expired' AND a.end_at > ? ORDER BY a.end_at DESC LIMIT 100"
            ),
            &params![subject_id, us(since)],
            assignment_row,
        )
    }
    fn expired_assignments_on(
        &mut self,
        resource_id: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!(
                "SELECT {ASSIGNMENT_COLS} FROM assignment_history a WHERE a.resource_id = ? \
                 AND a.end_reason = 'Expired' AND a.end_at > ? ORDER BY a.end_at DESC LIMIT ?"
            ),
            &params![resource_id, us(since), limit],
            assignment_row,
        )
    }
    fn activations_of(&mut self, eligible_id: &str) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!("SELECT {ASSIGNMENT_COLS} FROM assignments a WHERE a.linked_eligible_id = ?"),
            &params![eligible_id],
            assignment_row,
        )
    }
    fn assignments_of(
        &mut self,
        subjects: &[String],
        resources: &[String],
        state: AssignmentState,
    ) -> Result<Vec<RoleAssignment>> {
        let sql = format!(
            "SELECT {ASSIGNMENT_COLS} FROM assignments a WHERE a.subject_id IN ({}) AND a.resource_id IN ({}) AND a.state = ?",
            placeholders(subjects.len().max(1)),
            placeholders(resources.len().max(1))
        );
        let mut p = SqlFragment {
            sql: String::new(),
            params: Vec::new(),
        };
        push_ids(&mut p, subjects);
        push_ids(&mut p, resources);
        p.params.push(Value::Text(state.as_str().into()));
        self.many(&sql, &p.params, assignment_row)
    }
    fn history_of(
        &mut self,
        subjects: Option<&[String]>,
        resources: Option<&[String]>,
        after: Timestamp,
    ) -> Result<Vec<RoleAssignment>> {
        let mut sql = format!(
            "SELECT {ASSIGNMENT_COLS}, a.ended_at FROM assignment_history a \
             WHERE a.ended_at > ? AND (a.end_at IS NULL OR a.end_at > ?)"
        );
        let mut p = SqlFragment {
            sql: String::new(),
            params: vec![Value::Integer(us(after)), Value::Integer(us(after))],
        };
        if let Some(subjects) = subjects {
            sql.push_str(&format!(
                " AND a.subject_id IN ({})",
                placeholders(subjects.len().max(1))
            ));
            push_ids(&mut p, subjects);
        }
        if let Some(resources) = resources {
            sql.push_str(&format!(
                " AND a.resource_id IN ({})",
                placeholders(resources.len().max(1))
            ));
            push_ids(&mut p, resources);
        }
        self.many(&sql, &p.params, |r| {
            let mut a = assignment_row(r)?;
            let ended = ts(r.get(9)?)?;
            // It stopped counting at its end or when it was ended, whichever came first.
            a.schedule.end = Some(a.schedule.end.map_or(ended, |e| e.min(ended)));
            Ok(a)
        })
    }
    fn live_assignments_of(&mut self, subject_id: &str) -> Result<Vec<RoleAssignment>> {
        self.many(
            &format!("SELECT {ASSIGNMENT_COLS} FROM assignments a WHERE a.subject_id = ?"),
            &params![subject_id],
            assignment_row,
        )
    }
    fn held_assignments(&mut self, by: HeldBy, ids: &[String]) -> Result<Vec<HeldAssignment>> {
        let select = format!("SELECT {ASSIGNMENT_COLS}, a.seq FROM assignments a");
        let column = match by {
            HeldBy::Subject => "a.subject_id",
            HeldBy::Resource => "a.resource_id",
        };
        let mut rows = self.many_in(&select, &[column], ids, |row| {
            Ok(HeldAssignment {
                assignment: assignment_row(row)?,
                position: row.get(9)?,
            })
        })?;
        rows.sort_unstable_by_key(|h| h.position);
        Ok(rows)
    }
    fn list_assignments(&mut self, q: &ListQuery) -> Result<Page<RoleAssignment>> {
        self.list(&ASSIGNMENTS, q, assignment_row)
    }
    fn for_each_live_assignment(
        &mut self,
        now: Timestamp,
        each: &mut dyn FnMut(RoleAssignment, bool),
    ) -> Result<()> {
        let sql = format!(
            "SELECT {ASSIGNMENT_COLS}, d.template_id FROM assignments a JOIN role_definitions d ON d.id = a.role_definition_id \
             WHERE a.end_at IS NULL OR a.end_at > ?"
        );
        self.c.query_each(&sql, &params![us(now)], &mut |row| {
            let a = assignment_row(row)?;
            let template: String = row.get(9)?;
            each(a, is_access_admin_template(&template));
            Ok(())
        })
    }
    fn access_administrators(
        &mut self,
        resources: &[String],
        now: Timestamp,
    ) -> Result<Vec<RoleAssignment>> {
        if resources.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {ASSIGNMENT_COLS}, d.template_id FROM assignments a JOIN role_definitions d ON d.id = a.role_definition_id \
             WHERE a.resource_id IN ({}) AND a.state = 'Active' AND a.start_at <= ? AND (a.end_at IS NULL OR a.end_at > ?)",
            placeholders(resources.len())
        );
        let mut p = SqlFragment {
            sql: String::new(),
            params: Vec::new(),
        };
        push_ids(&mut p, resources);
        p.params.push(Value::Integer(us(now)));
        p.params.push(Value::Integer(us(now)));
        let rows = self.many(&sql, &p.params, |row| {
            Ok((assignment_row(row)?, row.get::<String>(9)?))
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, template)| is_access_admin_template(template))
            .map(|(a, _)| a)
            .collect())
    }
}

impl AssignmentWrite for SqlTx<'_> {
    fn insert_assignment(&mut self, a: &RoleAssignment) -> Result<()> {
        self.insert_assignment_into("assignments", a)
    }
    fn update_assignment(&mut self, a: &RoleAssignment) -> Result<()> {
        self.exec(
            "UPDATE assignments SET start_at = ?, end_at = ?, request_id = ? WHERE id = ?",
            &params![
                us(a.schedule.start),
                a.schedule.end.map(us),
                a.request_id,
                a.id
            ],
        )?;
        Ok(())
    }
    fn end_assignment(
        &mut self,
        a: &RoleAssignment,
        at: Timestamp,
        reason: EndReason,
        request_id: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "DELETE FROM assignment_history WHERE id = ?",
            &params![a.id],
        )?;
        self.exec(
            "INSERT INTO assignment_history (id, resource_id, role_definition_id, subject_id, state, linked_eligible_id, start_at, end_at, \
             request_id, ended_at, end_reason, ended_by_request) \
             SELECT id, resource_id, role_definition_id, subject_id, state, linked_eligible_id, start_at, end_at, request_id, ?, ?, ? \
             FROM assignments WHERE id = ?",
            &params![us(at), reason.as_str(), request_id, a.id],
        )?;
        self.exec("DELETE FROM assignments WHERE id = ?", &params![a.id])?;
        Ok(())
    }
    fn restore_assignment(&mut self, a: &RoleAssignment) -> Result<()> {
        self.exec(
            "DELETE FROM assignment_history WHERE id = ?",
            &params![a.id],
        )?;
        self.insert_assignment_into("assignments", a)
    }
}
