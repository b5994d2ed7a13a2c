//! What a role allows (authzen.md §4.2, Azure RBAC semantics): a role's permissions are
//! entries of four pattern lists; an operation is granted by an entry when one of its
//! `actions` matches and none of its `notActions` does (`dataActions` / `notDataActions`
//! for data-plane operations; the planes never mix). Patterns compare ASCII
//! case-insensitively and `*` stands for any run of characters, `/` included. Roles add up:
//! `notActions` is not a deny. The built-in roles' permissions are data
//! (`data/builtin-role-permissions.json`, from Microsoft's built-in roles reference),
//! compiled into the binary.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

/// One entry of a role's `permissions` (ARM's `roleDefinition` shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionEntry {
    /// Control-plane operations granted.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Control-plane operations taken out of `actions`.
    #[serde(default)]
    pub not_actions: Vec<String>,
    /// Data-plane operations granted.
    #[serde(default)]
    pub data_actions: Vec<String>,
    /// Data-plane operations taken out of `data_actions`.
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

/// Which plane an operation belongs to (ARM's `isDataAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Management operations (`actions`).
    Control,
    /// Operations on the data (`dataActions`).
    Data,
}

impl PermissionEntry {
    /// Whether this entry grants `operation` on `plane`.
    pub fn grants(&self, operation: &str, plane: Plane) -> bool {
        let (allow, deny) = match plane {
            Plane::Control => (&self.actions, &self.not_actions),
            Plane::Data => (&self.data_actions, &self.not_data_actions),
        };
        allow.iter().any(|p| pattern_matches(p, operation))
            && !deny.iter().any(|p| pattern_matches(p, operation))
    }
}

/// Whether a role with `permissions` grants `operation` on `plane` (any entry does).
pub fn role_grants(permissions: &[PermissionEntry], operation: &str, plane: Plane) -> bool {
    permissions.iter().any(|e| e.grants(operation, plane))
}

/// Whether `pattern` (with `*` for any run of characters, `/` included) equals the whole of
/// `operation`, ASCII case-insensitively.
pub fn pattern_matches(pattern: &str, operation: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), operation.as_bytes());
    // The classic linear-time wildcard match: on a mismatch, let the last `*` take one
    // more character and retry from there.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&s[j]) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i.min(p.len())..].iter().all(|c| *c == b'*')
}

/// Whether `name` is a well-formed Azure operation to ask about: at least two non-empty
/// `/`-separated segments, no whitespace and no `*` (authzen.md §3.3).
pub fn is_operation(name: &str) -> bool {
    let mut segments = 0;
    for segment in name.split('/') {
        if segment.is_empty() {
            return false;
        }
        segments += 1;
    }
    segments >= 2 && !name.contains('*') && !name.chars().any(char::is_whitespace)
}

/// One built-in role of the data file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltInPermissions {
    /// The role's name.
    pub display_name: String,
    /// Its permissions.
    pub permissions: Vec<PermissionEntry>,
}

#[derive(Deserialize)]
struct PermissionFile {
    roles: HashMap<String, BuiltInPermissions>,
}

/// The data file, as compiled in.
const BUILT_IN_JSON: &str = include_str!("../data/builtin-role-permissions.json");

static BUILT_IN: LazyLock<HashMap<String, BuiltInPermissions>> = LazyLock::new(|| {
    // The file is checked by a test; a file that does not parse leaves every role without
    // permissions (nothing granted) rather than stopping the server.
    serde_json::from_str::<PermissionFile>(BUILT_IN_JSON)
        .map(|f| {
            f.roles
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        })
        .unwrap_or_default()
});

/// The permissions of the built-in role with `template_id` (any case), if Rolegate ships it.
pub fn built_in(template_id: &str) -> Option<&'static BuiltInPermissions> {
    BUILT_IN.get(&template_id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    const UAA: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
    const VM_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
    const KEY_VAULT_ADMIN: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
    const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";

    fn grants(template: &str, op: &str, plane: Plane) -> bool {
        built_in(template).is_some_and(|r| role_grants(&r.permissions, op, plane))
    }

    #[test]
    fn the_data_file_holds_the_eight_shipped_roles_as_published() {
        // authzen.md §13: actions / notActions / dataActions / notDataActions per role.
        let expected = [
            (OWNER, "Owner", [1usize, 0, 0, 0]),
            (CONTRIBUTOR, "Contributor", [1, 11, 0, 0]),
            (READER, "Reader", [1, 0, 0, 0]),
            (UAA, "User Access Administrator", [3, 0, 0, 0]),
            (VM_CONTRIBUTOR, "Virtual Machine Contributor", [45, 0, 0, 0]),
            (
                "4d97b98b-1d4f-4787-a291-c67834d212e7",
                "Network Contributor",
                [7, 0, 0, 0],
            ),
            (KEY_VAULT_ADMIN, "Key Vault Administrator", [10, 0, 1, 0]),
            (
                BLOB_CONTRIBUTOR,
                "Storage Blob Data Contributor",
                [4, 0, 5, 0],
            ),
        ];
        let file: PermissionFile =
            serde_json::from_str(BUILT_IN_JSON).expect("the permission file parses");
        assert_eq!(file.roles.len(), expected.len());
        for (template, name, counts) in expected {
            let role = built_in(template).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(role.display_name, name);
            let sum = |f: fn(&PermissionEntry) -> usize| -> usize {
                role.permissions.iter().map(f).sum()
            };
            let got = [
                sum(|e| e.actions.len()),
                sum(|e| e.not_actions.len()),
                sum(|e| e.data_actions.len()),
                sum(|e| e.not_data_actions.len()),
            ];
            assert_eq!(got, counts, "{name}");
        }
        // Every role Rolegate materialises on a resource has its permissions here, by the
        // same name.
        for role in crate::role::BUILT_IN_ROLES {
            let p = built_in(role.template_id)
                .unwrap_or_else(|| panic!("{} has no permissions", role.display_name));
            assert_eq!(p.display_name, role.display_name);
        }
    }

    #[test]
    fn patterns_match_as_azure_rbac_does() {
        assert!(pattern_matches(
            "*",
            "Microsoft.Compute/virtualMachines/start/action"
        ));
        assert!(pattern_matches(
            "*/read",
            "Microsoft.Compute/virtualMachines/extensions/read"
        ));
        assert!(pattern_matches(
            "Microsoft.Compute/virtualMachines/*",
            "Microsoft.Compute/virtualMachines/start/action"
        ));
        assert!(pattern_matches(
            "Microsoft.Authorization/*/Write",
            "microsoft.authorization/roleAssignments/write"
        ));
        assert!(!pattern_matches(
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/roleAssignments/read"
        ));
        assert!(!pattern_matches(
            "*/read",
            "Microsoft.Compute/virtualMachines/write"
        ));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXbYY"));
        assert!(pattern_matches("**", ""));
        assert!(!pattern_matches("", "a"));
    }

    #[test]
    fn built_in_roles_grant_what_azure_grants() {
        use Plane::{Control, Data};
        let write_assignment = "Microsoft.Authorization/roleAssignments/write";
        assert!(grants(OWNER, write_assignment, Control));
        assert!(
            !grants(CONTRIBUTOR, write_assignment, Control),
            "notActions subtract"
        );
        assert!(grants(UAA, write_assignment, Control));
        assert!(grants(
            CONTRIBUTOR,
            "Microsoft.Compute/virtualMachines/start/action",
            Control
        ));
        assert!(grants(
            READER,
            "Microsoft.Compute/virtualMachines/read",
            Control
        ));
        assert!(!grants(
            READER,
            "Microsoft.Compute/virtualMachines/write",
            Control
        ));
        assert!(grants(
            VM_CONTRIBUTOR,
            "Microsoft.Compute/virtualMachines/start/action",
            Control
        ));
        assert!(!grants(
            VM_CONTRIBUTOR,
            "Microsoft.Sql/servers/write",
            Control
        ));
        // The planes never mix: Owner's `*` grants no data operation.
        let read_blob = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
        assert!(!grants(OWNER, read_blob, Data));
        assert!(grants(BLOB_CONTRIBUTOR, read_blob, Data));
        assert!(!grants(BLOB_CONTRIBUTOR, read_blob, Control));
        assert!(grants(
            KEY_VAULT_ADMIN,
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            Data
        ));
        assert!(built_in("not-a-role").is_none());
        assert!(built_in(&OWNER.to_uppercase()).is_some());
    }

    #[test]
    fn operations_are_well_formed_or_not() {
        assert!(is_operation("Microsoft.Compute/virtualMachines/read"));
        assert!(is_operation("a/b"));
        for bad in [
            "",
            "role",
            "a/",
            "/a",
            "a//b",
            "Microsoft.Compute/*",
            "a/b c",
            "*",
        ] {
            assert!(!is_operation(bad), "{bad}");
        }
    }

    /// A plain recursive matcher, the reference the linear one must agree with.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|k| reference(rest, &s[k..])),
            Some((c, rest)) => s
                .split_first()
                .is_some_and(|(d, tail)| c.eq_ignore_ascii_case(d) && reference(rest, tail)),
        }
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_the_reference(p in "[aAb/*]{0,8}", s in "[aAb/]{0,10}") {
            prop_assert_eq!(pattern_matches(&p, &s), reference(p.as_bytes(), s.as_bytes()));
        }

        #[test]
        fn a_star_matches_everything_and_a_literal_only_itself(s in "[a-zA-Z./]{0,30}", t in "[a-zA-Z./]{0,30}") {
            prop_assert!(pattern_matches("*", &s));
            prop_assert!(pattern_matches(&s.to_ascii_uppercase(), &s));
            prop_assert_eq!(pattern_matches(&s, &t), s.eq_ignore_ascii_case(&t));
        }

        #[test]
        fn not_actions_only_take_away(op in "[a-c]{1,3}/[a-c]{1,3}", allow in "[a-c*/]{1,5}", deny in "[a-c*/]{1,5}") {
            let with = PermissionEntry { actions: vec![allow.clone()], not_actions: vec![deny], ..Default::default() };
            let without = PermissionEntry { actions: vec![allow], ..Default::default() };
            prop_assert!(!with.grants(&op, Plane::Control) || without.grants(&op, Plane::Control));
            prop_assert!(!with.grants(&op, Plane::Data));
        }
    }
}
