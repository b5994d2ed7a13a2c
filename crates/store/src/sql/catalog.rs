//! The catalog: resources, role definitions and role settings.

use super::tx::*;

impl CatalogRead for SqlTx<'_> {
    fn resource(&mut self, id: &str) -> Result<Option<Resource>> {
        self.one(
            &format!("SELECT {RESOURCE_COLS} FROM resources r WHERE r.id = ?"),
            &params![id],
            resource_row,
        )
    }
    fn resources_by_id(&mut self, ids: &[String]) -> Result<Vec<Resource>> {
        let select = format!("SELECT {RESOURCE_COLS} FROM resources r");
        self.many_in(&select, &["r.id"], ids, resource_row)
    }
    fn resource_by_external_key(&mut self, key: &str) -> Result<Option<Resource>> {
        self.one(
            &format!("SELECT {RESOURCE_COLS} FROM resources r WHERE r.external_key = ?"),
            &params![key],
            resource_row,
        )
    }
    fn list_resources(&mut self, q: &ListQuery) -> Result<Page<Resource>> {
        self.list(&RESOURCES, q, resource_row)
    }
    fn resource_counts(&mut self, id: &str, now: Timestamp) -> Result<(u64, u64)> {
        let assignments = self
            .one(
                "SELECT count(*) FROM assignments WHERE resource_id = ? AND start_at <= ? AND (end_at IS NULL OR end_at > ?)",
                &params![id, us(now), us(now)],
                |r| r.get::<i64>(0),
            )?
            .unwrap_or(0);
        let roles = self
            .one(
                "SELECT count(*) FROM role_definitions WHERE resource_id = ?",
                &params![id],
                |r| r.get::<i64>(0),
            )?
            .unwrap_or(0);
        Ok((assignments.max(0) as u64, roles.max(0) as u64))
    }
    fn all_resource_parents(&mut self) -> Result<Vec<(String, Option<String>)>> {
        self.many("SELECT id, parent_id FROM resources", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }
    fn all_role_templates(&mut self) -> Result<Vec<(String, String)>> {
        self.many("SELECT id, template_id FROM role_definitions", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }
    fn role_definition(&mut self, id: &str) -> Result<Option<RoleDefinition>> {
        self.one(
            &format!("SELECT {ROLE_COLS} FROM role_definitions d WHERE d.id = ?"),
            &params![id],
            role_row,
        )
    }
    fn role_definitions_by_id(&mut self, ids: &[String]) -> Result<Vec<RoleDefinition>> {
        let select = format!("SELECT {ROLE_COLS} FROM role_definitions d");
        self.many_in(&select, &["d.id"], ids, role_row)
    }
    fn role_definition_by_template(
        &mut self,
        resource_id: &str,
        template_id: &str,
    ) -> Result<Option<RoleDefinition>> {
        self.one(
            &format!("SELECT {ROLE_COLS} FROM role_definitions d WHERE d.resource_id = ? AND lower(d.template_id) = lower(?)"),
            &params![resource_id, template_id],
            role_row,
        )
    }
    fn list_role_definitions(&mut self, q: &ListQuery) -> Result<Page<RoleDefinition>> {
        self.list(&ROLE_DEFINITIONS, q, role_row)
    }
    fn role_setting(&mut self, id: &str) -> Result<Option<RoleSetting>> {
        self.one(
            &format!("SELECT {SETTING_COLS} FROM role_settings s WHERE s.id = ?"),
            &params![id],
            setting_row,
        )
    }
    fn role_setting_of(&mut self, role_definition_id: &str) -> Result<Option<RoleSetting>> {
        self.one(
            &format!("SELECT {SETTING_COLS} FROM role_settings s WHERE s.role_definition_id = ?"),
            &params![role_definition_id],
            setting_row,
        )
    }
    fn list_role_settings(&mut self, q: &ListQuery) -> Result<Page<RoleSetting>> {
        self.list(&ROLE_SETTINGS, q, setting_row)
    }
}

impl CatalogWrite for SqlTx<'_> {
    fn insert_resource(&mut self, r: &Resource, ancestors: &[String]) -> Result<()> {
        self.exec(
            "INSERT INTO resources (id, external_id, external_key, resource_type, display_name, status, registered_at, registered_root, parent_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &params![
                r.id,
                r.external_id,
                r.external_id.to_lowercase(),
                r.resource_type,
                r.display_name,
                r.status.as_str(),
                us(r.registered_at),
                r.registered_root,
                r.parent_id
            ],
        )?;
        self.exec(
            "INSERT INTO resource_ancestors (ancestor_id, resource_id, depth) VALUES (?, ?, 0)",
            &params![r.id, r.id],
        )?;
        for (depth, a) in ancestors.iter().enumerate() {
            self.exec(
                "INSERT INTO resource_ancestors (ancestor_id, resource_id, depth) VALUES (?, ?, ?)",
                &params![a, r.id, depth as i64 + 1],
            )?;
        }
        Ok(())
    }
    fn insert_role_definition(&mut self, d: &RoleDefinition, s: &RoleSetting) -> Result<()> {
        self.exec(
            "INSERT INTO role_definitions (id, resource_id, external_id, template_id, display_name) VALUES (?, ?, ?, ?, ?)",
            &params![d.id, d.resource_id, d.external_id, d.template_id, d.display_name],
        )?;
        self.exec(
            "INSERT INTO role_settings (id, resource_id, role_definition_id, is_default, last_updated_at, last_updated_by, \
             admin_eligible, admin_member, user_eligible, user_member) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &params![
                s.id,
                s.resource_id,
                s.role_definition_id,
                s.is_default,
                s.last_updated_at.map(us),
                s.last_updated_by,
                rules_json(&s.rules.admin_eligible)?,
                rules_json(&s.rules.admin_member)?,
                rules_json(&s.rules.user_eligible)?,
                rules_json(&s.rules.user_member)?
            ],
        )?;
        Ok(())
    }
    fn update_role_setting(&mut self, s: &RoleSetting) -> Result<()> {
        self.exec(
            "UPDATE role_settings SET is_default = ?, last_updated_at = ?, last_updated_by = ?, admin_eligible = ?, admin_member = ?, \
             user_eligible = ?, user_member = ? WHERE id = ?",
            &params![
                s.is_default,
                s.last_updated_at.map(us),
                s.last_updated_by,
                rules_json(&s.rules.admin_eligible)?,
                rules_json(&s.rules.admin_member)?,
                rules_json(&s.rules.user_eligible)?,
                rules_json(&s.rules.user_member)?,
                s.id
            ],
        )?;
        Ok(())
    }
}
