//! Change notifications (decisions.md §12): subscriptions to changes of role assignment
//! requests and role assignments, who may hold them and where they may point (the SSRF
//! rules). Managing subscriptions and writing the outbox rows in the same transaction as
//! each change are operations ([`crate::operation::subscription`], [`crate::operation::apply`]).
//!
//! The I/O (resolving hosts, the validation handshake, deliveries) lives outside `core`;
//! the rules it applies are here.

use crate::access::AccessView;
use crate::access::OpContext;
use crate::error::{DomainError, ErrorCode, Result};
use jiff::{SignedDuration, Timestamp};
use std::net::IpAddr;
use std::time::Duration;

/// The longest a subscription may run before it must be renewed.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How long the receiver has to answer the validation handshake.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long deliveries are retried before they are given up.
pub const RETRY_WINDOW: SignedDuration = SignedDuration::from_hours(4);
/// The first retry's delay (decisions.md §13: within 10 s); each further one doubles.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(5);

/// What a subscription watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// Role assignment requests.
    Request,
    /// Role assignments.
    Assignment,
}

impl Entity {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Request => "request",
            Entity::Assignment => "assignment",
        }
    }

    /// The stored name back.
    pub fn parse(s: &str) -> Option<Entity> {
        match s {
            "request" => Some(Entity::Request),
            "assignment" => Some(Entity::Assignment),
            _ => None,
        }
    }

    /// The collection under `privilegedAccess/azureResources/`.
    pub fn collection(self) -> &'static str {
        match self {
            Entity::Request => "roleAssignmentRequests",
            Entity::Assignment => "roleAssignments",
        }
    }
}

/// What happened to the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    /// It was created.
    Created,
    /// It changed.
    Updated,
    /// It was removed (an assignment that ended).
    Deleted,
}

impl ChangeType {
    /// The Graph name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Created => "created",
            ChangeType::Updated => "updated",
            ChangeType::Deleted => "deleted",
        }
    }

    /// The Graph name back.
    pub fn parse(s: &str) -> Option<ChangeType> {
        match s.trim() {
            "created" => Some(ChangeType::Created),
            "updated" => Some(ChangeType::Updated),
            "deleted" => Some(ChangeType::Deleted),
            _ => None,
        }
    }
}

/// A change-notification subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// GUID.
    pub id: String,
    /// The `resource` as given (`privilegedAccess/azureResources/roleAssignments…`).
    pub resource: String,
    /// What it watches.
    pub entity: Entity,
    /// Only changes on this resource (or below it), when set.
    pub resource_id: Option<String>,
    /// The changes it wants.
    pub change_types: Vec<ChangeType>,
    /// Where deliveries go.
    pub notification_url: String,
    /// Echoed in each notification; also the key of its signature.
    pub client_state: String,
    /// When it stops.
    pub expires_at: Timestamp,
    /// Who created it.
    pub creator_id: String,
    /// When.
    pub created_at: Timestamp,
}

impl Subscription {
    /// `changeType` as Graph writes it (`created,updated`).
    pub fn change_type_list(&self) -> String {
        self.change_types
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A subscription as asked for, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
    /// `changeType`.
    pub change_type: String,
    /// `notificationUrl`.
    pub notification_url: String,
    /// `resource`.
    pub resource: String,
    /// `expirationDateTime`.
    pub expires_at: Option<Timestamp>,
    /// `clientState`.
    pub client_state: Option<String>,
}

/// A `400 InvalidRequest`.
pub fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::new(ErrorCode::InvalidRequest, message)
}

/// Parses `changeType`: a comma-separated, non-empty subset of `created,updated,deleted`.
pub fn parse_change_types(s: &str) -> Result<Vec<ChangeType>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let c = ChangeType::parse(part).ok_or_else(|| {
            invalid(format!(
                "`changeType` `{}` is not one of created, updated, deleted",
                part.trim()
            ))
        })?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses `resource`: the request or assignment collection, optionally with
/// `?$filter=resourceId eq '…'`.
pub fn parse_resource(s: &str) -> Result<(Entity, Option<String>)> {
    let s = s.trim().trim_start_matches('/');
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    let entity = match path {
        "privilegedAccess/azureResources/roleAssignmentRequests" => Entity::Request,
        "privilegedAccess/azureResources/roleAssignments" => Entity::Assignment,
        _ => {
            return Err(invalid(format!(
                "`resource` `{path}` is not privilegedAccess/azureResources/roleAssignmentRequests or …/roleAssignments"
            )));
        }
    };
    let Some(query) = query else {
        return Ok((entity, None));
    };
    let bad = || {
        invalid("the only filter a subscription takes is `$filter=resourceId eq '<resource id>'`")
    };
    let filter = query.strip_prefix("$filter=").ok_or_else(bad)?;
    let filter = filter.replace("%20", " ").replace('+', " ");
    let mut words = filter.split_whitespace();
    let (Some("resourceId"), Some("eq"), Some(value), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(bad());
    };
    let id = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .filter(|v| !v.is_empty() && !v.contains('\''))
        .ok_or_else(bad)?;
    Ok((entity, Some(id.to_string())))
}

/// Checks `expirationDateTime`: after `now`, at most [`MAX_LIFETIME`] ahead.
pub fn check_expiration(at: Timestamp, now: Timestamp) -> Result<()> {
    if at <= now {
        return Err(invalid("`expirationDateTime` must be in the future"));
    }
    if at > now.saturating_add(MAX_LIFETIME).unwrap_or(now) {
        return Err(invalid(
            "`expirationDateTime` may be at most 30 days (43200 minutes) ahead",
        ));
    }
    Ok(())
}

/// Who may hold a subscription to `resource_id` (`None`: everything): tenant
/// administrators, and R3 holders only with a filter naming a resource they administer.
pub fn authorize(ctx: &OpContext, resource_id: Option<&str>) -> Result<()> {
    if ctx.caller.is_tenant_admin {
        return Ok(());
    }
    match resource_id {
        Some(r) if ctx.caller.may_administer(ctx.access, r, ctx.now) => Ok(()),
        Some(_) => Err(DomainError::denied(
            "subscribing to a resource's changes needs an active Owner or User Access Administrator assignment on it",
        )),
        None => Err(DomainError::denied(
            "only tenant administrators may subscribe to all changes; filter by `resourceId`",
        )),
    }
}

/// Whether `s` may still deliver: its creator must still be a tenant administrator
/// (`creator_is_admin`) or, for a subscription filtered to a resource, still administer that
/// resource (R3). Rights lost after subscribing stop the deliveries.
pub fn creator_still_entitled(
    s: &Subscription,
    creator_is_admin: bool,
    access: &dyn AccessView,
    now: Timestamp,
) -> bool {
    creator_is_admin
        || s.resource_id
            .as_deref()
            .is_some_and(|r| access.administers(&s.creator_id, r, now))
}

/// Whether the caller may see, renew or delete `s`: tenant administrators, its creator, and
/// R3 holders on its resource.
pub fn may_manage(ctx: &OpContext, s: &Subscription) -> bool {
    ctx.caller.is_tenant_admin
        || s.creator_id == ctx.caller.subject_id
        || s.resource_id
            .as_deref()
            .is_some_and(|r| ctx.caller.may_administer(ctx.access, r, ctx.now))
}

/// Where webhooks may point (decisions.md §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Hosts that may be reached over plain `http` (lower-case; default loopback).
    pub allow_http_hosts: Vec<String>,
    /// Hosts that may resolve to private, loopback or link-local addresses (default
    /// loopback names).
    pub allow_private_hosts: Vec<String>,
}

/// The loopback host names.
pub const LOOPBACK_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "::1", "[::1]"];

impl Default for TargetPolicy {
    fn default() -> Self {
        let loopback: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        Self {
            allow_http_hosts: loopback.clone(),
            allow_private_hosts: loopback,
        }
    }
}

fn host_listed(list: &[String], host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    list.iter().any(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(host)
    })
}

/// The shortest `clientState` accepted (it is the deliveries' HMAC key).
pub const MIN_CLIENT_STATE: usize = 12;

/// Whether `ip` is not a public unicast address: loopback, private (10/8, 172.16/12,
/// 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), shared (100.64/10),
/// unspecified, multicast, broadcast, documentation or reserved ranges, and IPv4 mapped
/// into IPv6 by the same rules.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let first = seg[0];
            // IPv4 wrapped in IPv6: NAT64 (64:ff9b::/96), 6to4 (2002::/16) and the old
            // IPv4-compatible form (::a.b.c.d) reach the embedded address.
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            if first == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                return is_private(embedded(seg[6], seg[7]));
            }
            if first == 0x2002 {
                return is_private(embedded(seg[1], seg[2]));
            }
            if seg[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_private(embedded(seg[6], seg[7]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && v6.segments()[1] == 0xdb8
        }
    }
}

impl TargetPolicy {
    /// Checks the scheme alone (before resolving the host): `https`, or `http` to a host
    /// of `allow_http_hosts`.
    pub fn check_scheme(&self, scheme: &str, host: &str) -> Result<()> {
        match scheme {
            "https" => {}
            "http" if host_listed(&self.allow_http_hosts, host) => {}
            "http" => {
                return Err(invalid(format!(
                    "`notificationUrl` must use https (plain http is allowed only for the hosts of --webhook-allow-http-hosts, not `{host}`)"
                )));
            }
            _ => return Err(invalid("`notificationUrl` must be an https URL")),
        }
        Ok(())
    }

    /// Checks a webhook target: `scheme` must be `https` unless `host` may use `http`, and
    /// every address `host` resolves to must be public unless `host` is allowed private
    /// targets. Refusals are `400 InvalidRequest` naming the reason.
    pub fn check(&self, scheme: &str, host: &str, addrs: &[IpAddr]) -> Result<()> {
        self.check_scheme(scheme, host)?;
        if addrs.is_empty() {
            return Err(invalid(format!(
                "`notificationUrl` host `{host}` does not resolve"
            )));
        }
        if !host_listed(&self.allow_private_hosts, host)
            && let Some(ip) = addrs.iter().find(|ip| is_private(**ip))
        {
            return Err(invalid(format!(
                "`notificationUrl` host `{host}` resolves to the non-public address {ip}, which needs --webhook-allow-private-hosts"
            )));
        }
        Ok(())
    }
}

/// The delay before retry number `attempt` (1 = the first retry) with first delay `base`:
/// `base`, then doubling; `None` once a delivery first due at `first_due` would be tried
/// after [`RETRY_WINDOW`].
pub fn retry_at(
    first_due: Timestamp,
    now: Timestamp,
    attempt: u32,
    base: Duration,
) -> Option<Timestamp> {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(30))?;
    let delay = base.checked_mul(factor)?;
    let at = now
        .checked_add(SignedDuration::try_from(delay).ok()?)
        .ok()?;
    let deadline = first_due.checked_add(RETRY_WINDOW).ok()?;
    (at <= deadline).then_some(at)
}

/// Validates a new subscription and checks who asks (no I/O: the caller validated the
/// endpoint). Returns it ready to [`crate::operation::subscription::create`].
pub fn prepare(ctx: &OpContext, new: &NewSubscription) -> Result<Subscription> {
    let change_types = parse_change_types(&new.change_type)?;
    let (entity, resource_id) = parse_resource(&new.resource)?;
    let expires_at = new
        .expires_at
        .ok_or_else(|| invalid("`expirationDateTime` is required"))?;
    check_expiration(expires_at, ctx.now)?;
    if new.notification_url.trim().is_empty() {
        return Err(invalid("`notificationUrl` is required"));
    }
    let client_state = new.client_state.clone().unwrap_or_default();
    // `clientState` keys the HMAC of every delivery: a short or empty one would let anyone
    // sign forged notifications.
    if client_state.chars().count() < MIN_CLIENT_STATE {
        return Err(invalid(format!(
            "`clientState` is the key deliveries are signed with: give at least {MIN_CLIENT_STATE} characters"
        )));
    }
    if client_state.len() > 255 {
        return Err(invalid("`clientState` may be at most 255 characters"));
    }
    authorize(ctx, resource_id.as_deref())?;
    Ok(Subscription {
        id: (ctx.new_id)(),
        resource: new.resource.trim().trim_start_matches('/').to_string(),
        entity,
        resource_id,
        change_types,
        notification_url: new.notification_url.trim().to_string(),
        client_state,
        expires_at,
        creator_id: ctx.caller.subject_id.clone(),
        created_at: ctx.now,
    })
}

/// One notification to deliver, claimed by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The notification's id.
    pub id: String,
    /// Its subscription.
    pub subscription: Subscription,
    /// What changed.
    pub entity: Entity,
    /// The changed entity's id.
    pub entity_id: String,
    /// How.
    pub change: ChangeType,
    /// When it was first due (the change's time).
    pub first_due: Timestamp,
    /// Delivery attempts so far.
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv4_wrapped_in_ipv6_is_judged_by_the_ipv4_address() {
        let private = [
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "::10.0.0.1",
            "fec0::1",
            "::ffff:169.254.169.254",
        ];
        for ip in private {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    use super::*;

    #[test]
    fn resources_and_filters_parse() -> Result<()> {
        assert_eq!(
            parse_resource("privilegedAccess/azureResources/roleAssignments")?,
            (Entity::Assignment, None)
        );
        assert_eq!(
            parse_resource(
                "/privilegedAccess/azureResources/roleAssignmentRequests?$filter=resourceId eq 'abc'"
            )?,
            (Entity::Request, Some("abc".into()))
        );
        for bad in [
            "privilegedAccess/azureResources/resources",
            "privilegedAccess/azureResources/roleAssignments?$filter=subjectId eq 'x'",
            "privilegedAccess/azureResources/roleAssignments?$filter=resourceId eq ''",
            "privilegedAccess/azureResources/roleAssignments?$top=1",
        ] {
            assert!(parse_resource(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_change_types("created, updated,created")?,
            vec![ChangeType::Created, ChangeType::Updated]
        );
        assert!(parse_change_types("created,moved").is_err());
        assert!(parse_change_types("").is_err());
        Ok(())
    }

    #[test]
    fn targets_must_be_https_and_public_unless_allowed() {
        let p = TargetPolicy::default();
        let public: IpAddr = [93, 184, 216, 34].into();
        let loopback: IpAddr = [127, 0, 0, 1].into();
        assert!(p.check("https", "example.com", &[public]).is_ok());
        assert!(p.check("http", "example.com", &[public]).is_err());
        assert!(p.check("http", "127.0.0.1", &[loopback]).is_ok());
        assert!(p.check("ftp", "example.com", &[public]).is_err());
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            let ip: IpAddr = private.parse().unwrap_or(loopback);
            assert!(is_private(ip), "{private}");
            assert!(
                p.check("https", "evil.example", &[public, ip]).is_err(),
                "{private}"
            );
        }
        assert!(!is_private(public));
        assert!(p.check("https", "example.com", &[]).is_err());
    }

    #[test]
    fn retries_start_soon_double_and_stop_after_four_hours() {
        let t0 = Timestamp::UNIX_EPOCH;
        let base = DEFAULT_RETRY_BASE;
        assert_eq!(
            retry_at(t0, t0, 1, base),
            Some(t0 + SignedDuration::from_secs(5))
        );
        assert_eq!(
            retry_at(t0, t0, 3, base),
            Some(t0 + SignedDuration::from_secs(20))
        );
        let late = t0 + SignedDuration::from_hours(3);
        assert_eq!(retry_at(t0, late, 20, base), None);
        let mut n = 1;
        while retry_at(t0, t0, n, base).is_some() {
            n += 1;
        }
        assert!((10..15).contains(&n), "{n}");
    }

    #[test]
    fn expirations_are_bounded() {
        let now = Timestamp::UNIX_EPOCH;
        assert!(check_expiration(now + SignedDuration::from_hours(24), now).is_ok());
        assert!(check_expiration(now, now).is_err());
        assert!(check_expiration(now + SignedDuration::from_hours(31 * 24), now).is_err());
    }
}
