//! `serve --demo`: a believable demo tenant (a management group, two subscriptions,
//! resource groups and resources, users and a group, eligible assignments and one approval
//! rule), seeded through the same domain operations as the API, and a printed guide with
//! tokens and one `curl` per main flow.

use anyhow::Context;
use rolegate_core::access::{AccessIndex, Caller, OpContext};
use rolegate_core::assignment::AssignmentState;
use rolegate_core::clock::Clock;
use rolegate_core::directory::{Subject, SubjectKind};
use rolegate_core::operation;
use rolegate_core::operation::resource::register;
use rolegate_core::operation::role::update_role_setting;
use rolegate_core::policy::{RoleRulesPatch, RuleSetting};
use rolegate_core::query::ListQuery;
use rolegate_core::request::{NewRequest, RequestType};
use rolegate_core::role::OWNER;
use rolegate_core::schedule::ScheduleInput;
use rolegate_core::store::{self, ReadTx, Store};

/// The demo tenant administrator's subject id.
pub const ADMIN: &str = "demo-admin";

const MG: &str = "/providers/Microsoft.Management/managementGroups/contoso";
const PROD: &str = "/subscriptions/3f2b6a1e-8c5d-4e7a-9b1c-0d2e4f6a8b01";
const DEV: &str = "/subscriptions/7a9c1e3f-5b7d-4f9a-8c2e-1b3d5f7a9c02";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

fn resource_id(tx: &mut dyn ReadTx, arm: &str) -> rolegate_core::Result<String> {
    tx.resource_by_external_key(&arm.to_lowercase())?
        .map(|r| r.id)
        .ok_or_else(|| {
            rolegate_core::DomainError::internal(format!("demo resource `{arm}` missing"))
        })
}

fn role_id(tx: &mut dyn ReadTx, resource: &str, template: &str) -> rolegate_core::Result<String> {
    tx.role_definition_by_template(resource, template)?
        .map(|d| d.id)
        .ok_or_else(|| rolegate_core::DomainError::internal("demo role missing"))
}

fn subject_id(tx: &mut dyn ReadTx, external: &str) -> rolegate_core::Result<String> {
    tx.subject(external)?
        .map(|s| s.id)
        .ok_or_else(|| rolegate_core::DomainError::internal("demo subject missing"))
}

fn person(external: &str, name: &str) -> Subject {
    Subject {
        id: rolegate_api::new_id(),
        external_id: Some(external.to_string()),
        kind: SubjectKind::User,
        display_name: name.to_string(),
        principal_name: Some(format!("{external}@contoso.example")),
        email: Some(format!("{external}@contoso.example")),
        active: true,
    }
}

/// The demo people, as buttons of the portal's development sign-in page.
pub fn users() -> Vec<rolegate_portal::DemoUser> {
    let mut users: Vec<_> = PEOPLE
        .iter()
        .map(|(ext, name)| rolegate_portal::DemoUser {
            user_name: format!("{ext}@contoso.example"),
            display_name: (*name).to_string(),
        })
        .collect();
    users.push(rolegate_portal::DemoUser {
        user_name: ADMIN.to_string(),
        display_name: "Demo Administrator".to_string(),
    });
    users
}

/// The demo's people: external id and display name.
const PEOPLE: [(&str, &str); 4] = [
    ("alice", "Alice Engineer"),
    ("bob", "Bob Approver"),
    ("carol", "Carol Auditor"),
    ("dave", "Dave Oncall"),
];

/// Seeds the demo tenant unless the database already holds resources.
pub fn seed(store: &dyn Store, clock: &dyn Clock) -> anyhow::Result<()> {
    let empty = store::read(store, |tx| {
        Ok(tx
            .list_resources(&ListQuery {
                top: 1,
                ..ListQuery::default()
            })?
            .items
            .is_empty())
    })?;
    if !empty {
        return Ok(());
    }
    let caller = Caller {
        subject_id: ADMIN.into(),
        display_name: "Demo Administrator".into(),
        principal_name: None,
        is_tenant_admin: true,
        mfa: true,
    };
    let index = AccessIndex::new();
    let new_id = rolegate_api::new_id;
    // The tenant was set up a week ago, so the history below has somewhere to start.
    let now = clock.now();
    let ctx = OpContext {
        caller: &caller,
        access: &index,
        now: now - jiff::SignedDuration::from_hours(7 * 24),
        correlation_id: "demo-seed",
        new_id: &new_id,
        mail: None,
    };
    store::write(store, |tx| {
        register(tx, &ctx, MG, Some("Contoso".into()), None)?;
        register(tx, &ctx, PROD, Some("Contoso Production".into()), Some(MG))?;
        register(tx, &ctx, DEV, Some("Contoso Development".into()), Some(MG))?;
        for (arm, name) in [
            (format!("{PROD}/resourceGroups/rg-web"), None),
            (format!("{PROD}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-vm-01"), None),
            (format!("{PROD}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/contosodata"), None),
            (format!("{DEV}/resourceGroups/rg-sandbox/providers/Microsoft.Compute/virtualMachines/sandbox-vm"), None),
        ] {
            register(tx, &ctx, &arm, name, None)?;
        }
        for (ext, name) in PEOPLE {
            operation::directory::create_subject(tx, &ctx, person(ext, name), Vec::new())?;
        }
        let group = Subject {
            id: rolegate_api::new_id(),
            external_id: Some("platform-engineers".into()),
            kind: SubjectKind::Group,
            display_name: "Platform Engineers".into(),
            principal_name: None,
            email: None,
            active: true,
        };
        let members = vec![subject_id(tx, "alice")?, subject_id(tx, "dave")?];
        operation::directory::create_subject(tx, &ctx, group, members)?;
        let (prod, dev, mg) = (resource_id(tx, PROD)?, resource_id(tx, DEV)?, resource_id(tx, MG)?);
        let bob = subject_id(tx, "bob")?;
        // Owner on Development needs Bob's approval when activated.
        let dev_owner = role_id(tx, &dev, OWNER)?;
        let setting = tx.role_setting_of(&dev_owner)?.map(|s| s.id).unwrap_or_default();
        let approval = format!(r#"{{"Enabled":true,"Approvers":[{{"Id":"{bob}","Type":"User","DisplayName":"Bob Approver"}}],"RequiredApprovals":1}}"#);
        update_role_setting(
            tx,
            &ctx,
            &setting,
            RoleRulesPatch { user_member: Some(vec![RuleSetting { rule_identifier: "ApprovalRule".into(), setting: approval }]), ..RoleRulesPatch::default() },
        )?;
        let grants = [
            (prod.clone(), OWNER, "bob", AssignmentState::Active, "P180D"),
            (prod.clone(), CONTRIBUTOR, "alice", AssignmentState::Eligible, "P365D"),
            (dev.clone(), OWNER, "platform-engineers", AssignmentState::Eligible, "P365D"),
            (mg, READER, "carol", AssignmentState::Eligible, "P365D"),
        ];
        for (resource, template, who, state, days) in grants {
            let role = role_id(tx, &resource, template)?;
            let subject = subject_id(tx, who)?;
            operation::request::submit(
                tx,
                &ctx,
                NewRequest {
                    resource_id: resource,
                    role_definition_id: role,
                    subject_id: subject,
                    kind: Some(RequestType::AdminAdd),
                    state: Some(state),
                    schedule: Some(ScheduleInput { duration: Some(days.into()), ..ScheduleInput::default() }),
                    reason: Some("Demo tenant setup".into()),
                    ..NewRequest::default()
                },
            )?;
        }
        Ok(())
    })
    .context("seeding the demo tenant")?;
    seed_history(store, now).context("seeding the demo tenant's history")?;
    Ok(())
}

/// A person of the demo as a caller (signed in with MFA).
fn demo_caller(tx: &mut dyn ReadTx, external: &str) -> rolegate_core::Result<Caller> {
    let s = tx.subject(external)?.ok_or_else(|| {
        rolegate_core::DomainError::internal(format!("demo subject `{external}` missing"))
    })?;
    Ok(Caller {
        subject_id: s.id,
        display_name: s.display_name,
        principal_name: s.principal_name,
        is_tenant_admin: false,
        mfa: true,
    })
}

/// What makes every page worth opening: past activations (one expired, one approved then
/// expired, one denied) and Dave's activation of Owner on Contoso Development that waits
/// for Bob's approval now. Each step runs as its person, at its time, through the same
/// operations as the API, so requests, approvals and audit records are the real ones.
fn seed_history(store: &dyn Store, now: jiff::Timestamp) -> rolegate_core::Result<()> {
    let hours = |h: i64| now - jiff::SignedDuration::from_hours(h);
    let new_id = rolegate_api::new_id;
    let activate = |who: &str, resource_arm: &str, template: &str, reason: &str, at| {
        store::write(store, |tx| {
            let (index, _) = rolegate_api::state::build_index_in(tx, at)?;
            let caller = demo_caller(tx, who)?;
            let resource = resource_id(tx, resource_arm)?;
            let role = role_id(tx, &resource, template)?;
            let ctx = OpContext {
                caller: &caller,
                access: &index,
                now: at,
                correlation_id: "demo-seed",
                new_id: &new_id,
                mail: None,
            };
            let out = operation::request::submit(
                tx,
                &ctx,
                NewRequest {
                    resource_id: resource,
                    role_definition_id: role,
                    subject_id: caller.subject_id.clone(),
                    kind: Some(RequestType::UserAdd),
                    state: Some(AssignmentState::Active),
                    schedule: Some(ScheduleInput {
                        kind: Some("Once".into()),
                        duration: Some("PT2H".into()),
                        ..ScheduleInput::default()
                    }),
                    reason: Some(reason.into()),
                    ..NewRequest::default()
                },
            )?;
            Ok(out.request.id)
        })
    };
    let decide = |request: &str, approve: bool, why: &str, at| {
        store::write(store, |tx| {
            let (index, _) = rolegate_api::state::build_index_in(tx, at)?;
            let caller = demo_caller(tx, "bob")?;
            let ctx = OpContext {
                caller: &caller,
                access: &index,
                now: at,
                correlation_id: "demo-seed",
                new_id: &new_id,
                mail: None,
            };
            let input = rolegate_core::request::DecisionInput {
                decision: if approve {
                    "AdminApproved"
                } else {
                    "AdminDenied"
                }
                .into(),
                reason: Some(why.into()),
                schedule: None,
            };
            operation::request::decide(tx, &ctx, request, &input).map(|_| ())
        })
    };
    activate("alice", PROD, CONTRIBUTOR, "Deploy hotfix 1.4.2", hours(72))?;
    let rotation = activate(
        "dave",
        DEV,
        OWNER,
        "Rotate the storage account keys",
        hours(48),
    )?;
    decide(
        &rotation,
        true,
        "Approved for tonight's rotation window",
        hours(47),
    )?;
    let incident = activate("dave", DEV, OWNER, "Debug the failing pipeline", hours(24))?;
    decide(
        &incident,
        false,
        "Use the pipeline runbook; no Owner needed",
        hours(23),
    )?;
    activate("dave", DEV, OWNER, "Investigate failing deploys", now)?;
    Ok(())
}

/// Prints tokens and one example call per main flow.
pub fn print_guide(
    store: &dyn Store,
    secret: &str,
    origin: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    let (prod, contributor, eligible, alice) = store::read(store, |tx| {
        let prod = resource_id(tx, PROD)?;
        let contributor = role_id(tx, &prod, CONTRIBUTOR)?;
        let alice = subject_id(tx, "alice")?;
        let key = rolegate_core::store::AssignmentKey {
            resource_id: prod.clone(),
            role_definition_id: contributor.clone(),
            subject_id: alice.clone(),
            state: AssignmentState::Eligible,
        };
        let eligible = tx
            .assignments_with_key(&key)?
            .into_iter()
            .next()
            .map(|a| a.id)
            .unwrap_or_default();
        Ok((prod, contributor, eligible, alice))
    })?;
    let token = |sub: &str, name: &str| {
        rolegate_api::auth::development_token(
            secret.as_bytes(),
            sub,
            Some(name.into()),
            true,
            8 * 3600,
            now,
        )
    };
    let (admin_t, alice_t, bob_t, dave_t) = (
        token(ADMIN, "Demo Administrator")?,
        token("alice", "Alice Engineer")?,
        token("bob", "Bob Approver")?,
        token("dave", "Dave Oncall")?,
    );
    let base = format!("{origin}/beta/privilegedAccess/azureResources");
    println!(
        r#"
Rolegate demo tenant is ready. HS256 secret (for `rolegate token`): {secret}

Tokens (valid 8 hours, MFA satisfied):
  export ADMIN={admin_t}
  export ALICE={alice_t}
  export BOB={bob_t}
  export DAVE={dave_t}

Alice's eligible assignments (Contributor on Contoso Production):
  curl -s -H "Authorization: Bearer $ALICE" "{base}/roleAssignments?\$filter=subjectId%20eq%20'{alice}'&\$expand=roleDefinition(\$expand=resource)"

Alice activates it for two hours:
  curl -s -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' -X POST {base}/roleAssignmentRequests \
    -d '{{"type":"UserAdd","assignmentState":"Active","subjectId":"{alice}","resourceId":"{prod}","roleDefinitionId":"{contributor}","linkedEligibleRoleAssignmentId":"{eligible}","reason":"Deploy hotfix","schedule":{{"type":"Once","duration":"PT2H"}}}}'

Alice deactivates it:
  curl -s -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' -X POST {base}/roleAssignmentRequests \
    -d '{{"type":"UserRemove","assignmentState":"Active","subjectId":"{alice}","resourceId":"{prod}","roleDefinitionId":"{contributor}"}}'

The administrator registers a new resource group:
  curl -s -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -X POST {base}/resources/register \
    -d '{{"externalId":"{PROD}/resourceGroups/rg-new"}}'

The web portal: {origin}/ui/
  Sign in with one click as Alice Engineer (eligible Contributor on Contoso Production),
  Bob Approver (Owner of Contoso Production; approves Owner on Contoso Development),
  Carol Auditor (eligible Reader on Contoso), Dave Oncall (Platform Engineers; his
  activation of Owner on Contoso Development waits for Bob), or Demo Administrator.

Dave (Platform Engineers) activating Owner on Contoso Development waits for Bob's approval;
Bob finds it with:
  curl -s -H "Authorization: Bearer $BOB" "{base}/roleAssignmentRequests?\$filter=status/subStatus%20eq%20'PendingApproval'"

From the command line (the same binary is the client; profiles live in ~/.config/rolegate):
  echo {secret} > demo.secret
  rolegate login --server {origin} --dev-user alice --mfa --secret-file demo.secret
  rolegate roles
  rolegate activate contributor --scope "Contoso Production" --for 2h --reason "Deploy hotfix"
  rolegate login --server {origin} --profile bob --dev-user bob --mfa --secret-file demo.secret
  rolegate approvals --profile bob
"#
    );
    Ok(())
}
