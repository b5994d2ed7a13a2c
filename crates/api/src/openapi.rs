//! `GET /openapi.json` (decisions.md §13): an OpenAPI 3.0 document of every route, built
//! here from one table ([`GRAPH_COLLECTIONS`] plus the fixed routes in [`document`]) so
//! that it follows the router. A test checks that every path registered in `lib.rs`
//! appears in it; what is deliberately left out is listed in docs/openapi.md.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// A Graph collection below a provider (and below `resources/{rid}`).
struct GraphCollection {
    /// The path segment.
    name: &'static str,
    /// The component schema of its entity.
    schema: &'static str,
    /// Single-valued navigations from one of its items (`{id}/{nav}`).
    navigations: &'static [&'static str],
    /// What a navigation leads to (component schemas).
    nav_targets: &'static [&'static str],
}

/// The collections the router registers for each prefix (lib.rs `router`).
const GRAPH_COLLECTIONS: [GraphCollection; 4] = [
    GraphCollection {
        name: "roleDefinitions",
        schema: "governanceRoleDefinition",
        navigations: &["resource", "roleSetting"],
        nav_targets: &["governanceResource", "governanceRoleSetting"],
    },
    GraphCollection {
        name: "roleSettings",
        schema: "governanceRoleSetting",
        navigations: &["resource", "roleDefinition"],
        nav_targets: &["governanceResource", "governanceRoleDefinition"],
    },
    GraphCollection {
        name: "roleAssignments",
        schema: "governanceRoleAssignment",
        navigations: &[
            "resource",
            "roleDefinition",
            "subject",
            "linkedEligibleRoleAssignment",
        ],
        nav_targets: &[
            "governanceResource",
            "governanceRoleDefinition",
            "governanceSubject",
            "governanceRoleAssignment",
        ],
    },
    GraphCollection {
        name: "roleAssignmentRequests",
        schema: "governanceRoleAssignmentRequest",
        navigations: &["resource", "roleDefinition", "subject"],
        nav_targets: &[
            "governanceResource",
            "governanceRoleDefinition",
            "governanceSubject",
        ],
    },
];

/// Every navigation name of any entity (the second step of `{id}/{nav}/{nav2}`).
const ALL_NAVIGATIONS: [&str; 6] = [
    "parent",
    "resource",
    "roleDefinition",
    "roleSetting",
    "subject",
    "linkedEligibleRoleAssignment",
];

/// Every entity a navigation can lead to.
const ALL_ENTITIES: [&str; 6] = [
    "governanceResource",
    "governanceRoleDefinition",
    "governanceRoleSetting",
    "governanceRoleAssignment",
    "governanceRoleAssignmentRequest",
    "governanceSubject",
];

static DOCUMENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&document()).unwrap_or_default());

/// `GET /openapi.json`: no authentication.
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn str_prop() -> Value {
    json!({"type": "string"})
}

fn nullable_str() -> Value {
    json!({"type": "string", "nullable": true})
}

fn datetime() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn nullable_datetime() -> Value {
    json!({"type": "string", "format": "date-time", "nullable": true})
}

/// An object schema; no property is `required` because `$select` may drop any of them.
fn object(props: &[(&str, Value)]) -> Value {
    let mut m = Map::new();
    for (k, v) in props {
        m.insert((*k).to_string(), v.clone());
    }
    json!({"type": "object", "properties": m})
}

/// An expanded navigation: the related entity, or null.
fn expanded() -> Value {
    json!({"type": "object", "nullable": true})
}

fn path_param(name: &str, values: Option<&[&str]>) -> Value {
    let mut schema = json!({"type": "string", "minLength": 1});
    if let Some(v) = values {
        schema = json!({"type": "string", "enum": v});
    }
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn odata_params(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| match *n {
            "$filter" => query_param(n, str_prop(), "OData filter expression (decisions.md §9)"),
            "$select" => query_param(n, str_prop(), "Comma-separated properties"),
            "$expand" => query_param(
                n,
                str_prop(),
                "Navigations, with nested ($select;$expand) options",
            ),
            "$orderby" => query_param(n, str_prop(), "Properties with asc/desc"),
            "$top" => query_param(
                n,
                json!({"type": "integer", "minimum": 0, "maximum": 999}),
                "Page size",
            ),
            "$skip" => query_param(n, json!({"type": "integer", "minimum": 0}), "Items to skip"),
            "$count" => query_param(n, json!({"type": "boolean"}), "Include @odata.count"),
            other => query_param(other, str_prop(), ""),
        })
        .collect()
}

const LIST_OPTIONS: [&str; 7] = [
    "$filter", "$select", "$expand", "$orderby", "$top", "$skip", "$count",
];
const ITEM_OPTIONS: [&str; 2] = ["$select", "$expand"];

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn graph_error(description: &str) -> Value {
    json!({"description": description, "content": json_content(schema_ref("ODataError"))})
}

fn scim_error(description: &str) -> Value {
    json!({"description": description, "content": {"application/scim+json": {"schema": schema_ref("ScimError")}}})
}

fn error_description(code: u16) -> &'static str {
    match code {
        400 => "Bad request (malformed input, unsupported query option, policy failure)",
        401 => "Missing or invalid bearer token",
        403 => "The caller may not do this",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        412 => "Precondition failed (If-Match)",
        413 => "Body larger than 1 MiB",
        429 => {
            "Too many requests from this client address or subject; retry after the Retry-After header's seconds"
        }
        503 => {
            "The request took longer than the request timeout (or the database is unreachable); retry after the Retry-After header's seconds"
        }
        _ => "Error",
    }
}

/// One operation.
struct Op {
    summary: String,
    params: Vec<Value>,
    body: Option<Value>,
    ok: Vec<(u16, Value)>,
    errors: Vec<u16>,
    scim: bool,
    public: bool,
}

impl Op {
    fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            params: Vec::new(),
            body: None,
            ok: Vec::new(),
            errors: vec![400, 401, 403, 404, 405, 429, 503],
            scim: false,
            public: false,
        }
    }

    fn params(mut self, p: impl IntoIterator<Item = Value>) -> Self {
        self.params.extend(p);
        self
    }

    fn body(mut self, schema: Value) -> Self {
        let content = if self.scim {
            json!({"application/scim+json": {"schema": schema}, "application/json": {"schema": schema}})
        } else {
            json_content(schema)
        };
        self.body = Some(json!({"required": true, "content": content}));
        self.errors.push(413);
        self
    }

    fn ok(mut self, status: u16, response: Value) -> Self {
        self.ok.push((status, response));
        self
    }

    fn ok_json(self, status: u16, description: &str, schema: Value) -> Self {
        let ct = if self.scim {
            "application/scim+json"
        } else {
            "application/json"
        };
        let r = json!({"description": description, "content": {ct: {"schema": schema}}});
        self.ok(status, r)
    }

    fn build(self) -> Value {
        let mut responses = Map::new();
        for (status, r) in self.ok {
            responses.insert(status.to_string(), r);
        }
        if !self.public {
            for code in self.errors {
                let d = error_description(code);
                let mut r = if self.scim {
                    scim_error(d)
                } else {
                    graph_error(d)
                };
                if matches!(code, 429 | 503) {
                    r["headers"] = json!({"Retry-After": {
                        "description": "Seconds to wait before retrying",
                        "schema": {"type": "integer", "minimum": 1}
                    }});
                }
                responses.insert(code.to_string(), r);
            }
        }
        let mut op = Map::new();
        op.insert("summary".into(), Value::String(self.summary));
        if !self.params.is_empty() {
            op.insert("parameters".into(), Value::Array(self.params));
        }
        if let Some(b) = self.body {
            op.insert("requestBody".into(), b);
        }
        op.insert("responses".into(), Value::Object(responses));
        if self.public {
            op.insert("security".into(), json!([]));
        }
        Value::Object(op)
    }
}

struct Paths(Map<String, Value>);

impl Paths {
    fn add(&mut self, path: &str, method: &str, op: Op) {
        let item = self.0.entry(path.to_string()).or_insert_with(|| json!({}));
        if let Some(m) = item.as_object_mut() {
            m.insert(method.to_string(), op.build());
        }
    }
}

fn collection_of(schema: Value) -> Value {
    object(&[
        ("@odata.context", str_prop()),
        ("@odata.count", json!({"type": "integer", "minimum": 0})),
        ("@odata.nextLink", str_prop()),
        ("value", json!({"type": "array", "items": schema})),
    ])
}

fn text(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn any_entity(names: &[&str]) -> Value {
    json!({"anyOf": names.iter().map(|n| schema_ref(n)).collect::<Vec<_>>()})
}

/// The Graph routes below one prefix (the provider, or `resources/{rid}` under it).
fn graph_prefix(paths: &mut Paths, prefix: &str, nested: bool) {
    let base_params = || {
        let mut v = vec![path_param("provider", Some(&["azureResources"]))];
        if nested {
            v.push(path_param("rid", None));
        }
        v
    };
    let under = if nested { " of a resource" } else { "" };
    for c in &GRAPH_COLLECTIONS {
        let base = format!("{prefix}/{}", c.name);
        paths.add(
            &base,
            "get",
            Op::new(format!("List {}{under}", c.name))
                .params(base_params())
                .params(odata_params(&LIST_OPTIONS))
                .ok_json(200, "A page", collection_of(schema_ref(c.schema))),
        );
        if c.name == "roleAssignmentRequests" {
            paths.add(
                &base,
                "post",
                Op::new(format!("Create a role assignment request{under}"))
                    .params(base_params())
                    .body(schema_ref("newRoleAssignmentRequest"))
                    .ok_json(
                        201,
                        "The request as created",
                        schema_ref("governanceRoleAssignmentRequest"),
                    ),
            );
        }
        paths.add(
            &format!("{base}/$count"),
            "get",
            Op::new(format!("Count {}{under}", c.name))
                .params(base_params())
                .params(odata_params(&["$filter"]))
                .ok(200, text("The number of items")),
        );
        let id_params = || {
            let mut v = base_params();
            v.push(path_param("id", None));
            v
        };
        paths.add(
            &format!("{base}/{{id}}"),
            "get",
            Op::new(format!("Get one of {}{under}", c.name))
                .params(id_params())
                .params(odata_params(&ITEM_OPTIONS))
                .ok_json(200, "The item", schema_ref(c.schema)),
        );
        if c.name == "roleSettings" {
            paths.add(
                &format!("{base}/{{id}}"),
                "patch",
                Op::new(format!(
                    "Update a role setting (merged by ruleIdentifier){under}"
                ))
                .params(id_params())
                .body(schema_ref("roleSettingPatch"))
                .ok(204, json!({"description": "Updated"})),
            );
        }
        paths.add(
            &format!("{base}/{{id}}/{{nav}}"),
            "get",
            Op::new(format!("Follow a navigation of one of {}{under}", c.name))
                .params(id_params())
                .params([path_param("nav", Some(c.navigations))])
                .params(odata_params(&ITEM_OPTIONS))
                .ok_json(200, "The related entity", any_entity(c.nav_targets)),
        );
        paths.add(
            &format!("{base}/{{id}}/{{nav}}/{{nav2}}"),
            "get",
            Op::new(format!(
                "Follow two navigations of one of {}{under}",
                c.name
            ))
            .params(id_params())
            .params([
                path_param("nav", Some(c.navigations)),
                path_param("nav2", Some(&ALL_NAVIGATIONS)),
            ])
            .params(odata_params(&ITEM_OPTIONS))
            .ok_json(200, "The related entity", any_entity(&ALL_ENTITIES)),
        );
    }
    for export in ["export", "export()"] {
        paths.add(
            &format!("{prefix}/roleAssignments/{export}"),
            "get",
            Op::new(format!(
                "Export role assignments{under} (CSV, or JSON lines for Accept: application/json)"
            ))
            .params(base_params())
            .params(odata_params(&["$filter", "$orderby", "$top", "$skip"]))
            .ok(
                200,
                json!({"description": "The CSV (with a BOM), or its lines as JSON", "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": collection_of(str_prop())},
                }}),
            ),
        );
    }
    let req_params = || {
        let mut v = base_params();
        v.push(path_param("id", None));
        v
    };
    paths.add(
        &format!("{prefix}/roleAssignments/{{id}}/connectorGrants"),
        "get",
        Op::new(format!(
            "What the provisioning connectors did with an assignment{under} (Rolegate): one row per connector, target and principal it justifies; only the caller's own rows unless it administers the resource"
        ))
        .params(req_params())
        .ok_json(200, "The grants", collection_of(json!({"type": "object", "properties": {
            "connector": str_prop(), "kind": str_prop(), "target": str_prop(),
            "principal": {"type": "string", "nullable": true}, "subjectId": str_prop(),
            "state": {"type": "string", "enum": ["applied", "pending", "retrying", "failed", "unmapped"]},
        }}))),
    );
    paths.add(
        &format!("{prefix}/roleAssignmentRequests/{{id}}/cancel"),
        "post",
        Op::new(format!("Cancel a pending request{under}"))
            .params(req_params())
            .ok(204, json!({"description": "Canceled"})),
    );
    paths.add(
        &format!("{prefix}/roleAssignmentRequests/{{id}}/updateRequest"),
        "post",
        Op::new(format!("Decide a pending request{under}"))
            .params(req_params())
            .body(schema_ref("updateRequestBody"))
            .ok_json(
                200,
                "The request after the decision",
                schema_ref("governanceRoleAssignmentRequest"),
            ),
    );
}

/// Change-notification subscriptions (decisions.md §12).
fn subscription_paths(paths: &mut Paths) {
    let subs = "/beta/subscriptions";
    paths.add(
        subs,
        "get",
        Op::new("List the caller's subscriptions (all for tenant administrators)").ok_json(
            200,
            "The subscriptions",
            collection_of(schema_ref("subscription")),
        ),
    );
    paths.add(
        subs,
        "post",
        Op::new("Create a subscription (the endpoint is validated first)")
            .body(schema_ref("newSubscription"))
            .ok_json(201, "Created", schema_ref("subscription")),
    );
    let id = || [path_param("id", None)];
    let item = format!("{subs}/{{id}}");
    paths.add(
        &item,
        "get",
        Op::new("Get a subscription").params(id()).ok_json(
            200,
            "The subscription",
            schema_ref("subscription"),
        ),
    );
    paths.add(
        &item,
        "patch",
        Op::new("Renew a subscription")
            .params(id())
            .body(object(&[("expirationDateTime", str_prop())]))
            .ok_json(200, "The subscription", schema_ref("subscription")),
    );
    paths.add(
        &item,
        "delete",
        Op::new("Delete a subscription")
            .params(id())
            .ok(204, json!({"description": "Deleted"})),
    );
}

fn scim_paths(paths: &mut Paths) {
    let scim = |summary: &str| {
        let mut op = Op::new(summary);
        op.scim = true;
        op
    };
    let any = json!({"type": "object"});
    paths.add(
        "/scim/v2/ServiceProviderConfig",
        "get",
        scim("SCIM service provider configuration").ok_json(200, "The configuration", any.clone()),
    );
    paths.add(
        "/scim/v2/ResourceTypes",
        "get",
        scim("SCIM resource types").ok_json(200, "The list", schema_ref("ScimListResponse")),
    );
    paths.add(
        "/scim/v2/ResourceTypes/{id}",
        "get",
        scim("One SCIM resource type")
            .params([path_param("id", None)])
            .ok_json(200, "The resource type", any.clone()),
    );
    paths.add(
        "/scim/v2/Schemas",
        "get",
        scim("SCIM schemas").ok_json(200, "The list", schema_ref("ScimListResponse")),
    );
    paths.add(
        "/scim/v2/Schemas/{id}",
        "get",
        scim("One SCIM schema")
            .params([path_param("id", None)])
            .ok_json(200, "The schema", any.clone()),
    );
    paths.add(
        "/scim/v2/.search",
        "post",
        scim("Search users and groups")
            .body(schema_ref("ScimSearchRequest"))
            .ok_json(200, "The results", schema_ref("ScimListResponse")),
    );
    let coll = || path_param("coll", Some(&["Users", "Groups"]));
    let list_params = || {
        [
            ("filter", str_prop()),
            ("startIndex", json!({"type": "integer"})),
            ("count", json!({"type": "integer"})),
            ("sortBy", str_prop()),
            (
                "sortOrder",
                json!({"type": "string", "enum": ["ascending", "descending"]}),
            ),
            ("attributes", str_prop()),
            ("excludedAttributes", str_prop()),
        ]
        .into_iter()
        .map(|(n, s)| query_param(n, s, ""))
        .collect::<Vec<_>>()
    };
    paths.add(
        "/scim/v2/{coll}",
        "get",
        scim("List users or groups")
            .params([coll()])
            .params(list_params())
            .ok_json(200, "The page", schema_ref("ScimListResponse")),
    );
    let mut create = scim("Create a user or group")
        .params([coll()])
        .body(schema_ref("ScimResource"))
        .ok_json(201, "Created", schema_ref("ScimResource"));
    create.errors.push(409);
    paths.add("/scim/v2/{coll}", "post", create);
    paths.add(
        "/scim/v2/{coll}/.search",
        "post",
        scim("Search users or groups")
            .params([coll()])
            .body(schema_ref("ScimSearchRequest"))
            .ok_json(200, "The results", schema_ref("ScimListResponse")),
    );
    let item = || [coll(), path_param("id", None)];
    let if_match = || json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"}});
    paths.add(
        "/scim/v2/{coll}/{id}",
        "get",
        scim("Get a user or group")
            .params(item())
            .params([
                query_param("attributes", str_prop(), ""),
                query_param("excludedAttributes", str_prop(), ""),
            ])
            .ok_json(200, "The resource", schema_ref("ScimResource")),
    );
    for (method, summary, body) in [
        ("put", "Replace a user or group", "ScimResource"),
        ("patch", "Patch a user or group", "ScimPatchOp"),
    ] {
        let mut op = scim(summary)
            .params(item())
            .params([if_match()])
            .body(schema_ref(body))
            .ok_json(200, "The resource", schema_ref("ScimResource"));
        op.errors.extend([409, 412]);
        paths.add("/scim/v2/{coll}/{id}", method, op);
    }
    let mut delete = scim("Delete a user or group")
        .params(item())
        .params([if_match()])
        .ok(204, json!({"description": "Deleted"}));
    delete.errors.push(412);
    paths.add("/scim/v2/{coll}/{id}", "delete", delete);
}

fn rule_list() -> Value {
    json!({"type": "array", "items": schema_ref("governanceRuleSetting")})
}

fn schedule_input() -> Value {
    object(&[
        ("type", str_prop()),
        ("startDateTime", nullable_str()),
        ("endDateTime", nullable_str()),
        ("stopDateTime", nullable_str()),
        ("duration", nullable_str()),
    ])
}

fn schemas() -> Value {
    let resource = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("externalId", str_prop()),
        ("type", str_prop()),
        ("displayName", str_prop()),
        ("status", str_prop()),
        ("registeredDateTime", datetime()),
        ("registeredRoot", str_prop()),
        ("roleAssignmentCount", json!({"type": "integer"})),
        ("roleDefinitionCount", json!({"type": "integer"})),
        (
            "permissions",
            object(&[
                ("accessLevel", str_prop()),
                ("isActive", json!({"type": "boolean"})),
                ("isEligible", json!({"type": "boolean"})),
            ]),
        ),
        ("parent", expanded()),
    ]);
    let definition = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("resourceId", str_prop()),
        ("externalId", str_prop()),
        ("templateId", str_prop()),
        ("displayName", str_prop()),
        ("resource", expanded()),
        ("roleSetting", expanded()),
    ]);
    let setting = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("resourceId", str_prop()),
        ("roleDefinitionId", str_prop()),
        ("isDefault", json!({"type": "boolean"})),
        ("lastUpdatedDateTime", nullable_datetime()),
        ("lastUpdatedBy", nullable_str()),
        ("adminEligibleSettings", rule_list()),
        ("adminMemberSettings", rule_list()),
        ("userEligibleSettings", rule_list()),
        ("userMemberSettings", rule_list()),
        ("resource", expanded()),
        ("roleDefinition", expanded()),
    ]);
    let assignment = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("resourceId", str_prop()),
        ("roleDefinitionId", str_prop()),
        ("subjectId", str_prop()),
        ("linkedEligibleRoleAssignmentId", nullable_str()),
        ("externalId", nullable_str()),
        ("startDateTime", datetime()),
        ("endDateTime", nullable_datetime()),
        (
            "assignmentState",
            json!({"type": "string", "enum": ["Eligible", "Active"]}),
        ),
        (
            "memberType",
            json!({"type": "string", "enum": ["Direct", "Group", "Inherited"]}),
        ),
        ("status", str_prop()),
        ("resource", expanded()),
        ("roleDefinition", expanded()),
        ("subject", expanded()),
        ("linkedEligibleRoleAssignment", expanded()),
    ]);
    let request = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("resourceId", str_prop()),
        ("roleDefinitionId", str_prop()),
        ("subjectId", str_prop()),
        ("linkedEligibleRoleAssignmentId", str_prop()),
        ("type", str_prop()),
        (
            "assignmentState",
            json!({"type": "string", "enum": ["Eligible", "Active"]}),
        ),
        ("requestedDateTime", datetime()),
        ("reason", nullable_str()),
        (
            "schedule",
            json!({"allOf": [schema_ref("governanceSchedule")], "nullable": true}),
        ),
        (
            "status",
            object(&[
                ("status", str_prop()),
                ("subStatus", str_prop()),
                (
                    "statusDetails",
                    json!({"type": "array", "items": schema_ref("keyValue")}),
                ),
            ]),
        ),
        (
            "ticketInfo",
            object(&[
                ("ticketNumber", nullable_str()),
                ("ticketSystem", nullable_str()),
            ]),
        ),
        ("emergency", json!({"type": "boolean"})),
        ("resource", expanded()),
        ("roleDefinition", expanded()),
        ("subject", expanded()),
    ]);
    let subject = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("type", str_prop()),
        ("displayName", str_prop()),
        ("email", str_prop()),
        ("principalName", str_prop()),
    ]);
    let audit = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("category", str_prop()),
        ("correlationId", nullable_str()),
        (
            "result",
            json!({"type": "string", "enum": ["success", "failure"]}),
        ),
        ("resultReason", nullable_str()),
        ("activityDisplayName", str_prop()),
        ("activityDateTime", datetime()),
        ("loggedByService", str_prop()),
        ("operationType", nullable_str()),
        (
            "initiatedBy",
            // A person (`user`), or Rolegate's connectors (`app`, with `user` null).
            object(&[
                ("user", {
                    let mut user = object(&[
                        ("id", nullable_str()),
                        ("displayName", nullable_str()),
                        ("userPrincipalName", nullable_str()),
                    ]);
                    user["nullable"] = json!(true);
                    user
                }),
                (
                    "app",
                    object(&[
                        ("displayName", nullable_str()),
                        ("servicePrincipalId", nullable_str()),
                    ]),
                ),
            ]),
        ),
        (
            "targetResources",
            json!({"type": "array", "items": object(&[
                ("id", nullable_str()),
                ("displayName", nullable_str()),
                ("type", nullable_str()),
                ("modifiedProperties", json!({"type": "array", "items": object(&[
                    ("displayName", nullable_str()),
                    ("oldValue", nullable_str()),
                    ("newValue", nullable_str()),
                ])})),
            ])}),
        ),
        (
            "additionalDetails",
            json!({"type": "array", "items": object(&[("key", nullable_str()), ("value", nullable_str())])}),
        ),
    ]);
    let provider = object(&[
        ("@odata.context", str_prop()),
        ("id", str_prop()),
        ("displayName", str_prop()),
    ]);
    let new_request = object(&[
        ("resourceId", str_prop()),
        ("roleDefinitionId", str_prop()),
        ("subjectId", str_prop()),
        (
            "type",
            json!({"type": "string", "enum": ["AdminAdd", "AdminUpdate", "AdminRemove", "AdminExtend", "AdminRenew", "UserAdd", "UserUpdate", "UserRemove", "UserExtend", "UserRenew"]}),
        ),
        (
            "assignmentState",
            json!({"type": "string", "enum": ["Eligible", "Active"]}),
        ),
        ("schedule", schedule_input()),
        ("reason", str_prop()),
        ("linkedEligibleRoleAssignmentId", str_prop()),
        (
            "ticketInfo",
            object(&[("ticketNumber", str_prop()), ("ticketSystem", str_prop())]),
        ),
        ("emergency", json!({"type": "boolean"})),
    ]);
    let update = object(&[
        (
            "decision",
            json!({"type": "string", "enum": ["AdminApproved", "AdminDenied"]}),
        ),
        ("reason", str_prop()),
        (
            "assignmentState",
            json!({"type": "string", "enum": ["Eligible", "Active"]}),
        ),
        ("schedule", schedule_input()),
    ]);
    let mut update = update;
    update["required"] = json!(["decision"]);
    let mut register = object(&[
        ("externalId", str_prop()),
        ("displayName", str_prop()),
        ("parentExternalId", str_prop()),
    ]);
    register["required"] = json!(["externalId"]);
    json!({
        "governanceResource": resource,
        "governanceRoleDefinition": definition,
        "governanceRoleSetting": setting,
        "governanceRoleAssignment": assignment,
        "governanceRoleAssignmentRequest": request,
        "governanceSubject": subject,
        "directoryAudit": audit,
        "privilegedAccess": provider,
        "subscription": object(&[
            ("@odata.context", str_prop()),
            ("id", str_prop()),
            ("resource", str_prop()),
            ("changeType", str_prop()),
            ("notificationUrl", str_prop()),
            ("expirationDateTime", datetime()),
            ("clientState", nullable_str()),
            ("creatorId", nullable_str()),
        ]),
        "newSubscription": {
            "type": "object",
            "required": ["changeType", "notificationUrl", "resource", "expirationDateTime"],
            "properties": {
                "changeType": {"type": "string"},
                "notificationUrl": {"type": "string"},
                "resource": {"type": "string"},
                "expirationDateTime": {"type": "string"},
                "clientState": {"type": "string"},
            },
        },
        "governanceRuleSetting": object(&[("ruleIdentifier", str_prop()), ("setting", str_prop())]),
        "governanceSchedule": object(&[
            ("type", str_prop()),
            ("startDateTime", datetime()),
            ("endDateTime", nullable_datetime()),
            ("duration", nullable_str()),
        ]),
        "keyValue": object(&[("key", str_prop()), ("value", str_prop())]),
        "newRoleAssignmentRequest": new_request,
        "updateRequestBody": update,
        "registerBody": register,
        "roleSettingPatch": object(&[
            ("adminEligibleSettings", rule_list()),
            ("adminMemberSettings", rule_list()),
            ("userEligibleSettings", rule_list()),
            ("userMemberSettings", rule_list()),
        ]),
        "ODataError": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "innerError": object(&[
                        ("date", str_prop()),
                        ("request-id", str_prop()),
                        ("client-request-id", nullable_str()),
                    ]),
                },
            }},
        },
        "ScimError": {
            "type": "object",
            "required": ["schemas", "status"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "status": {"type": "string"},
                "detail": {"type": "string"},
                "scimType": {"type": "string"},
            },
        },
        "ScimResource": {
            "type": "object",
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "id": {"type": "string"},
                "externalId": {"type": "string"},
                "userName": {"type": "string"},
                "displayName": {"type": "string"},
                "active": {"type": "boolean"},
                "members": {"type": "array", "items": {"type": "object"}},
                "meta": {"type": "object"},
            },
        },
        "ScimListResponse": {
            "type": "object",
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "totalResults": {"type": "integer"},
                "startIndex": {"type": "integer"},
                "itemsPerPage": {"type": "integer"},
                "Resources": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ScimSearchRequest": {
            "type": "object",
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "filter": {"type": "string"},
                "startIndex": {"type": "integer"},
                "count": {"type": "integer"},
                "sortBy": {"type": "string"},
                "sortOrder": {"type": "string"},
                "attributes": {"type": "array", "items": {"type": "string"}},
                "excludedAttributes": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ScimPatchOp": {
            "type": "object",
            "required": ["schemas", "Operations"],
            "properties": {
                "schemas": {"type": "array", "items": {"type": "string"}},
                "Operations": {"type": "array", "items": {
                    "type": "object",
                    "required": ["op"],
                    "properties": {"op": {"type": "string"}, "path": {"type": "string"}, "value": {}},
                }},
            },
        },
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Paths(Map::new());
    let public = |summary: &str, ct: &str, status: &[u16]| {
        let mut op = Op::new(summary);
        op.public = true;
        for s in status {
            op = op.ok(
                *s,
                json!({"description": summary, "content": {ct: {"schema": {"type": "string"}}}}),
            );
        }
        op
    };
    paths.add(
        "/healthz",
        "get",
        public("Process up", "text/plain", &[200]),
    );
    paths.add(
        "/readyz",
        "get",
        public("Database reachable", "text/plain", &[200, 503]),
    );
    paths.add(
        "/metrics",
        "get",
        public("Prometheus metrics", "text/plain", &[200]),
    );
    let object = json!({"type": "object"});
    let collection = json!({"type": "object", "properties": {"value": {"type": "array", "items": {"type": "object"}}}});
    let name = || path_param("name", None);
    paths.add(
        "/rolegate/v1/connectors",
        "get",
        Op::new("Provisioning connectors, in file order (connectors.md §9; tenant administrators)")
            .ok_json(200, "The connectors", collection.clone()),
    );
    paths.add(
        "/rolegate/v1/connectors/reload",
        "post",
        Op::new("Re-read the connectors file given at start (connectors.md §2.1)").ok_json(
            200,
            "The connectors now",
            collection.clone(),
        ),
    );
    paths.add(
        "/rolegate/v1/connectors/{name}",
        "get",
        Op::new("One connector: status, items, last pass, rules")
            .params([name()])
            .ok_json(200, "The connector", object.clone()),
    );
    paths.add(
        "/rolegate/v1/connectors/{name}/grants",
        "get",
        Op::new("The connector's grants and their state, by target then principal")
            .params([
                name(),
                query_param("target", json!({"type": "string"}), "Exact target"),
                query_param("principal", json!({"type": "string"}), "Exact principal"),
                query_param("subjectId", json!({"type": "string"}), "Exact subject id"),
                query_param("state", json!({"type": "string", "enum": ["applied", "pending", "retrying", "failed", "unmapped", "outside"]}), "Grant state"),
            ])
            .ok_json(200, "The grants", collection.clone()),
    );
    paths.add(
        "/rolegate/v1/connectors/{name}/items",
        "get",
        Op::new("The connector's delivery items, newest first")
            .params([
                name(),
                query_param("state", json!({"type": "string", "enum": ["pending", "inProgress", "retrying", "succeeded", "dead", "superseded"]}), "Item state"),
                query_param("top", json!({"type": "integer", "minimum": 1, "maximum": 1000}), "At most this many (default 100)"),
            ])
            .ok_json(200, "The items", collection.clone()),
    );
    paths.add(
        "/rolegate/v1/connectors/{name}/reconcile",
        "post",
        Op::new("Re-arm the connector's dead items and run a reconciliation pass now (waits up to 30 s)")
            .params([name()])
            .ok_json(200, "The finished pass", object.clone())
            .ok_json(202, "The pass, still running", object),
    );
    let mut spec = Op::new("This document");
    spec.public = true;
    paths.add(
        "/openapi.json",
        "get",
        spec.ok_json(200, "OpenAPI 3.0 document", json!({"type": "object"})),
    );
    let mut discovery = Op::new("How clients sign in here (cli.md §1)");
    discovery.public = true;
    paths.add(
        "/.well-known/rolegate-configuration",
        "get",
        discovery.ok_json(
            200,
            "issuer, cli_client_id, scopes, device_authorization, development",
            json!({"type": "object"}),
        ),
    );
    let mut authzen_meta = Op::new("AuthZEN PDP metadata (authzen.md §8)");
    authzen_meta.public = true;
    paths.add(
        "/.well-known/authzen-configuration",
        "get",
        authzen_meta.ok_json(200, "The PDP's endpoints", json!({"type": "object"})),
    );
    let entity = json!({"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}, "properties": {"type": "object"}}});
    let action = json!({"type": "object", "properties": {"name": {"type": "string"}, "properties": {"type": "object"}}});
    let decision = json!({"type": "object", "properties": {"decision": {"type": "boolean"}, "context": {"type": "object"}}});
    paths.add(
        "/access/v1/evaluation",
        "post",
        Op::new("AuthZEN Access Evaluation: may the subject do the action on the resource now (authzen.md §5)")
            .body(json!({"type": "object", "properties": {"subject": entity, "resource": entity, "action": action, "context": {"type": "object"}}}))
            .ok_json(200, "The decision", decision.clone()),
    );
    paths.add(
        "/access/v1/evaluations",
        "post",
        Op::new("AuthZEN Access Evaluations: a batch with defaults and evaluations_semantic (authzen.md §6)")
            .body(json!({"type": "object", "properties": {"subject": entity, "resource": entity, "action": action, "context": {"type": "object"}, "options": {"type": "object"}, "evaluations": {"type": "array", "items": {"type": "object"}}}}))
            .ok_json(200, "The decisions (or one decision without items)", json!({"type": "object", "properties": {"evaluations": {"type": "array", "items": decision}, "decision": {"type": "boolean"}, "context": {"type": "object"}}})),
    );
    let page = json!({"type": "object", "properties": {"next_token": {"type": "string"}, "count": {"type": "integer"}, "total": {"type": "integer"}}});
    for (kind, what) in [
        (
            "subject",
            "the subjects that may do the action on the resource",
        ),
        ("resource", "the resources the subject may do the action on"),
        ("action", "the roles the subject holds at the resource"),
    ] {
        paths.add(
            &format!("/access/v1/search/{kind}"),
            "post",
            Op::new(format!("AuthZEN {kind} search: {what} (authzen.md §7)"))
                .body(json!({"type": "object", "properties": {"subject": entity, "resource": entity, "action": action, "context": {"type": "object"}, "page": {"type": "object"}}}))
                .ok_json(200, "A page of results", json!({"type": "object", "properties": {"page": page, "context": {"type": "object"}, "results": {"type": "array", "items": {"type": "object"}}}})),
        );
    }
    paths.add(
        "/beta/me",
        "get",
        Op::new("The caller (Rolegate): a governanceSubject with isTenantAdministrator and mfa")
            .ok_json(200, "The caller", schema_ref("governanceSubject")),
    );
    paths.add(
        "/beta/privilegedAccess/{provider}/resources/{rid}/roleAssignments/expired()",
        "get",
        Op::new("A resource's assignments that ended by expiry in the last 30 days (Rolegate)")
            .params([
                path_param("provider", Some(&["azureResources"])),
                path_param("rid", None),
            ])
            .params(odata_params(&["$expand", "$select"]))
            .ok_json(
                200,
                "The assignments",
                collection_of(schema_ref("governanceRoleAssignment")),
            ),
    );
    paths.add(
        "/beta/me/expiredRoleAssignments",
        "get",
        Op::new("The caller's eligibilities that ended in the last 30 days (Rolegate; what UserRenew renews)")
            .params(odata_params(&["$expand", "$select"]))
            .ok_json(
                200,
                "The assignments",
                collection_of(schema_ref("governanceRoleAssignment")),
            ),
    );
    let p = "/beta/privilegedAccess/{provider}";
    let provider = || path_param("provider", Some(&["azureResources"]));
    paths.add(
        "/beta/privilegedAccess",
        "get",
        Op::new("List providers").ok_json(
            200,
            "The providers",
            collection_of(schema_ref("privilegedAccess")),
        ),
    );
    paths.add(
        p,
        "get",
        Op::new("Get the provider").params([provider()]).ok_json(
            200,
            "The provider",
            schema_ref("privilegedAccess"),
        ),
    );
    paths.add(
        &format!("{p}/resources"),
        "get",
        Op::new("List resources the caller may read")
            .params([provider()])
            .params(odata_params(&LIST_OPTIONS))
            .ok_json(
                200,
                "A page",
                collection_of(schema_ref("governanceResource")),
            ),
    );
    paths.add(
        &format!("{p}/resources/$count"),
        "get",
        Op::new("Count resources")
            .params([provider()])
            .params(odata_params(&["$filter"]))
            .ok(200, text("The number of resources")),
    );
    paths.add(
        &format!("{p}/resources/register"),
        "post",
        Op::new("Register a resource by ARM id (200, no body, also when already registered)")
            .params([provider()])
            .body(schema_ref("registerBody"))
            .ok(200, json!({"description": "Registered"})),
    );
    let rid = || [provider(), path_param("rid", None)];
    paths.add(
        &format!("{p}/resources/{{rid}}"),
        "get",
        Op::new("Get a resource")
            .params(rid())
            .params(odata_params(&ITEM_OPTIONS))
            .ok_json(200, "The resource", schema_ref("governanceResource")),
    );
    paths.add(
        &format!("{p}/resources/{{rid}}/parent"),
        "get",
        Op::new("Get a resource's parent")
            .params(rid())
            .params(odata_params(&ITEM_OPTIONS))
            .ok_json(200, "The parent", schema_ref("governanceResource")),
    );
    graph_prefix(&mut paths, p, false);
    graph_prefix(&mut paths, &format!("{p}/resources/{{rid}}"), true);
    let audits = "/beta/auditLogs/directoryAudits";
    paths.add(
        audits,
        "get",
        Op::new("List audit records, newest first")
            .params(odata_params(&LIST_OPTIONS))
            .ok_json(200, "A page", collection_of(schema_ref("directoryAudit"))),
    );
    paths.add(
        &format!("{audits}/$count"),
        "get",
        Op::new("Count audit records")
            .params(odata_params(&["$filter"]))
            .ok(200, text("The number of records")),
    );
    paths.add(
        &format!("{audits}/{{id}}"),
        "get",
        Op::new("Get an audit record")
            .params([path_param("id", None)])
            .params(odata_params(&ITEM_OPTIONS))
            .ok_json(200, "The record", schema_ref("directoryAudit")),
    );
    subscription_paths(&mut paths);
    scim_paths(&mut paths);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Rolegate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Microsoft Graph beta PIM (azureResources) API, audit log and SCIM 2.0 directory. See docs/openapi.md for what this document leaves out.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths.0,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_route_is_documented() {
        let doc = document();
        let paths = doc["paths"]
            .as_object()
            .unwrap_or_else(|| panic!("no paths"));
        let registered = crate::route_paths();
        assert!(registered.len() > 50, "{registered:?}");
        let missing: Vec<_> = registered
            .iter()
            .filter(|p| !paths.contains_key(p.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "routes missing from /openapi.json: {missing:?}"
        );
        let stale: Vec<_> = paths.keys().filter(|p| !registered.contains(p)).collect();
        assert!(stale.is_empty(), "documented paths not routed: {stale:?}");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .unwrap_or_else(|| panic!("no schemas"));
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"').collect();
            assert!(schemas.contains_key(&name), "dangling $ref {name}");
        }
    }
}
