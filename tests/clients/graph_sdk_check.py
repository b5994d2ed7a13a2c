#!/usr/bin/env python3
"""Drives a running Rolegate server with the official Python Graph client
(PyPI `msgraph-beta-sdk`, pinned in requirements.txt), pointed at it as
graph-pim-v2.md §10.4 shows.

Usage:
    graph_sdk_check.py ORIGIN FIXTURE

ORIGIN is the server's origin (`http://127.0.0.1:PORT`); FIXTURE is a JSON file, or a JSON
object given inline, with the ids and tokens seeded beforehand (see `FIXTURE_KEYS`). Both
may come from the environment instead: ROLEGATE_ORIGIN and ROLEGATE_SDK_FIXTURE.

The fixture holds three actors (the tenant administrator, Alice, who holds an eligible
Contributor assignment on a subscription, and Bob, a plain user) and one subscription with
its role definition ids. Everything else the script creates itself, with SDK objects only.

Prints one line per check; exits 1 on the first failure, with what was expected and got.
"""

import asyncio
import datetime
import json
import os
import sys
import warnings

# Every builder method warns that the PIM iteration 2 API is deprecated (graph-pim-v2.md §10.3).
warnings.simplefilter("ignore", DeprecationWarning)

from azure.core.credentials import AccessToken  # noqa: E402
from kiota_abstractions.base_request_configuration import RequestConfiguration  # noqa: E402
from kiota_authentication_azure.azure_identity_authentication_provider import (  # noqa: E402
    AzureIdentityAuthenticationProvider,
)
from msgraph_beta import GraphServiceClient  # noqa: E402
from msgraph_beta.generated.models.governance_role_assignment_request import (  # noqa: E402
    GovernanceRoleAssignmentRequest,
)
from msgraph_beta.generated.models.governance_role_setting import GovernanceRoleSetting  # noqa: E402
from msgraph_beta.generated.models.governance_rule_setting import GovernanceRuleSetting  # noqa: E402
from msgraph_beta.generated.models.governance_schedule import GovernanceSchedule  # noqa: E402
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError  # noqa: E402
from msgraph_beta.generated.privileged_access.item.resources.register.register_post_request_body import (  # noqa: E402
    RegisterPostRequestBody,
)
from msgraph_beta.generated.privileged_access.item.role_assignment_requests.item.update_request.update_request_post_request_body import (  # noqa: E402
    UpdateRequestPostRequestBody,
)
from msgraph_beta.graph_request_adapter import GraphRequestAdapter  # noqa: E402

FIXTURE_KEYS = [
    "admin_token",  # tenant administrator
    "alice_token",  # Alice (MFA claim set)
    "bob_token",  # Bob (MFA claim set)
    "alice_id",  # Alice's subject id
    "alice_name",  # Alice's display name
    "bob_id",  # Bob's subject id
    "resource_id",  # a registered subscription
    "resource_external_id",  # its ARM id
    "contributor_id",  # Contributor's role definition id on it
    "owner_id",  # Owner's role definition id on it
    "eligible_contributor_id",  # Alice's eligible Contributor assignment there
]

OWNER_TEMPLATE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR_TEMPLATE = "b24988ac-6180-42a0-ab88-20f7382dd24c"
EXPORT_HEADER = (
    "Assignment Level,User Group Name,Role Name,Email,Assignment Type,"
    "Assignment Start Time (UTC),Assignment End Time (UTC)"
)


class CheckFailed(Exception):
    pass


def ok(name):
    print(f"ok   {name}", flush=True)


def check(name, cond, detail=""):
    if not cond:
        raise CheckFailed(f"{name}: {detail}" if detail else name)
    ok(name)


def eq(name, got, want):
    check(name, got == want, f"expected {want!r}, got {got!r}")


class StaticCredential:
    """Duck-typed azure.core TokenCredential handing out one fixed bearer token."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        expires = int(datetime.datetime.now().timestamp()) + 3600
        return AccessToken(self.token, expires)


def provider_for(origin, token):
    """`privilegedAccess/azureResources` of a client that sends `token` (one client per actor)."""
    adapter = GraphRequestAdapter(AzureIdentityAuthenticationProvider(StaticCredential(token)))
    adapter.base_url = origin.rstrip("/") + "/beta"  # before building the client
    client = GraphServiceClient(request_adapter=adapter)
    return client.privileged_access.by_privileged_access_id("azureResources")


def query(builder_cls, **params):
    """A RequestConfiguration with the builder's GET query parameters."""
    qp_cls = next(
        getattr(builder_cls, n) for n in dir(builder_cls) if n.endswith("GetQueryParameters")
    )
    return RequestConfiguration(query_parameters=qp_cls(**params))


def rules(collection):
    return {r.rule_identifier: json.loads(r.setting) for r in (collection or [])}


def sub_status(req):
    return (req.status.status, req.status.sub_status) if req and req.status else None


async def expect_odata_error(name, awaitable, status, code):
    try:
        got = await awaitable
    except ODataError as e:
        err_code = e.error.code if e.error else None
        check(
            name,
            e.response_status_code == status and err_code == code,
            f"expected {status} {code}, got {e.response_status_code} {err_code}: "
            f"{e.error.message if e.error else e}",
        )
        return
    raise CheckFailed(f"{name}: expected ODataError {status} {code}, got a success: {got!r}")


async def run(origin, fx):
    from msgraph_beta.generated.privileged_access.item.resources.item.role_definitions.role_definitions_request_builder import (
        RoleDefinitionsRequestBuilder,
    )
    from msgraph_beta.generated.privileged_access.item.role_assignment_requests.role_assignment_requests_request_builder import (
        RoleAssignmentRequestsRequestBuilder,
    )
    from msgraph_beta.generated.privileged_access.item.role_assignments.export.export_request_builder import (
        ExportRequestBuilder,
    )
    from msgraph_beta.generated.privileged_access.item.role_assignments.role_assignments_request_builder import (
        RoleAssignmentsRequestBuilder,
    )
    from msgraph_beta.generated.privileged_access.item.role_settings.role_settings_request_builder import (
        RoleSettingsRequestBuilder,
    )

    admin = provider_for(origin, fx["admin_token"])
    alice = provider_for(origin, fx["alice_token"])
    bob = provider_for(origin, fx["bob_token"])
    rid, alice_id, bob_id = fx["resource_id"], fx["alice_id"], fx["bob_id"]
    now = lambda: datetime.datetime.now(datetime.timezone.utc)  # noqa: E731

    # --- privilegedAccess and resources -------------------------------------------------
    pa = await admin.get()
    eq("GET privilegedAccess/azureResources: id", pa.id if pa else None, "azureResources")

    await admin.resources.register.post(
        RegisterPostRequestBody(external_id=fx["resource_external_id"] + "/resourceGroups/rg-sdk")
    )
    ok("resources.register.post (a resource group under the subscription)")

    listed = await admin.resources.get()
    by_id = {r.id: r for r in listed.value or []}
    check("resources.get lists the subscription", rid in by_id, f"ids: {sorted(by_id)}")
    rg = [r for r in listed.value if r.type == "resourcegroup" and (r.external_id or "").endswith("/rg-sdk")]
    check("resources.get lists the registered resource group", len(rg) == 1, f"got {listed.value!r}")

    res = await admin.resources.by_governance_resource_id(rid).get()
    eq("resources.by_id.get: id", res.id, rid)
    eq("resources.by_id.get: externalId", (res.external_id or "").lower(), fx["resource_external_id"].lower())
    eq("resources.by_id.get: type", res.type, "subscription")
    check("resources.by_id.get: displayName", bool(res.display_name), f"got {res.display_name!r}")

    parent = await admin.resources.by_governance_resource_id(rg[0].id).parent.get()
    eq("resources.by_id.parent.get of the resource group", parent.id if parent else None, rid)

    mine = await alice.resources.get()
    check(
        "resources.get as Alice lists the subscription she is eligible on",
        rid in {r.id for r in mine.value or []},
        f"got {[r.id for r in mine.value or []]}",
    )

    await expect_odata_error(
        "resources.by_id.get of an unknown id raises ODataError 404 ResourceNotFound",
        admin.resources.by_governance_resource_id("00000000-0000-0000-0000-000000000000").get(),
        404,
        "ResourceNotFound",
    )

    # --- role definitions -----------------------------------------------------------------
    defs = await admin.resources.by_governance_resource_id(rid).role_definitions.get()
    templates = {d.template_id: d for d in defs.value or []}
    check(
        "resources.by_id.role_definitions.get has Owner and Contributor",
        OWNER_TEMPLATE in templates and CONTRIBUTOR_TEMPLATE in templates,
        f"templates: {sorted(templates)}",
    )
    eq("Owner's role definition id", templates[OWNER_TEMPLATE].id, fx["owner_id"])
    eq("Contributor's role definition id", templates[CONTRIBUTOR_TEMPLATE].id, fx["contributor_id"])
    filtered = await admin.resources.by_governance_resource_id(rid).role_definitions.get(
        query(RoleDefinitionsRequestBuilder, filter=f"templateId eq '{OWNER_TEMPLATE}'")
    )
    eq(
        "role_definitions.get with $filter=templateId eq Owner",
        [d.id for d in filtered.value or []],
        [fx["owner_id"]],
    )
    owner_def = await admin.role_definitions.by_governance_role_definition_id(fx["owner_id"]).get()
    eq("role_definitions.by_id.get: displayName", owner_def.display_name, "Owner")

    # --- role settings: get, PATCH, read back ------------------------------------------
    settings = await admin.role_settings.get(
        query(RoleSettingsRequestBuilder, filter=f"roleDefinitionId eq '{fx['owner_id']}'")
    )
    check(
        "role_settings.get with $filter=roleDefinitionId eq Owner finds one",
        len(settings.value or []) == 1,
        f"got {settings.value!r}",
    )
    setting = settings.value[0]
    eq("role setting resourceId", setting.resource_id, rid)
    before = rules(setting.user_member_settings)
    check(
        "default userMemberSettings have MfaRule, JustificationRule and a disabled ApprovalRule",
        "MfaRule" in before
        and "JustificationRule" in before
        and before.get("ApprovalRule", {}).get("Enabled") is False,
        f"got {before!r}",
    )
    via_nav = await admin.role_definitions.by_governance_role_definition_id(fx["owner_id"]).role_setting.get()
    eq("role_definitions.by_id.role_setting.get: id", via_nav.id if via_nav else None, setting.id)

    approval = {
        "Enabled": True,
        "Approvers": [{"Id": bob_id, "Type": "User", "DisplayName": "Bob"}],
    }
    expiration = {"permanentAssignment": False, "maximumGrantPeriodInMinutes": 240}
    patched = await admin.role_settings.by_governance_role_setting_id(setting.id).patch(
        GovernanceRoleSetting(
            user_member_settings=[
                GovernanceRuleSetting(rule_identifier="ApprovalRule", setting=json.dumps(approval)),
                GovernanceRuleSetting(rule_identifier="ExpirationRule", setting=json.dumps(expiration)),
            ]
        )
    )
    ok(f"role_settings.by_id.patch (userMemberSettings ApprovalRule + ExpirationRule) -> {patched!r}")
    back = await admin.role_settings.by_governance_role_setting_id(setting.id).get()
    after = rules(back.user_member_settings)
    eq("read back: ApprovalRule", after.get("ApprovalRule", {}).get("Enabled"), True)
    eq(
        "read back: ApprovalRule approver",
        [a.get("Id") for a in after.get("ApprovalRule", {}).get("Approvers", [])],
        [bob_id],
    )
    eq("read back: ExpirationRule", after.get("ExpirationRule", {}).get("maximumGrantPeriodInMinutes"), 240)
    eq("read back: MfaRule kept (merge by ruleIdentifier)", after.get("MfaRule"), before.get("MfaRule"))
    eq("read back: isDefault", back.is_default, False)
    check("read back: lastUpdatedDateTime set", back.last_updated_date_time is not None, "missing")
    eq(
        "read back: adminEligibleSettings untouched",
        rules(back.admin_eligible_settings),
        rules(setting.admin_eligible_settings),
    )

    # --- AdminAdd: Alice eligible for Owner for 10 days ---------------------------------
    owner_eligible = await admin.role_assignment_requests.post(
        GovernanceRoleAssignmentRequest(
            resource_id=rid,
            role_definition_id=fx["owner_id"],
            subject_id=alice_id,
            assignment_state="Eligible",
            type="AdminAdd",
            reason="SDK check: eligibility for Owner",
            schedule=GovernanceSchedule(type="Once", start_date_time=now(), duration=datetime.timedelta(days=10)),
        )
    )
    eq("AdminAdd (Eligible) status", sub_status(owner_eligible), ("Closed", "Provisioned"))
    eq("AdminAdd type echoed", owner_eligible.type, "AdminAdd")
    eq("AdminAdd schedule duration", owner_eligible.schedule.duration, datetime.timedelta(days=10))
    check(
        "AdminAdd schedule end = start + 10 days",
        owner_eligible.schedule.end_date_time - owner_eligible.schedule.start_date_time
        == datetime.timedelta(days=10),
        f"got {owner_eligible.schedule!r}",
    )

    # --- UserAdd: Alice activates Contributor (no approval) ------------------------------
    activation = GovernanceRoleAssignmentRequest(
        resource_id=rid,
        role_definition_id=fx["contributor_id"],
        subject_id=alice_id,
        assignment_state="Active",
        type="UserAdd",
        reason="SDK check: deploy",
        linked_eligible_role_assignment_id=fx["eligible_contributor_id"],
        schedule=GovernanceSchedule(type="Once", start_date_time=now(), duration=datetime.timedelta(hours=2)),
    )
    active = await alice.role_assignment_requests.post(activation)
    eq("UserAdd (timedelta duration, aware start) status", sub_status(active), ("Closed", "Provisioned"))
    eq("UserAdd schedule duration comes back as 2 hours", active.schedule.duration, datetime.timedelta(hours=2))
    check(
        "UserAdd statusDetails lists evaluated rules",
        any(kv.key == "MfaRule" for kv in (active.status.status_details or [])),
        f"got {active.status.status_details!r}",
    )
    fetched = await alice.role_assignment_requests.by_governance_role_assignment_request_id(active.id).get()
    eq("role_assignment_requests.by_id.get: status", sub_status(fetched), ("Closed", "Provisioned"))

    await expect_odata_error(
        "UserAdd of an already active role raises ODataError 400 RoleAssignmentExists",
        alice.role_assignment_requests.post(activation),
        400,
        "RoleAssignmentExists",
    )

    # --- role assignments filtered by subjectId -----------------------------------------
    assignments = await alice.role_assignments.get(
        query(
            RoleAssignmentsRequestBuilder,
            filter=f"subjectId eq '{alice_id}'",
            expand=["roleDefinition"],
        )
    )
    seen = {
        (a.role_definition_id, a.assignment_state) for a in assignments.value or [] if a.subject_id == alice_id
    }
    check(
        "role_assignments.get $filter=subjectId: eligible Contributor, active Contributor, eligible Owner",
        {
            (fx["contributor_id"], "Eligible"),
            (fx["contributor_id"], "Active"),
            (fx["owner_id"], "Eligible"),
        }
        <= seen,
        f"got {sorted(seen)}",
    )
    check(
        "role_assignments.get: every item is Alice's",
        all(a.subject_id == alice_id for a in assignments.value or []),
        f"got {[a.subject_id for a in assignments.value or []]}",
    )
    active_row = next(
        a for a in assignments.value if a.role_definition_id == fx["contributor_id"] and a.assignment_state == "Active"
    )
    eq("active assignment links its eligible one", active_row.linked_eligible_role_assignment_id, fx["eligible_contributor_id"])
    eq(
        "$expand=roleDefinition is deserialised",
        active_row.role_definition.display_name if active_row.role_definition else None,
        "Contributor",
    )

    # --- export (JSON `Collection(Edm.String)`, graph-pim-v2.md §6.12) --------------------
    exported = await admin.role_assignments.export.get(
        query(ExportRequestBuilder, filter=f"resourceId eq '{rid}'")
    )
    lines = exported.value or []
    eq("role_assignments.export.get: first line is the CSV header", lines[0] if lines else None, EXPORT_HEADER)
    check(
        "role_assignments.export.get: one row per assignment of Alice's (3+)",
        sum(1 for l in lines[1:] if fx["alice_name"] in l) >= 3,
        f"got {lines!r}",
    )
    scoped = await admin.resources.by_governance_resource_id(rid).role_assignments.export.get()
    eq("resources.by_id.role_assignments.export.get: header", (scoped.value or [None])[0], EXPORT_HEADER)

    # --- cancel: a UserAdd pending approval, canceled by Alice -------------------------
    owner_assignments = await alice.role_assignments.get(
        query(
            RoleAssignmentsRequestBuilder,
            filter=f"subjectId eq '{alice_id}' and roleDefinitionId eq '{fx['owner_id']}' and assignmentState eq 'Eligible'",
        )
    )
    eq("role_assignments.get: Alice's eligible Owner assignment", len(owner_assignments.value or []), 1)
    owner_eligible_id = owner_assignments.value[0].id

    def owner_activation(reason):
        return GovernanceRoleAssignmentRequest(
            resource_id=rid,
            role_definition_id=fx["owner_id"],
            subject_id=alice_id,
            assignment_state="Active",
            type="UserAdd",
            reason=reason,
            linked_eligible_role_assignment_id=owner_eligible_id,
            schedule=GovernanceSchedule(type="Once", start_date_time=now(), duration=datetime.timedelta(hours=1)),
        )

    pending = await alice.role_assignment_requests.post(owner_activation("SDK check: to be canceled"))
    eq("UserAdd under an ApprovalRule status", sub_status(pending), ("InProgress", "PendingApproval"))
    await alice.role_assignment_requests.by_governance_role_assignment_request_id(pending.id).cancel.post()
    ok("role_assignment_requests.by_id.cancel.post")
    canceled = await alice.role_assignment_requests.by_governance_role_assignment_request_id(pending.id).get()
    eq("canceled request read back", sub_status(canceled), ("Closed", "Canceled"))
    await expect_odata_error(
        "cancel.post of a closed request raises ODataError",
        alice.role_assignment_requests.by_governance_role_assignment_request_id(pending.id).cancel.post(),
        400,
        "RequestCannotBeCancelled",
    )

    # --- updateRequest: Bob approves Alice's Owner activation --------------------------
    pending = await alice.role_assignment_requests.post(owner_activation("SDK check: needs approval"))
    eq("second UserAdd under an ApprovalRule status", sub_status(pending), ("InProgress", "PendingApproval"))
    # Bob learns the id out of band (the approver notification): an approver without R1 on
    # the resource does not see the request in lists.
    waiting = await admin.role_assignment_requests.get(
        query(RoleAssignmentRequestsRequestBuilder, filter="status/subStatus eq 'PendingApproval'")
    )
    check(
        "the administrator lists it with $filter=status/subStatus eq 'PendingApproval'",
        pending.id in {r.id for r in waiting.value or []},
        f"got {[r.id for r in waiting.value or []]}",
    )
    decision = UpdateRequestPostRequestBody(
        assignment_state="Active",
        decision="AdminApproved",
        reason="SDK check: approved",
        schedule=GovernanceSchedule(type="Once"),
    )
    await expect_odata_error(
        "Alice approving her own request raises ODataError 403 Authorization_RequestDenied",
        alice.role_assignment_requests.by_governance_role_assignment_request_id(pending.id).update_request.post(
            decision
        ),
        403,
        "Authorization_RequestDenied",
    )
    approved = await bob.role_assignment_requests.by_governance_role_assignment_request_id(
        pending.id
    ).update_request.post(decision)
    check("update_request.post returns the request", approved is not None and approved.id == pending.id, f"got {approved!r}")
    eq("approved request status", sub_status(approved), ("Closed", "Provisioned"))
    check(
        "approved request statusDetails grants ApprovalRule",
        any(kv.key == "ApprovalRule" for kv in (approved.status.status_details or [])),
        f"got {approved.status.status_details!r}",
    )
    await expect_odata_error(
        "update_request.post on a decided request raises ODataError 400 RequestCannotBeUpdated",
        bob.role_assignment_requests.by_governance_role_assignment_request_id(pending.id).update_request.post(
            decision
        ),
        400,
        "RequestCannotBeUpdated",
    )
    owner_active = await alice.role_assignments.get(
        query(
            RoleAssignmentsRequestBuilder,
            filter=f"subjectId eq '{alice_id}' and roleDefinitionId eq '{fx['owner_id']}' and assignmentState eq 'Active'",
        )
    )
    eq("Alice's Owner activation exists after approval", len(owner_active.value or []), 1)

    # --- updateRequest by the administrator: UserExtend -> PendingAdminDecision ----------
    extend = await alice.role_assignment_requests.post(
        GovernanceRoleAssignmentRequest(
            resource_id=rid,
            role_definition_id=fx["owner_id"],
            subject_id=alice_id,
            assignment_state="Eligible",
            type="UserExtend",
            reason="SDK check: extend my eligibility",
            schedule=GovernanceSchedule(type="Once", duration=datetime.timedelta(days=30)),
        )
    )
    eq("UserExtend (duration '30 days, 0:00:00') status", sub_status(extend), ("InProgress", "PendingAdminDecision"))
    extended = await admin.role_assignment_requests.by_governance_role_assignment_request_id(
        extend.id
    ).update_request.post(
        UpdateRequestPostRequestBody(
            assignment_state="Eligible",
            decision="AdminApproved",
            reason="SDK check: extension approved",
            schedule=GovernanceSchedule(type="Once"),
        )
    )
    eq("administrator's update_request.post on UserExtend: status", sub_status(extended), ("Closed", "Provisioned"))
    row = await alice.role_assignments.by_governance_role_assignment_id(owner_eligible_id).get()
    check(
        "the eligible Owner assignment now ends 30 days after its start",
        row.end_date_time - row.start_date_time == datetime.timedelta(days=30),
        f"got {row.start_date_time} .. {row.end_date_time}",
    )

    # --- UserRemove: Alice deactivates Contributor -------------------------------------
    removed = await alice.role_assignment_requests.post(
        GovernanceRoleAssignmentRequest(
            resource_id=rid,
            role_definition_id=fx["contributor_id"],
            subject_id=alice_id,
            assignment_state="Active",
            type="UserRemove",
        )
    )
    eq("UserRemove (no schedule) status", sub_status(removed), ("Closed", "Revoked"))

    # --- authorization errors come back as ODataError too ------------------------------
    await expect_odata_error(
        "Bob (no rights) creating an AdminAdd raises ODataError 403 Authorization_RequestDenied",
        bob.role_assignment_requests.post(
            GovernanceRoleAssignmentRequest(
                resource_id=rid,
                role_definition_id=fx["owner_id"],
                subject_id=bob_id,
                assignment_state="Active",
                type="AdminAdd",
                reason="no",
                schedule=GovernanceSchedule(type="Once", duration=datetime.timedelta(hours=1)),
            )
        ),
        403,
        "Authorization_RequestDenied",
    )


def load_fixture(arg):
    text = arg.strip()
    if not text.startswith("{"):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    fx = json.loads(text)
    missing = [k for k in FIXTURE_KEYS if not fx.get(k)]
    if missing:
        raise CheckFailed(f"fixture lacks {', '.join(missing)}")
    return fx


def main(argv):
    origin = argv[1] if len(argv) > 1 else os.environ.get("ROLEGATE_ORIGIN")
    fixture = argv[2] if len(argv) > 2 else os.environ.get("ROLEGATE_SDK_FIXTURE")
    if not origin or not fixture:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        asyncio.run(run(origin, load_fixture(fixture)))
    except CheckFailed as e:
        print(f"FAIL {e}", flush=True)
        return 1
    except ODataError as e:
        err = e.error
        print(
            f"FAIL unexpected ODataError {e.response_status_code} "
            f"{err.code if err else ''}: {err.message if err else e}",
            flush=True,
        )
        return 1
    except Exception as e:  # noqa: BLE001 - any SDK exception is a compatibility failure
        import traceback

        traceback.print_exc()
        print(f"FAIL unexpected {type(e).__name__}: {e}", flush=True)
        return 1
    print("graph_sdk_check: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
