//! The SCIM schemas Rolegate serves (RFC 7643 §4, §8.7): User with the enterprise
//! extension, and Group. One table drives discovery (`/Schemas`), attribute-name resolution
//! (case-insensitive, URN-qualified or not), input normalisation, PATCH and filters.

use serde_json::{Map, Value, json};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// List responses.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH requests.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// `/.search` requests.
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Errors.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// Largest page a list returns (`filter.maxResults`).
pub const MAX_RESULTS: u32 = 1000;

/// An attribute's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// A string.
    String,
    /// `true` / `false`.
    Boolean,
    /// An ISO 8601 datetime.
    DateTime,
    /// Base64 data.
    Binary,
    /// A URI.
    Reference,
    /// Sub-attributes.
    Complex,
}

impl AttrType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::DateTime => "dateTime",
            Self::Binary => "binary",
            Self::Reference => "reference",
            Self::Complex => "complex",
        }
    }
}

/// Who may change an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the server only.
    ReadOnly,
    /// Set by the client, any time.
    ReadWrite,
    /// Set by the client once.
    Immutable,
    /// Accepted, never returned.
    WriteOnly,
}

impl Mutability {
    fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "readOnly",
            Self::ReadWrite => "readWrite",
            Self::Immutable => "immutable",
            Self::WriteOnly => "writeOnly",
        }
    }
}

/// One attribute (or sub-attribute) of a schema.
#[derive(Debug, Clone, Copy)]
pub struct Attribute {
    /// Its canonical name.
    pub name: &'static str,
    /// Its type.
    pub ty: AttrType,
    /// Whether it holds a list.
    pub multi: bool,
    /// Whether a resource must have it.
    pub required: bool,
    /// Whether comparisons are case-sensitive.
    pub case_exact: bool,
    /// Who may change it.
    pub mutability: Mutability,
    /// `never` when true (passwords), else `default` (`always` for `id`).
    pub never_returned: bool,
    /// `server` uniqueness.
    pub unique: bool,
    /// Suggested values (`type` sub-attributes).
    pub canonical: &'static [&'static str],
    /// What a reference may point at.
    pub reference_types: &'static [&'static str],
    /// Sub-attributes of a complex attribute.
    pub sub: &'static [Attribute],
    /// What it is.
    pub description: &'static str,
}

const fn attr(name: &'static str, ty: AttrType, description: &'static str) -> Attribute {
    Attribute {
        name,
        ty,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        never_returned: false,
        unique: false,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    attr(name, AttrType::String, description)
}

const fn complex(
    name: &'static str,
    sub: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    let mut a = attr(name, AttrType::Complex, description);
    a.sub = sub;
    a
}

const fn multi(
    name: &'static str,
    sub: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    let mut a = complex(name, sub, description);
    a.multi = true;
    a
}

const fn reference(
    name: &'static str,
    types: &'static [&'static str],
    description: &'static str,
) -> Attribute {
    let mut a = attr(name, AttrType::Reference, description);
    a.reference_types = types;
    a.case_exact = true;
    a
}

const fn with_canonical(mut a: Attribute, values: &'static [&'static str]) -> Attribute {
    a.canonical = values;
    a
}

const fn with_mutability(mut a: Attribute, m: Mutability) -> Attribute {
    a.mutability = m;
    a
}

const fn required(mut a: Attribute) -> Attribute {
    a.required = true;
    a
}

const fn case_exact(mut a: Attribute) -> Attribute {
    a.case_exact = true;
    a
}

const PRIMARY: Attribute = attr(
    "primary",
    AttrType::Boolean,
    "Whether this is the preferred value.",
);
const DISPLAY: Attribute = string("display", "A human-readable name.");

const EMAIL_SUB: &[Attribute] = &[
    string("value", "The email address."),
    DISPLAY,
    with_canonical(
        string("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    PRIMARY,
];
const PHONE_SUB: &[Attribute] = &[
    string("value", "The phone number."),
    DISPLAY,
    with_canonical(
        string("type", "work, home, mobile, fax, pager or other."),
        &["work", "home", "mobile", "fax", "pager", "other"],
    ),
    PRIMARY,
];
const IM_SUB: &[Attribute] = &[
    string("value", "The instant messaging address."),
    DISPLAY,
    with_canonical(
        string("type", "The messaging service."),
        &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
    ),
    PRIMARY,
];
const PHOTO_SUB: &[Attribute] = &[
    reference("value", &["external"], "The URL of the photo."),
    DISPLAY,
    with_canonical(
        string("type", "photo or thumbnail."),
        &["photo", "thumbnail"],
    ),
    PRIMARY,
];
const ADDRESS_SUB: &[Attribute] = &[
    string("formatted", "The full mailing address."),
    string("streetAddress", "The street."),
    string("locality", "The city."),
    string("region", "The state or region."),
    string("postalCode", "The postal code."),
    string("country", "The country (ISO 3166-1 alpha-2)."),
    with_canonical(
        string("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    PRIMARY,
];
const VALUE_SUB: &[Attribute] = &[
    string("value", "The value."),
    DISPLAY,
    string("type", "A label."),
    PRIMARY,
];
const CERT_SUB: &[Attribute] = &[
    attr("value", AttrType::Binary, "A DER certificate, base64."),
    DISPLAY,
    string("type", "A label."),
    PRIMARY,
];
const NAME_SUB: &[Attribute] = &[
    string("formatted", "The full name."),
    string("familyName", "The family name."),
    string("givenName", "The given name."),
    string("middleName", "The middle name(s)."),
    string("honorificPrefix", "The honorific prefix(es)."),
    string("honorificSuffix", "The honorific suffix(es)."),
];
const GROUPS_SUB: &[Attribute] = &[
    with_mutability(
        case_exact(string("value", "The group's id.")),
        Mutability::ReadOnly,
    ),
    with_mutability(
        reference("$ref", &["Group"], "The group's URI."),
        Mutability::ReadOnly,
    ),
    with_mutability(
        string("display", "The group's display name."),
        Mutability::ReadOnly,
    ),
    with_mutability(
        with_canonical(
            string("type", "direct, or indirect (through a nested group)."),
            &["direct", "indirect"],
        ),
        Mutability::ReadOnly,
    ),
];

const USER_ATTRS: &[Attribute] = &[
    {
        let mut a = required(string(
            "userName",
            "Unique identifier of the user; the principal name Rolegate shows.",
        ));
        a.unique = true;
        a
    },
    complex("name", NAME_SUB, "The components of the user's name."),
    string("displayName", "The name to display."),
    string("nickName", "The casual name."),
    reference("profileUrl", &["external"], "The user's online profile."),
    string("title", "The user's title."),
    string("userType", "The relationship to the organisation."),
    string("preferredLanguage", "The preferred language."),
    string("locale", "The default location."),
    string("timezone", "The time zone (IANA)."),
    attr(
        "active",
        AttrType::Boolean,
        "Whether the user may sign in; false ends its activations and cancels its pending requests.",
    ),
    {
        let mut a = with_mutability(
            string(
                "password",
                "Accepted and discarded: Rolegate never stores passwords.",
            ),
            Mutability::WriteOnly,
        );
        a.never_returned = true;
        a
    },
    multi(
        "emails",
        EMAIL_SUB,
        "Email addresses; the primary one is the Graph `email`.",
    ),
    multi("phoneNumbers", PHONE_SUB, "Phone numbers."),
    multi("ims", IM_SUB, "Instant messaging addresses."),
    multi("photos", PHOTO_SUB, "Photos."),
    multi("addresses", ADDRESS_SUB, "Physical addresses."),
    with_mutability(
        multi(
            "groups",
            GROUPS_SUB,
            "The groups the user is in (read only; change a group's members).",
        ),
        Mutability::ReadOnly,
    ),
    multi("entitlements", VALUE_SUB, "Entitlements."),
    multi(
        "roles",
        VALUE_SUB,
        "Roles (free text; PIM roles are assigned through Graph).",
    ),
    multi("x509Certificates", CERT_SUB, "Certificates."),
];

const MANAGER_SUB: &[Attribute] = &[
    string("value", "The manager's id."),
    reference("$ref", &["User"], "The manager's URI."),
    with_mutability(
        string("displayName", "The manager's display name."),
        Mutability::ReadOnly,
    ),
];

const ENTERPRISE_ATTRS: &[Attribute] = &[
    string("employeeNumber", "The employee number."),
    string("costCenter", "The cost center."),
    string("organization", "The organisation."),
    string("division", "The division."),
    string("department", "The department."),
    complex("manager", MANAGER_SUB, "The user's manager."),
    string(
        "employeeType",
        "Rolegate extension: `ServicePrincipal` makes the user a service principal.",
    ),
];

const MEMBER_SUB: &[Attribute] = &[
    with_mutability(
        case_exact(string("value", "The member's id.")),
        Mutability::Immutable,
    ),
    with_mutability(
        reference("$ref", &["User", "Group"], "The member's URI."),
        Mutability::Immutable,
    ),
    with_mutability(
        with_canonical(string("type", "User or Group."), &["User", "Group"]),
        Mutability::Immutable,
    ),
];

const GROUP_ATTRS: &[Attribute] = &[
    required(string(
        "displayName",
        "The group's name (required by Rolegate).",
    )),
    multi(
        "members",
        MEMBER_SUB,
        "The direct members: users and groups.",
    ),
];

/// The attributes every resource has (RFC 7643 §3.1).
const ID: Attribute = {
    let mut a = with_mutability(
        case_exact(string("id", "The server's id.")),
        Mutability::ReadOnly,
    );
    a.unique = true;
    a
};
const EXTERNAL_ID: Attribute = case_exact(string("externalId", "The identity provider's id."));
const META_SUB: &[Attribute] = &[
    with_mutability(
        case_exact(string("resourceType", "User or Group.")),
        Mutability::ReadOnly,
    ),
    with_mutability(
        attr("created", AttrType::DateTime, "When it was created."),
        Mutability::ReadOnly,
    ),
    with_mutability(
        attr("lastModified", AttrType::DateTime, "When it last changed."),
        Mutability::ReadOnly,
    ),
    with_mutability(
        reference("location", &["uri"], "Its URI."),
        Mutability::ReadOnly,
    ),
    with_mutability(
        case_exact(string("version", "Its version (the ETag).")),
        Mutability::ReadOnly,
    ),
];
const META: Attribute = with_mutability(
    complex("meta", META_SUB, "Resource metadata."),
    Mutability::ReadOnly,
);
const COMMON: &[Attribute] = &[ID, EXTERNAL_ID, META];

/// A schema: its URN, name and attributes.
#[derive(Debug)]
pub struct Schema {
    /// The URN.
    pub id: &'static str,
    /// Its name.
    pub name: &'static str,
    /// What it describes.
    pub description: &'static str,
    /// Its attributes.
    pub attributes: &'static [Attribute],
}

/// The User schema.
pub static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRS,
};
/// The enterprise User extension.
pub static ENTERPRISE: Schema = Schema {
    id: ENTERPRISE_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRS,
};
/// The Group schema.
pub static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRS,
};

/// The resource types: `User` (users and service principals) and `Group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

impl ResourceType {
    /// Both, in discovery order.
    pub const ALL: [ResourceType; 2] = [ResourceType::User, ResourceType::Group];

    /// The resource type's name (`User`, `Group`).
    pub fn name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    /// The endpoint's collection name (`Users`, `Groups`).
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }

    /// The resource type of endpoint `Users` or `Groups` (exact, as RFC 7644 names them).
    pub fn from_endpoint(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.endpoint() == s)
    }

    /// Its core schema.
    pub fn schema(self) -> &'static Schema {
        match self {
            Self::User => &USER,
            Self::Group => &GROUP,
        }
    }

    /// Its schema extensions.
    pub fn extensions(self) -> &'static [&'static Schema] {
        static USER_EXTENSIONS: [&Schema; 1] = [&ENTERPRISE];
        match self {
            Self::User => &USER_EXTENSIONS,
            Self::Group => &[],
        }
    }

    /// The schema (core or extension) with URN `urn`, case-insensitively.
    pub fn schema_by_urn(self, urn: &str) -> Option<&'static Schema> {
        std::iter::once(self.schema())
            .chain(self.extensions().iter().copied())
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }
}

/// Where an attribute lives: a top-level attribute of the core schema (or a common one),
/// or an attribute of an extension (stored under the extension's URN).
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// The extension holding it, or `None` for the core schema and common attributes.
    pub extension: Option<&'static Schema>,
    /// The attribute.
    pub attr: &'static Attribute,
    /// The sub-attribute named after a dot, if any.
    pub sub: Option<&'static Attribute>,
}

impl Resolved {
    /// The attribute the path ends at.
    pub fn leaf(&self) -> &'static Attribute {
        self.sub.unwrap_or(self.attr)
    }

    /// Whether it is one of `id`, `externalId`, `meta`.
    pub fn is_common(&self) -> bool {
        self.extension.is_none() && COMMON.iter().any(|c| c.name == self.attr.name)
    }

    /// Its canonical dotted name (URN-qualified for extensions).
    pub fn canonical(&self) -> String {
        let mut s = match self.extension {
            Some(e) => format!("{}:{}", e.id, self.attr.name),
            None => self.attr.name.to_string(),
        };
        if let Some(sub) = self.sub {
            s.push('.');
            s.push_str(sub.name);
        }
        s
    }
}

fn find(attrs: &'static [Attribute], name: &str) -> Option<&'static Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// A sub-attribute of `a` by name, case-insensitively.
pub fn sub_attribute(a: &'static Attribute, name: &str) -> Option<&'static Attribute> {
    find(a.sub, name)
}

/// What a textual attribute path names: an attribute (maybe with a sub-attribute), or a
/// whole extension (a bare extension URN).
#[derive(Debug, Clone, Copy)]
pub enum PathTarget {
    /// An attribute.
    Attr(Resolved),
    /// The whole extension object.
    Extension(&'static Schema),
}

/// Splits `urn:…:Name.sub` into (URN, rest) using the schemas `rt` knows, longest first.
/// Returns `None` for the URN when `path` is not URN-qualified.
fn split_urn(rt: ResourceType, path: &str) -> (Option<Result<&'static Schema, String>>, String) {
    if !path
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        return (None, path.to_string());
    }
    let mut schemas: Vec<&'static Schema> = std::iter::once(rt.schema())
        .chain(rt.extensions().iter().copied())
        .collect();
    schemas.sort_by_key(|s| std::cmp::Reverse(s.id.len()));
    for s in schemas {
        let Some(head) = path.get(..s.id.len()) else {
            continue;
        };
        if head.eq_ignore_ascii_case(s.id) {
            let rest = &path[s.id.len()..];
            if rest.is_empty() {
                return (Some(Ok(s)), String::new());
            }
            if let Some(rest) = rest.strip_prefix(':') {
                return (Some(Ok(s)), rest.to_string());
            }
        }
    }
    match path.rsplit_once(':') {
        Some((urn, rest)) => (Some(Err(urn.to_string())), rest.to_string()),
        None => (Some(Err(path.to_string())), String::new()),
    }
}

/// Resolves an attribute path (`userName`, `name.givenName`, `emails.value`,
/// `urn:…:enterprise:2.0:User:manager.value`, or a bare extension URN) for `rt`,
/// case-insensitively. `Err` carries why it names nothing.
pub fn resolve(rt: ResourceType, path: &str) -> Result<PathTarget, String> {
    let (urn, rest) = split_urn(rt, path.trim());
    let schema = match urn {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(u)) => return Err(format!("`{u}` is not a schema of {}", rt.name())),
    };
    if rest.is_empty() {
        return match schema {
            Some(s) if s.id != rt.schema().id => Ok(PathTarget::Extension(s)),
            _ => Err(format!("`{path}` names no attribute")),
        };
    }
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest.as_str(), None),
    };
    let core = rt.schema();
    let (extension, attr) = match schema {
        Some(s) if s.id != core.id => (Some(s), find(s.attributes, name)),
        _ => (
            None,
            find(COMMON, name).or_else(|| find(core.attributes, name)),
        ),
    };
    let attr = attr.ok_or_else(|| format!("`{path}` is not an attribute of {}", rt.name()))?;
    let sub = match sub {
        None => None,
        Some(s) => Some(
            sub_attribute(attr, s)
                .ok_or_else(|| format!("`{path}` is not an attribute of {}", rt.name()))?,
        ),
    };
    Ok(PathTarget::Attr(Resolved {
        extension,
        attr,
        sub,
    }))
}

/// Resolves `path` to an attribute (not a bare extension URN).
pub fn resolve_attr(rt: ResourceType, path: &str) -> Result<Resolved, String> {
    match resolve(rt, path)? {
        PathTarget::Attr(r) => Ok(r),
        PathTarget::Extension(s) => Err(format!("`{}` is a schema, not an attribute", s.id)),
    }
}

fn attribute_json(a: &Attribute) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(a.name));
    o.insert("type".into(), json!(a.ty.as_str()));
    o.insert("multiValued".into(), json!(a.multi));
    o.insert("description".into(), json!(a.description));
    o.insert("required".into(), json!(a.required));
    if !a.canonical.is_empty() {
        o.insert("canonicalValues".into(), json!(a.canonical));
    }
    if matches!(
        a.ty,
        AttrType::String | AttrType::Reference | AttrType::Binary
    ) {
        o.insert("caseExact".into(), json!(a.case_exact));
    }
    o.insert("mutability".into(), json!(a.mutability.as_str()));
    o.insert(
        "returned".into(),
        json!(if a.never_returned {
            "never"
        } else if a.name == "id" {
            "always"
        } else {
            "default"
        }),
    );
    if a.ty != AttrType::Complex && a.ty != AttrType::Boolean {
        o.insert(
            "uniqueness".into(),
            json!(if a.unique { "server" } else { "none" }),
        );
    }
    if !a.reference_types.is_empty() {
        o.insert("referenceTypes".into(), json!(a.reference_types));
    }
    if !a.sub.is_empty() {
        o.insert(
            "subAttributes".into(),
            Value::Array(a.sub.iter().map(attribute_json).collect()),
        );
    }
    Value::Object(o)
}

/// The schemas Rolegate serves, by URN.
pub fn all_schemas() -> [&'static Schema; 3] {
    [&USER, &ENTERPRISE, &GROUP]
}

/// `/Schemas/{id}`: one schema's representation (RFC 7643 §7).
pub fn schema_json(s: &Schema, base: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": s.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", s.id)},
    })
}

/// `/ResourceTypes/{id}`: one resource type (RFC 7643 §6).
pub fn resource_type_json(rt: ResourceType, base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name(),
        "name": rt.name(),
        "endpoint": format!("/{}", rt.endpoint()),
        "description": match rt {
            ResourceType::User => "Users and service principals of the Rolegate directory",
            ResourceType::Group => "Groups of the Rolegate directory; members hold what the group holds",
        },
        "schema": rt.schema().id,
        "schemaExtensions": rt.extensions().iter().map(|e| json!({"schema": e.id, "required": false})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", rt.name())},
    })
}

/// `/ServiceProviderConfig` (RFC 7643 §5).
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A tenant administrator's bearer token, or the provisioning secret of --scim-token-file",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

/// A list response of `resources` (all of them, one page).
pub fn list_of(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_case_insensitively_with_and_without_urns() {
        let r = resolve_attr(ResourceType::User, "USERNAME").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.canonical(), "userName");
        let r =
            resolve_attr(ResourceType::User, "name.GIVENNAME").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.canonical(), "name.givenName");
        let r = resolve_attr(
            ResourceType::User,
            "urn:ietf:params:scim:schemas:core:2.0:User:emails.value",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.canonical(), "emails.value");
        let r = resolve_attr(
            ResourceType::User,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.canonical(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
        );
        assert!(matches!(
            resolve(ResourceType::User, ENTERPRISE_SCHEMA),
            Ok(PathTarget::Extension(_))
        ));
        assert!(resolve_attr(ResourceType::User, "meta.lastModified").is_ok());
        assert!(resolve_attr(ResourceType::Group, "userName").is_err());
        assert!(resolve_attr(ResourceType::User, "name.nope").is_err());
        assert!(resolve_attr(ResourceType::User, "urn:x:y:z").is_err());
    }
}
