//! Provisioning connectors' rules (connectors.md §3): which role on which scope grants which
//! target, and how a directory subject becomes a principal in the external system. Pure: the
//! configuration loader (crate `rolegate-connectors`) builds these, the desired state is
//! computed from them.

use crate::role::{BUILT_IN_ROLES, BuiltInRole};
use crate::scope::ArmId;

/// "Whoever holds this role on this scope gets this target" (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its position in the connector's `rules` array (0-based).
    pub index: usize,
    /// The role, resolved to a built-in role.
    pub role: &'static BuiltInRole,
    /// The scope it covers (assignments on it or an ancestor count).
    pub scope: ArmId,
    /// The target granted.
    pub target: String,
}

/// Resolves a rule's `role`: a templateId (any case) or a displayName (case-insensitive).
pub fn resolve_role(text: &str) -> Option<&'static BuiltInRole> {
    let t = text.trim();
    BUILT_IN_ROLES
        .iter()
        .find(|r| r.template_id.eq_ignore_ascii_case(t) || r.display_name.eq_ignore_ascii_case(t))
}

/// One source of a principal's value (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSource {
    /// The SCIM `userName`.
    UserName,
    /// `userName` up to its last `@`.
    UserNameLocalPart,
    /// The SCIM `externalId`.
    ExternalId,
    /// An attribute of a SCIM schema extension: the schema URN and the attribute path
    /// (`employeeNumber`, `manager.value`).
    Extension {
        /// The schema URN.
        schema: String,
        /// The attribute, with an optional sub-attribute after a dot.
        attribute: String,
    },
}

impl PrincipalSource {
    /// Reads a source as the configuration writes it; `None` when it is none of §3.2's.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "userName" => Some(Self::UserName),
            "userNameLocalPart" => Some(Self::UserNameLocalPart),
            "externalId" => Some(Self::ExternalId),
            _ => {
                if !text.get(..4)?.eq_ignore_ascii_case("urn:") {
                    return None;
                }
                let (schema, attribute) = text.rsplit_once(':')?;
                let valid = |s: &str| {
                    let mut chars = s.chars();
                    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                };
                let ok = match attribute.split_once('.') {
                    Some((a, sub)) => valid(a) && valid(sub),
                    None => valid(attribute),
                };
                (ok && schema.len() > 4).then(|| Self::Extension {
                    schema: schema.to_string(),
                    attribute: attribute.to_string(),
                })
            }
        }
    }

    /// The source as the configuration writes it.
    pub fn as_text(&self) -> String {
        match self {
            Self::UserName => "userName".into(),
            Self::UserNameLocalPart => "userNameLocalPart".into(),
            Self::ExternalId => "externalId".into(),
            Self::Extension { schema, attribute } => format!("{schema}:{attribute}"),
        }
    }
}

/// What is done to the mapped value before the kind formats it (§2.2 `principal_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalCase {
    /// As the directory has it.
    Preserve,
    /// Lower-cased.
    Lower,
}

/// What reconciliation does with a grant made outside Rolegate (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrift {
    /// Revoke it.
    Revoke,
    /// Report it and leave it.
    Report,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_resolve_by_template_id_or_display_name_in_any_case() {
        let reader = resolve_role("Reader").map(|r| r.template_id);
        assert_eq!(reader, Some("acdd72a7-3385-48ef-bd42-f606fba81ae7"));
        assert_eq!(resolve_role("reader").map(|r| r.template_id), reader);
        assert_eq!(
            resolve_role("ACDD72A7-3385-48EF-BD42-F606FBA81AE7").map(|r| r.template_id),
            reader
        );
        assert!(resolve_role("Redaer").is_none());
    }

    #[test]
    fn principal_sources_are_the_three_names_or_an_extension_attribute() {
        assert_eq!(
            PrincipalSource::parse("userNameLocalPart"),
            Some(PrincipalSource::UserNameLocalPart)
        );
        let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";
        let parsed = PrincipalSource::parse(urn);
        assert_eq!(
            parsed,
            Some(PrincipalSource::Extension {
                schema: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
                attribute: "employeeNumber".into()
            })
        );
        assert_eq!(parsed.map(|p| p.as_text()).as_deref(), Some(urn));
        for bad in [
            "username",
            "mail",
            "urn:",
            "urn:x:",
            "urn:x:1abc",
            "urn:x:a.b.c",
            "",
        ] {
            assert_eq!(PrincipalSource::parse(bad), None, "{bad}");
        }
    }
}
