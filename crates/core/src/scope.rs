//! Azure Resource Manager ids and the resource hierarchy: [`ArmId`] parses, validates and
//! canonicalises an ARM id, and knows its [`ScopeKind`], resource type, display name,
//! parent and ancestors (management group, subscription, resource group, resource).

use crate::error::{DomainError, ErrorCode};
use std::fmt;
use std::hash::{Hash, Hasher};

/// The longest ARM id accepted, in bytes.
const MAX_LEN: usize = 2048;
/// The longest management group or resource group name, in characters.
const MAX_GROUP_NAME: usize = 90;
const MG_PREFIX: &str = "/providers/Microsoft.Management/managementGroups/";

/// The level of the resource hierarchy an [`ArmId`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    /// `/providers/Microsoft.Management/managementGroups/{name}`.
    ManagementGroup,
    /// `/subscriptions/{guid}`.
    Subscription,
    /// `/subscriptions/{guid}/resourceGroups/{name}`.
    ResourceGroup,
    /// Anything under `…/providers/{Namespace}/{type}/{name}`.
    Resource,
}

/// Where an id is rooted.
#[derive(Debug, Clone)]
enum Root {
    ManagementGroup(String),
    Subscription(String),
}

/// A validated ARM id in canonical form: keywords in canonical casing, names as given,
/// no trailing `/`. Equality and hashing ignore case (they compare [`ArmId::key`]).
#[derive(Clone)]
pub struct ArmId {
    text: String,
    key: String,
    root: Root,
    group: Option<String>,
    namespace: Option<String>,
    /// `(type, name)` pairs below the namespace; non-empty exactly when `namespace` is set.
    pairs: Vec<(String, String)>,
}

impl ArmId {
    /// Parses and validates `s`; errors are `InvalidResourceId` saying what is wrong.
    pub fn parse(s: &str) -> Result<ArmId, DomainError> {
        let fail = |why: &str| {
            DomainError::new(
                ErrorCode::InvalidResourceId,
                format!("`{}` is not a valid resource id: {why}", quote(s)),
            )
        };
        if s.is_empty() {
            return Err(fail("it is empty"));
        }
        if s.len() > MAX_LEN {
            return Err(fail(&format!("it is longer than {MAX_LEN} characters")));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("it contains whitespace or control characters"));
        }
        let Some(body) = s.strip_prefix('/') else {
            return Err(fail("it must start with `/`"));
        };
        let body = body.strip_suffix('/').unwrap_or(body);
        let segs: Vec<&str> = body.split('/').collect();
        if segs.iter().any(|seg| seg.is_empty()) {
            return Err(fail("it has an empty segment"));
        }
        if segs.iter().any(|seg| seg.chars().all(|c| c == '.')) {
            return Err(fail("it has a `.` or `..` segment"));
        }
        parse_segments(&segs).map_err(|why| fail(&why))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The lower-cased canonical text, for uniqueness and lookups.
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The level of the hierarchy this id names.
    pub fn kind(&self) -> ScopeKind {
        match (&self.root, &self.group) {
            _ if self.namespace.is_some() => ScopeKind::Resource,
            (Root::ManagementGroup(_), _) => ScopeKind::ManagementGroup,
            (Root::Subscription(_), None) => ScopeKind::Subscription,
            (Root::Subscription(_), Some(_)) => ScopeKind::ResourceGroup,
        }
    }

    /// `managementgroup`, `subscription`, `resourcegroup`, or `{Namespace}/{type}[/{subtype}…]`
    /// for a resource, e.g. `Microsoft.Compute/virtualMachines/extensions`.
    pub fn resource_type(&self) -> String {
        match (&self.namespace, self.kind()) {
            (Some(ns), _) => {
                let types = self.pairs.iter().map(|(t, _)| t.as_str());
                std::iter::once(ns.as_str())
                    .chain(types)
                    .collect::<Vec<_>>()
                    .join("/")
            }
            (None, ScopeKind::ManagementGroup) => "managementgroup".into(),
            (None, ScopeKind::ResourceGroup) => "resourcegroup".into(),
            (None, _) => "subscription".into(),
        }
    }

    /// The default display name: the management group name, the subscription GUID, the
    /// resource group name, or a resource's names joined with `/` (`vm1/IaaSAntimalware`).
    pub fn name(&self) -> String {
        if !self.pairs.is_empty() {
            return self
                .pairs
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join("/");
        }
        match (&self.root, &self.group) {
            (_, Some(group)) => group.clone(),
            (Root::ManagementGroup(name) | Root::Subscription(name), None) => name.clone(),
        }
    }

    /// The enclosing scope: a resource's parent resource, resource group or subscription;
    /// a resource group's subscription; `None` for a subscription or management group.
    pub fn parent(&self) -> Option<ArmId> {
        let (mut group, mut namespace, mut pairs) = (
            self.group.clone(),
            self.namespace.clone(),
            self.pairs.clone(),
        );
        if pairs.pop().is_some() {
            if pairs.is_empty() {
                namespace = None;
            }
        } else {
            group.take()?;
        }
        Some(ArmId::build(self.root.clone(), group, namespace, pairs))
    }

    /// All enclosing scopes, nearest first, ending at the subscription (not including self).
    pub fn ancestors(&self) -> Vec<ArmId> {
        std::iter::successors(self.parent(), ArmId::parent).collect()
    }

    /// Renders the canonical text of validated parts.
    fn build(
        root: Root,
        group: Option<String>,
        namespace: Option<String>,
        pairs: Vec<(String, String)>,
    ) -> ArmId {
        let mut text = match &root {
            Root::ManagementGroup(name) => format!("{MG_PREFIX}{name}"),
            Root::Subscription(guid) => format!("/subscriptions/{guid}"),
        };
        if let Some(group) = &group {
            text.push_str("/resourceGroups/");
            text.push_str(group);
        }
        if let Some(ns) = &namespace {
            text.push_str("/providers/");
            text.push_str(ns);
            for (t, n) in &pairs {
                text.push_str(&format!("/{t}/{n}"));
            }
        }
        let key = text.to_lowercase();
        ArmId {
            text,
            key,
            root,
            group,
            namespace,
            pairs,
        }
    }
}

/// Validates the `/`-separated segments of an id (leading `/` removed) and builds it.
fn parse_segments(segs: &[&str]) -> Result<ArmId, String> {
    let is = |seg: &str, keyword: &str| seg.eq_ignore_ascii_case(keyword);
    match segs {
        [p, ns, mgs, rest @ ..]
            if is(p, "providers")
                && is(ns, "Microsoft.Management")
                && is(mgs, "managementGroups") =>
        {
            let [name] = rest else {
                return Err(match rest {
                    [] => "the management group name is missing".into(),
                    _ => "nothing may follow a management group name".into(),
                });
            };
            check_group_name(name, "management group", |c| c.is_ascii_alphanumeric())?;
            Ok(ArmId::build(
                Root::ManagementGroup(name.to_string()),
                None,
                None,
                vec![],
            ))
        }
        [s, rest @ ..] if is(s, "subscriptions") => {
            let [guid, rest @ ..] = rest else {
                return Err("the subscription id is missing".into());
            };
            if !is_guid(guid) {
                return Err(format!("subscription id `{guid}` is not a GUID"));
            }
            let root = Root::Subscription(guid.to_string());
            let (group, rest) = match rest {
                [rg, rest @ ..] if is(rg, "resourceGroups") => {
                    let [name, rest @ ..] = rest else {
                        return Err("the resource group name is missing".into());
                    };
                    check_group_name(name, "resource group", char::is_alphanumeric)?;
                    if name.ends_with('.') {
                        return Err(format!("resource group name `{name}` ends with `.`"));
                    }
                    (Some(name.to_string()), rest)
                }
                _ => (None, rest),
            };
            match rest {
                [] => Ok(ArmId::build(root, group, None, vec![])),
                [p, rest @ ..] if is(p, "providers") => {
                    let (ns, pairs) = parse_provider(rest)?;
                    Ok(ArmId::build(root, group, Some(ns), pairs))
                }
                [other, ..] => Err(format!("unexpected segment `{other}`")),
            }
        }
        _ => Err("it must start with `/subscriptions/{id}` or \
             `/providers/Microsoft.Management/managementGroups/{name}`"
            .into()),
    }
}

/// Parses `{Namespace}/{type}/{name}[/{type}/{name}…]` (the part after `providers/`).
fn parse_provider(segs: &[&str]) -> Result<(String, Vec<(String, String)>), String> {
    let [ns, rest @ ..] = segs else {
        return Err("the provider namespace is missing".into());
    };
    if !is_namespace(ns) {
        return Err(format!(
            "`{ns}` is not a provider namespace like `Microsoft.Compute`"
        ));
    }
    if rest.is_empty() {
        return Err(format!(
            "no resource type follows provider namespace `{ns}`"
        ));
    }
    rest.chunks(2)
        .map(|pair| match *pair {
            [t, _] if t.eq_ignore_ascii_case("providers") => {
                Err("extension resources (a nested `providers`) are not supported".into())
            }
            [t, n] => {
                for (what, seg) in [("resource type", t), ("resource name", n)] {
                    if let Some(c) = seg.chars().find(|c| matches!(c, '?' | '#' | '%')) {
                        return Err(format!("{what} `{seg}` contains `{c}`"));
                    }
                }
                Ok((t.to_string(), n.to_string()))
            }
            _ => Err(format!("resource type `{}` has no name", pair.concat())),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|pairs| (ns.to_string(), pairs))
}

/// Checks a management group or resource group name: 1–90 characters, each `alnum` or `-_.()`.
fn check_group_name(name: &str, what: &str, alnum: fn(char) -> bool) -> Result<(), String> {
    if name.chars().count() > MAX_GROUP_NAME {
        return Err(format!(
            "{what} name `{name}` is longer than {MAX_GROUP_NAME} characters"
        ));
    }
    match name
        .chars()
        .find(|&c| !alnum(c) && !matches!(c, '-' | '_' | '.' | '(' | ')'))
    {
        Some(c) => Err(format!("{what} name `{name}` contains `{c}`")),
        None => Ok(()),
    }
}

/// `8-4-4-4-12` hex digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A provider namespace: dot-separated runs of ASCII letters and digits, starting with a
/// letter, with at least one dot (`Microsoft.Compute`, `Sendgrid.Email`).
fn is_namespace(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.contains('.')
        && s.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The input for an error message, cut short when very long.
fn quote(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

impl PartialEq for ArmId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ArmId {}

impl Hash for ArmId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Debug for ArmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArmId").field(&self.text).finish()
    }
}

impl fmt::Display for ArmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUB: &str = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590";
    const GUID: &str = "0b1f6471-1bf0-4dda-aec3-cb9272f09590";

    fn id(s: &str) -> ArmId {
        ArmId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn texts(ids: &[ArmId]) -> Vec<&str> {
        ids.iter().map(ArmId::as_str).collect()
    }

    #[test]
    fn management_group() {
        let mg = id("/providers/microsoft.management/MANAGEMENTGROUPS/My-Mg_(1).x");
        assert_eq!(
            mg.as_str(),
            "/providers/Microsoft.Management/managementGroups/My-Mg_(1).x"
        );
        assert_eq!(mg.kind(), ScopeKind::ManagementGroup);
        assert_eq!(mg.resource_type(), "managementgroup");
        assert_eq!(mg.name(), "My-Mg_(1).x");
        assert_eq!(mg.parent(), None);
        assert!(mg.ancestors().is_empty());
    }

    #[test]
    fn subscription() {
        let sub = id(&format!("/SUBSCRIPTIONS/{}/", GUID.to_uppercase()));
        assert_eq!(
            sub.as_str(),
            format!("/subscriptions/{}", GUID.to_uppercase())
        );
        assert_eq!(sub.kind(), ScopeKind::Subscription);
        assert_eq!(sub.resource_type(), "subscription");
        assert_eq!(sub.name(), GUID.to_uppercase());
        assert_eq!(sub.parent(), None);
        assert!(sub.ancestors().is_empty());
        assert_eq!(sub, id(SUB));
    }

    #[test]
    fn resource_group() {
        let rg = id(&format!("{SUB}/resourcegroups/My.Rg-(é)"));
        assert_eq!(rg.as_str(), format!("{SUB}/resourceGroups/My.Rg-(é)"));
        assert_eq!(rg.kind(), ScopeKind::ResourceGroup);
        assert_eq!(rg.resource_type(), "resourcegroup");
        assert_eq!(rg.name(), "My.Rg-(é)");
        assert_eq!(rg.parent(), Some(id(SUB)));
        assert_eq!(texts(&rg.ancestors()), [SUB]);
    }

    #[test]
    fn resource_in_group_and_its_chain() {
        let rg = format!("{SUB}/resourceGroups/rg1");
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1");
        let ext = format!("{vm}/extensions/IaaSAntimalware");
        let r = id(&ext.replace("/providers/", "/PROVIDERS/"));
        assert_eq!(r.as_str(), ext);
        assert_eq!(r.kind(), ScopeKind::Resource);
        assert_eq!(
            r.resource_type(),
            "Microsoft.Compute/virtualMachines/extensions"
        );
        assert_eq!(r.name(), "vm1/IaaSAntimalware");
        assert_eq!(r.parent(), Some(id(&vm)));
        assert_eq!(texts(&r.ancestors()), [vm.as_str(), rg.as_str(), SUB]);
        assert_eq!(id(&vm).resource_type(), "Microsoft.Compute/virtualMachines");
        assert_eq!(id(&vm).name(), "vm1");
    }

    #[test]
    fn subscription_level_resource() {
        let s = format!("{SUB}/providers/Microsoft.Security/pricings/default");
        let r = id(&s);
        assert_eq!(r.kind(), ScopeKind::Resource);
        assert_eq!(r.resource_type(), "Microsoft.Security/pricings");
        assert_eq!(r.name(), "default");
        assert_eq!(r.parent(), Some(id(SUB)));
        assert_eq!(texts(&r.ancestors()), [SUB]);
    }

    #[test]
    fn names_keep_their_casing_and_odd_characters() {
        let s = format!("{SUB}/resourceGroups/RG/providers/Microsoft.Web/sites/My Site");
        assert!(ArmId::parse(&s).is_err(), "whitespace is refused");
        let s = format!("{SUB}/resourceGroups/RG/providers/Microsoft.Web/sites/Mÿ:Site=1,+x");
        assert_eq!(id(&s).name(), "Mÿ:Site=1,+x");
        assert_eq!(id(&s).as_str(), s);
    }

    #[test]
    fn equality_and_hash_ignore_case() {
        use std::collections::HashSet;
        let a = id(&format!(
            "{SUB}/resourceGroups/RG1/providers/Microsoft.Compute/virtualMachines/VM"
        ));
        let b = id(&a.as_str().to_lowercase());
        assert_eq!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), a.as_str().to_lowercase());
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(HashSet::from([a.clone(), b]).len(), 1);
        assert_ne!(a, id(SUB));
        assert_eq!(a.to_string(), a.as_str());
        assert_eq!(format!("{a:?}"), format!("ArmId({:?})", a.as_str()));
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        let long = format!(
            "{SUB}/resourceGroups/rg/providers/A.B/t/{}",
            "x".repeat(2048)
        );
        let bad = [
            "",
            "/",
            "//",
            "subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590",
            "/subscriptions",
            "/subscriptions/",
            "/subscriptions/not-a-guid",
            "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f0959",
            "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f0959g",
            "/subscriptions/0b1f64711bf04ddaaec3cb9272f09590",
            &format!("{SUB}//"),
            &format!("{SUB}//resourceGroups/rg"),
            &format!("{SUB} "),
            &format!(" {SUB}"),
            &format!("{SUB}/resourceGroups"),
            &format!("{SUB}/resourceGroups/"),
            &format!("{SUB}/resourceGroups/rg."),
            &format!("{SUB}/resourceGroups/r g"),
            &format!("{SUB}/resourceGroups/r\tg"),
            &format!("{SUB}/resourceGroups/r*g"),
            &format!("{SUB}/resourceGroups/{}", "a".repeat(91)),
            &format!("{SUB}/resourceGroups/.."),
            &format!("{SUB}/resourceGroups/rg/.."),
            &format!("{SUB}/resourceGroups/rg/providers"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/"),
            &format!("{SUB}/resourceGroups/rg/providers/Compute/virtualMachines/vm"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft..Compute/virtualMachines/vm"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute./virtualMachines/vm"),
            &format!("{SUB}/resourceGroups/rg/providers/Micro-soft.Compute/virtualMachines/vm"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/ext"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v?m"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v#m"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v%20m"),
            &format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/.."),
            &format!("{SUB}/resourceGroups/rg/providers/A.B/t/n/providers/C.D/u/m"),
            &format!("{SUB}/resourceGroups/rg/foo/bar"),
            &format!("{SUB}/foo"),
            &format!("{SUB}/resourceGroups/rg/resourceGroups/rg2"),
            &long,
            "/providers/Microsoft.Management/managementGroups",
            "/providers/Microsoft.Management/managementGroups/",
            "/providers/Microsoft.Management/managementGroups/mg/subscriptions/x",
            "/providers/Microsoft.Management/managementGroups/m g",
            "/providers/Microsoft.Management/managementGroups/m!g",
            "/providers/Microsoft.Management/managementGroups/mé",
            &format!(
                "/providers/Microsoft.Management/managementGroups/{}",
                "m".repeat(91)
            ),
            "/providers/Microsoft.Compute/virtualMachines/vm",
            "/tenants/x",
            "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590\n",
        ];
        for s in bad {
            let err = ArmId::parse(s).expect_err(s);
            assert_eq!(err.code, ErrorCode::InvalidResourceId, "{s}");
            assert!(
                err.message.contains("is not a valid resource id: "),
                "{}",
                err.message
            );
        }
        let err = ArmId::parse("/subscriptions/nope").unwrap_err();
        assert_eq!(
            err.message,
            "`/subscriptions/nope` is not a valid resource id: subscription id `nope` is not a GUID"
        );
        assert!(ArmId::parse(&long).unwrap_err().message.len() < 400);
    }

    #[test]
    fn limits_that_are_just_fine() {
        id(&format!("{SUB}/resourceGroups/{}", "a".repeat(90)));
        id(&format!(
            "/providers/Microsoft.Management/managementGroups/{}",
            "m".repeat(90)
        ));
        id(&format!("{SUB}/resourceGroups/a.b"));
        id(&format!("{SUB}/providers/Microsoft.Compute2.v1/t/n"));
    }

    fn mixed_case(word: &'static str) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |flips| {
            word.chars()
                .zip(flips)
                .map(|(c, up)| {
                    if up {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        })
    }

    fn valid_id() -> impl Strategy<Value = String> {
        let guid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
        let mg = (
            mixed_case("providers/Microsoft.Management/managementGroups"),
            "[A-Za-z0-9_().-]{1,90}",
        )
            .prop_map(|(kw, n)| format!("/{kw}/{n}"));
        let rg = proptest::option::of((
            mixed_case("resourceGroups"),
            "[A-Za-z0-9_().éÄß-]{0,89}[A-Za-z0-9_()éÄß-]",
        ));
        let res = proptest::option::of((
            mixed_case("providers"),
            "[A-Za-z][A-Za-z0-9]{0,8}(\\.[A-Za-z0-9]{1,8}){1,3}",
            proptest::collection::vec(("[A-Za-z]{1,12}", "[^/?#%\\s\\p{Cc}]{1,20}"), 1..4),
        ));
        let sub = (mixed_case("subscriptions"), guid, rg, res).prop_map(|(kw, g, rg, res)| {
            let mut s = format!("/{kw}/{g}");
            if let Some((kw, n)) = rg {
                s.push_str(&format!("/{kw}/{n}"));
            }
            if let Some((kw, ns, pairs)) = res {
                s.push_str(&format!("/{kw}/{ns}"));
                for (t, n) in pairs {
                    s.push_str(&format!("/{t}/{n}"));
                }
            }
            s
        });
        (prop_oneof![mg, sub], any::<bool>())
            .prop_map(|(s, slash)| if slash { s + "/" } else { s })
            .prop_filter("no dot-only segments", |s| {
                !s.split('/')
                    .any(|seg| !seg.is_empty() && seg.chars().all(|c| c == '.'))
            })
            .prop_filter("no nested providers", |s| {
                s.to_lowercase().matches("/providers/").count() < 2
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = ArmId::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_id_like_text(s in "(/[A-Za-z0-9.()_%?#-]{0,12}){0,10}/?") {
            let _ = ArmId::parse(&s);
        }

        #[test]
        fn valid_ids_round_trip(s in valid_id()) {
            let a = ArmId::parse(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let b = ArmId::parse(a.as_str()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.as_str(), b.as_str());
            prop_assert!(a.as_str().eq_ignore_ascii_case(s.trim_end_matches('/')));
            let ancestors = a.ancestors();
            if let Some(last) = ancestors.last() {
                prop_assert_eq!(last.kind(), ScopeKind::Subscription);
            }
            for anc in &ancestors {
                prop_assert!(a.as_str().starts_with(anc.as_str()));
                prop_assert_eq!(&ArmId::parse(anc.as_str()).map_err(|e| TestCaseError::fail(e.to_string()))?, anc);
            }
        }
    }
}
