//! Directory: subjects, their SCIM records and group membership.

use super::tx::*;

impl DirectoryRead for SqlTx<'_> {
    fn subject(&mut self, id: &str) -> Result<Option<Subject>> {
        match self.one(
            &format!("SELECT {SUBJECT_COLS} FROM subjects WHERE id = ?"),
            &params![id],
            subject_row,
        )? {
            Some(s) => Ok(Some(s)),
            None => self.one(
                &format!("SELECT {SUBJECT_COLS} FROM subjects WHERE external_id = ?"),
                &params![id],
                subject_row,
            ),
        }
    }
    fn subjects_by_id(&mut self, ids: &[String]) -> Result<Vec<Subject>> {
        let select = format!("SELECT {SUBJECT_COLS} FROM subjects");
        self.many_in(&select, &["id", "external_id"], ids, subject_row)
    }
    fn all_subjects(&mut self) -> Result<Vec<Subject>> {
        self.many(
            &format!("SELECT {SUBJECT_COLS} FROM subjects ORDER BY id"),
            &[],
            subject_row,
        )
    }
    fn all_subjects_with_scim(&mut self) -> Result<Vec<(Subject, ScimRecord)>> {
        self.many(
            &format!("SELECT {SCIM_SUBJECT_COLS} FROM subjects s ORDER BY s.id"),
            &[],
            scim_subject_row,
        )
    }
    fn directory_generation(&mut self) -> Result<i64> {
        Ok(self
            .one("SELECT n FROM directory_generation", &[], |r| {
                r.get::<i64>(0)
            })?
            .unwrap_or(0))
    }
    fn list_subjects(&mut self, q: &SubjectQuery) -> Result<Page<(Subject, ScimRecord)>> {
        let wh = crate::sql::scim::where_sql(q, self.c.dialect())?;
        let order = crate::sql::scim::order_sql(q.sort.as_ref(), self.c.dialect());
        let total = self
            .one(
                &format!("SELECT count(*) FROM subjects s WHERE {}", wh.sql),
                &wh.params,
                |r| r.get::<i64>(0),
            )?
            .map(|n| n.max(0) as u64);
        let mut p = wh.params.clone();
        p.extend(order.params);
        p.push(Value::Integer(i64::from(q.top) + 1));
        p.push(Value::Integer(i64::try_from(q.skip).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {SCIM_SUBJECT_COLS} FROM subjects s WHERE {} ORDER BY {} LIMIT ? OFFSET ?",
            wh.sql, order.sql
        );
        let mut items = self.many(&sql, &p, scim_subject_row)?;
        let more = items.len() > q.top as usize;
        items.truncate(q.top as usize);
        Ok(Page { items, total, more })
    }
    fn subject_scim(&mut self, id: &str) -> Result<Option<ScimRecord>> {
        self.one(
            &format!("SELECT {SCIM_SUBJECT_COLS} FROM subjects s WHERE s.id = ?"),
            &params![id],
            scim_subject_row,
        )
        .map(|r| r.map(|(_, rec)| rec))
    }
    fn group_members(&mut self, group_id: &str) -> Result<Vec<String>> {
        self.many(
            "SELECT member_id FROM group_members WHERE group_id = ? ORDER BY member_id",
            &params![group_id],
            |r| r.get(0),
        )
    }
    fn groups_of(&mut self, member_id: &str) -> Result<Vec<String>> {
        self.many(
            "SELECT group_id FROM group_members WHERE member_id = ? ORDER BY group_id",
            &params![member_id],
            |r| r.get(0),
        )
    }
    fn all_memberships(&mut self) -> Result<Vec<(String, String)>> {
        self.many("SELECT group_id, member_id FROM group_members", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }
}

impl DirectoryWrite for SqlTx<'_> {
    fn insert_subject(&mut self, s: &Subject, now: Timestamp) -> Result<()> {
        // A subject inserted outside SCIM (seeded) gets its directory attributes as its SCIM
        // document; SCIM creation replaces it in the same transaction.
        let doc = serde_json::to_string(&rolegate_core::scim::resource::synthesize(s))
            .map_err(|e| DomainError::internal(format!("scim document: {e}")))?;
        let now = us(now);
        self.exec(
            &format!(
                "INSERT INTO subjects ({SUBJECT_COLS}, scim_attributes, created_at, modified_at, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
            ),
            &params![
                s.id,
                s.external_id,
                s.kind.as_str(),
                s.display_name,
                s.principal_name,
                s.email,
                s.active,
                doc,
                now,
                now
            ],
        )?;
        Ok(())
    }
    fn update_subject(&mut self, s: &Subject) -> Result<()> {
        self.exec(
            "UPDATE subjects SET external_id = ?, kind = ?, display_name = ?, principal_name = ?, email = ?, active = ? WHERE id = ?",
            &params![s.external_id, s.kind.as_str(), s.display_name, s.principal_name, s.email, s.active, s.id],
        )?;
        Ok(())
    }
    fn delete_subject(&mut self, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM group_members WHERE group_id = ? OR member_id = ?",
            &params![id, id],
        )?;
        self.exec("DELETE FROM subjects WHERE id = ?", &params![id])?;
        Ok(())
    }
    fn set_subject_scim(&mut self, id: &str, rec: &ScimRecord) -> Result<()> {
        let doc = serde_json::to_string(&rec.attributes)
            .map_err(|e| DomainError::internal(format!("scim document: {e}")))?;
        self.exec(
            "UPDATE subjects SET scim_attributes = ?, created_at = ?, modified_at = ?, version = ? WHERE id = ?",
            &params![
                doc,
                rec.created.map(us),
                rec.last_modified.map(us),
                i64::try_from(rec.version).unwrap_or(i64::MAX),
                id
            ],
        )?;
        Ok(())
    }
    fn set_group_members(&mut self, group_id: &str, members: &[String]) -> Result<()> {
        // Only the difference is written: a PATCH adding one member to a large group
        // touches one row.
        let before: std::collections::HashSet<String> =
            self.group_members(group_id)?.into_iter().collect();
        let after: std::collections::HashSet<&String> = members.iter().collect();
        for m in before.iter().filter(|m| !after.contains(m)) {
            self.exec(
                "DELETE FROM group_members WHERE group_id = ? AND member_id = ?",
                &params![group_id, m],
            )?;
        }
        for m in members.iter().filter(|m| !before.contains(*m)) {
            self.exec(
                "INSERT INTO group_members (group_id, member_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                &params![group_id, m],
            )?;
        }
        Ok(())
    }
}
