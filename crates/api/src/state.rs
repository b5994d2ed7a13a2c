//! Shared server state: the store, the access index, the clock and the authenticator, and
//! the two ways handlers reach the store — a read transaction, or a write committed with
//! the writes that arrive with it ([`crate::group_commit`]), whose changes are applied to
//! the access index before the response is sent (so a revocation is enforced by the time
//! it is acknowledged).

use crate::auth::Authenticator;
use crate::error::ApiError;
use rolegate_core::access::{AccessChange, AccessIndex, AccessView, Caller, OpContext};
use rolegate_core::assignment::HeldBy;
use rolegate_core::clock::Clock;
use rolegate_core::entity_cache::EntityCache;
use rolegate_core::error::{DomainError, Result};
use rolegate_core::held_assignments::{
    CacheTicket, HeldAssignmentCache, HeldKey, HeldList, lists_by_key,
};
use rolegate_core::store::{self, ReadTx, Store, Tx};
use std::sync::{Arc, Mutex, RwLock};

/// Everything the handlers share.
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Effective access, patched on every commit.
    pub access: RwLock<AccessIndex>,
    /// Subjects, resources and role definitions in memory, patched with the index (lock
    /// order: the index first).
    entities: RwLock<EntityCache>,
    /// Recently listed subjects' assignments, dropped by the same changes that patch the
    /// index (lock order: after the entities).
    held: Mutex<HeldAssignmentCache>,
    /// With a shared store: how far the index has caught up with the access log, and when
    /// it last did.
    access_log: Mutex<AccessLogPosition>,
    /// Serialises write transactions with their index updates.
    write_order: Mutex<()>,
    /// With a shared store: the catch-ups authenticated requests share
    /// ([`crate::catch_up_turns`]).
    catch_ups: Arc<crate::catch_up_turns::CatchUpTurns>,
    /// Read transactions that may run at once ([`Store::concurrent_reads`]); the others
    /// wait here, first come first served.
    read_slots: tokio::sync::Semaphore,
    /// Handlers' writes waiting for their batch (group commit).
    pub(crate) writes: crate::group_commit::WriteQueue,
    /// System writes waiting for the write lock: a busy group commit drain lets them go
    /// first (the lock is not fair, and a drain takes it back microseconds after letting
    /// go, batch after batch, which could hold back the scheduler's expiries).
    system_writes_waiting: std::sync::atomic::AtomicUsize,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Token verification and tenant administrators.
    pub auth: Authenticator,
    /// The provisioning secret accepted on `/scim` (`--scim-token-file`), if any.
    pub scim_token: Option<crate::scim::ProvisioningToken>,
    /// Where change-notification webhooks may point (decisions.md §12).
    pub webhooks: rolegate_core::notification::TargetPolicy,
    /// E-mail notifications, when on (decisions.md §12).
    pub mail: Option<rolegate_core::email::MailPolicy>,
    /// Rate limits per client address and per token subject (none by default).
    pub rate_limits: crate::limits::RateLimits,
    /// How long a request may take before it is answered `503 ServiceUnavailable`.
    pub request_timeout: std::time::Duration,
    /// What `/.well-known/rolegate-configuration` tells clients.
    pub discovery: crate::discovery::ClientDiscovery,
    /// Enforcement points that may ask AuthZEN questions about anyone (`--authzen-client`),
    /// lower case.
    pub authzen_clients: Vec<String>,
    /// The URL clients reach this server at (`--public-url`, else the listening address).
    pub public_url: String,
    /// Signalled after every committed write, so the connectors' planner (connectors.md
    /// §6.1) looks at the new state at once.
    pub committed: tokio::sync::Notify,
    /// The running provisioning connectors, once started (`--connectors`).
    pub connectors: std::sync::OnceLock<Arc<dyn crate::connectors::ConnectorOperator>>,
}

/// The default of [`AppState::request_timeout`] (`--request-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The access index behind its lock, as an [`AccessView`] that locks per call.
struct LockedIndex<'a>(&'a RwLock<AccessIndex>);

impl AccessView for LockedIndex<'_> {
    fn holds_any(&self, s: &str, r: &str, now: jiff::Timestamp) -> bool {
        self.0.read().is_ok_and(|ix| ix.holds_any(s, r, now))
    }
    fn administers(&self, s: &str, r: &str, now: jiff::Timestamp) -> bool {
        self.0.read().is_ok_and(|ix| ix.administers(s, r, now))
    }
    fn groups_of(&self, s: &str) -> Vec<String> {
        self.0.read().map(|ix| ix.groups_of(s)).unwrap_or_default()
    }
    fn ancestors_or_self(&self, r: &str) -> Vec<String> {
        self.0
            .read()
            .map(|ix| ix.ancestors_or_self(r))
            .unwrap_or_default()
    }
    fn anchors(&self, s: &str, now: jiff::Timestamp) -> Vec<String> {
        self.0
            .read()
            .map(|ix| ix.anchors(s, now, false))
            .unwrap_or_default()
    }
}

/// Where an index stands in the access log of a shared store.
#[derive(Debug, Clone, Copy)]
struct AccessLogPosition {
    /// The newest entry applied.
    seq: i64,
    /// When the index last caught up.
    at: jiff::Timestamp,
}

/// Entries of the access log are kept this long; a node that has not caught up for half
/// of it rebuilds its index instead (it may have missed pruned entries).
const ACCESS_LOG_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

impl AppState {
    /// State over `store`, with the access index built from it.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, auth: Authenticator) -> Result<Self> {
        let now = clock.now();
        let (index, entities, seq) = store::read(store.as_ref(), |tx| {
            let mut ix = AccessIndex::new();
            let seq = fill_index(tx, &mut ix, now)?;
            Ok((ix, load_entities(tx)?, seq))
        })?;
        let read_slots = store
            .concurrent_reads()
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Ok(Self {
            store,
            access: RwLock::new(index),
            entities: RwLock::new(entities),
            held: Mutex::new(HeldAssignmentCache::default()),
            access_log: Mutex::new(AccessLogPosition { seq, at: now }),
            write_order: Mutex::new(()),
            catch_ups: Arc::default(),
            read_slots: tokio::sync::Semaphore::new(read_slots),
            writes: crate::group_commit::WriteQueue::default(),
            system_writes_waiting: std::sync::atomic::AtomicUsize::new(0),
            clock,
            auth,
            scim_token: None,
            webhooks: rolegate_core::notification::TargetPolicy::default(),
            mail: None,
            rate_limits: crate::limits::RateLimits::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            discovery: crate::discovery::ClientDiscovery::default(),
            authzen_clients: Vec::new(),
            public_url: "http://localhost".to_string(),
            committed: tokio::sync::Notify::new(),
            connectors: std::sync::OnceLock::new(),
        })
    }

    /// The same state, also accepting `token` (when given) on `/scim` routes.
    pub fn with_scim_token(mut self, token: Option<crate::scim::ProvisioningToken>) -> Self {
        self.scim_token = token;
        self
    }

    /// The same state with webhook targets checked by `policy`.
    pub fn with_webhook_policy(
        mut self,
        policy: rolegate_core::notification::TargetPolicy,
    ) -> Self {
        self.webhooks = policy;
        self
    }

    /// The same state, writing e-mail notifications to the outbox when `mail` is given.
    pub fn with_mail(mut self, mail: Option<rolegate_core::email::MailPolicy>) -> Self {
        self.mail = mail;
        self
    }

    /// The same state with these rate limits.
    pub fn with_rate_limits(mut self, limits: crate::limits::RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// The same state answering `503` to requests that take longer than `timeout`.
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same state telling clients how to sign in with `discovery`.
    pub fn with_discovery(mut self, discovery: crate::discovery::ClientDiscovery) -> Self {
        self.discovery = discovery;
        self
    }

    /// The same state letting the enforcement points `clients` (token subjects or directory
    /// ids) ask AuthZEN questions about anyone.
    pub fn with_authzen_clients(mut self, clients: &[String]) -> Self {
        self.authzen_clients = clients
            .iter()
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        self
    }

    /// The same state published at `url` (the AuthZEN metadata's base).
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.public_url = url.trim().trim_end_matches('/').to_string();
        self
    }

    /// Whether a token subject (or the directory object it resolves to) is a listed
    /// enforcement point (authzen.md §9).
    pub fn is_authzen_client(&self, token_subject: &str, directory_id: Option<&str>) -> bool {
        let listed = |id: &str| {
            self.authzen_clients
                .iter()
                .any(|c| c.eq_ignore_ascii_case(id))
        };
        listed(token_subject) || directory_id.is_some_and(listed)
    }

    /// Effective access as a view that locks per call.
    pub fn access_view(&self) -> impl AccessView + '_ {
        LockedIndex(&self.access)
    }

    /// The cached entities, for reading.
    pub fn entities(&self) -> Result<std::sync::RwLockReadGuard<'_, EntityCache>> {
        self.entities
            .read()
            .map_err(|_| DomainError::internal("entity cache lock poisoned"))
    }

    /// Where a read transaction looks related entities up: through the cache.
    pub fn lookup(&self) -> crate::render::Lookup<'_> {
        crate::render::Lookup::cached(&self.entities)
    }

    /// Where the held-assignment cache stands: take it before a read transaction that
    /// may load lists ([`AppState::held_lists`]).
    pub fn held_ticket(&self) -> Result<CacheTicket> {
        Ok(self.held_cache()?.ticket())
    }

    /// The held lists of all of `keys`, if the cache has every one (no transaction).
    pub fn held_lists_in_memory(&self, keys: &[HeldKey]) -> Result<Option<Vec<HeldList>>> {
        Ok(self.held_cache()?.get_all(keys))
    }

    /// The held lists of `keys`: the cache's, the others loaded in `tx` (begun after
    /// `ticket` was taken) and offered to the cache.
    pub fn held_lists(
        &self,
        ticket: CacheTicket,
        tx: &mut dyn ReadTx,
        keys: &[HeldKey],
    ) -> Result<Vec<HeldList>> {
        let mut found: Vec<Option<HeldList>> = {
            let mut held = self.held_cache()?;
            keys.iter().map(|k| held.get(k)).collect()
        };
        // One statement per kind of key missing, outside the lock.
        for by in [HeldBy::Subject, HeldBy::Resource] {
            let missing: Vec<String> = keys
                .iter()
                .zip(&found)
                .filter(|((b, _), f)| *b == by && f.is_none())
                .map(|((_, id), _)| id.clone())
                .collect();
            if missing.is_empty() {
                continue;
            }
            let loaded = lists_by_key(by, &missing, tx.held_assignments(by, &missing)?);
            let mut held = self.held_cache()?;
            for (key, list) in loaded {
                held.offer(ticket, &key, list.clone());
                if let Some(i) = keys.iter().position(|k| *k == key) {
                    found[i] = Some(list);
                }
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    fn held_cache(&self) -> Result<std::sync::MutexGuard<'_, HeldAssignmentCache>> {
        self.held
            .lock()
            .map_err(|_| DomainError::internal("held assignment cache lock poisoned"))
    }

    /// The cached entities, for patching.
    pub(crate) fn entities_mut(&self) -> Result<std::sync::RwLockWriteGuard<'_, EntityCache>> {
        self.entities
            .write()
            .map_err(|_| DomainError::internal("entity cache lock poisoned"))
    }

    /// The subject a token names (by id, else by external id), as of this node's index. On
    /// a store other nodes write, after catching up with their changes (one statement, no
    /// transaction, unless the index must be rebuilt; shared by the requests waiting for
    /// one at once), so every authenticated request starts caught up
    /// (docs/deployment.md); otherwise straight from memory (every change went through this
    /// process).
    pub async fn token_subject(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<Option<rolegate_core::directory::Subject>, ApiError> {
        if self.store.shared() {
            self.caught_up().await?;
        }
        Ok(self.subject(id)?)
    }

    /// The subject with this id (else external id) as of this node's index, without
    /// catching up first: for a request whose authentication did
    /// ([`AppState::token_subject`]).
    pub fn subject(&self, id: &str) -> Result<Option<rolegate_core::directory::Subject>> {
        Ok(self.entities()?.subject(id).cloned())
    }

    /// Returns once a catch-up with the access log that began after this call has
    /// finished: a turn shared with other requests ([`crate::catch_up_turns`]), else one
    /// of its own.
    async fn caught_up(self: &Arc<Self>) -> Result<(), ApiError> {
        use crate::catch_up_turns::Turn;
        let needed = self.catch_ups.needed();
        loop {
            match self.catch_ups.next(needed) {
                Turn::CaughtUp => return Ok(()),
                Turn::Alone => break,
                Turn::Wait(running) => running.finished().await,
                // Dropped unreported (an error, a rebuild needed, this request gone), the
                // turn sends those it served to catch up alone.
                Turn::Run(turn) => {
                    if self.on_reader(Self::catch_up_latest).await? {
                        turn.caught_up();
                        return Ok(());
                    }
                    // The index must be rebuilt: no second try of the statement.
                    return self.on_reader(Self::catch_up_in_snapshot).await;
                }
            }
        }
        self.on_reader(|state| {
            if state.catch_up_latest()? {
                Ok(())
            } else {
                state.catch_up_in_snapshot()
            }
        })
        .await
    }

    /// Catches up (or rebuilds the index) in a read transaction of its own.
    fn catch_up_in_snapshot(&self) -> Result<()> {
        store::read(self.store.as_ref(), |tx| self.catch_up(tx))
    }

    /// Catches up with the access log in one autocommit statement; false when the index
    /// must be rebuilt instead, in a snapshot ([`AppState::catch_up`]).
    fn catch_up_latest(&self) -> Result<bool> {
        store::read_latest(self.store.as_ref(), |tx| self.catch_up_with(tx, false))
    }

    /// Runs `f` in a read transaction on a blocking thread.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn ReadTx, &AppState) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.on_reader(move |state| {
            store::read(state.store.as_ref(), |tx| {
                state.catch_up(tx)?;
                f(tx, state)
            })
        })
        .await
    }

    /// Runs `f` on a blocking thread once a reader connection is free
    /// ([`Store::concurrent_reads`], waited for in arrival order).
    async fn on_reader<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&AppState) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _slot = self
            .read_slots
            .acquire()
            .await
            .map_err(|_| DomainError::internal("read slots closed"))?;
        let state = Arc::clone(self);
        blocking(move || f(&state)).await
    }

    /// With a store other nodes write too: applies the access-log entries this node has not
    /// seen to the index, so a decision here reflects every change committed anywhere
    /// before this transaction began. A node that fell too far behind rebuilds its index.
    /// Does nothing on a store of its own (every change went through this process).
    pub(crate) fn catch_up(&self, tx: &mut dyn ReadTx) -> Result<()> {
        self.catch_up_with(tx, true).map(|_| ())
    }

    /// [`AppState::catch_up`], where `snapshot` says whether `tx` reads one snapshot (a
    /// transaction). Without one it only applies log entries, one statement's worth at a
    /// time, and returns false when the index must instead be rebuilt from the tables,
    /// which takes a snapshot.
    fn catch_up_with(&self, tx: &mut dyn ReadTx, snapshot: bool) -> Result<bool> {
        if !self.store.shared() {
            return Ok(true);
        }
        let now = self.clock.now();
        let position = || {
            self.access_log
                .lock()
                .map_err(|_| DomainError::internal("access log position lock poisoned"))
        };
        let index = || {
            self.access
                .write()
                .map_err(|_| DomainError::internal("access index lock poisoned"))
        };
        // The database work runs outside the locks; applying takes them and skips what
        // another thread applied meanwhile, so entries are applied once and in order.
        let (mut after, last_at) = {
            let p = position()?;
            (p.seq, p.at)
        };
        // Everything rebuilt from the tables, which hold every change the log does.
        let rebuild = |tx: &mut dyn ReadTx| -> Result<()> {
            let mut fresh = AccessIndex::new();
            let seq = fill_index(tx, &mut fresh, now)?;
            let subjects = tx.all_subjects()?;
            let mut p = position()?;
            if seq >= p.seq {
                let mut ix = index()?;
                self.entities_mut()?.replace_subjects(subjects);
                self.held_cache()?.clear();
                *ix = fresh;
                *p = AccessLogPosition { seq, at: now };
            }
            Ok(())
        };
        if now.duration_since(last_at) > ACCESS_LOG_RETENTION / 2 {
            return if snapshot {
                rebuild(tx).map(|()| true)
            } else {
                Ok(false)
            };
        }
        loop {
            let entries = tx.access_changes_since(after, 1000)?;
            // A newer node (a rolling upgrade) wrote changes this version cannot read.
            if let Some(e) = entries.iter().find(|e| e.changes.is_none()) {
                if !snapshot {
                    return Ok(false);
                }
                tracing::warn!(
                    seq = e.seq,
                    "an access-log entry this version cannot read (written by a newer node?): rebuilding the access index from the tables"
                );
                return rebuild(tx).map(|()| true);
            }
            let mut p = position()?;
            if !entries.is_empty() {
                let mut ix = index()?;
                let mut entities = self.entities_mut()?;
                let mut held = self.held_cache()?;
                for (e, changes) in entries
                    .iter()
                    .filter_map(|e| e.changes.as_ref().map(|c| (e, c)))
                {
                    if e.seq > p.seq {
                        ix.apply(changes);
                        entities.apply(changes);
                        held.apply(changes);
                        p.seq = e.seq;
                    }
                }
            }
            p.at = now;
            match entries.last() {
                Some(last) if entries.len() == 1000 => after = last.seq,
                _ => return Ok(true),
            }
        }
    }

    /// Catches the index up with the access log in a read transaction of its own (the
    /// scheduler calls it, so an idle node never falls behind), and on a shared store
    /// prunes entries past their retention.
    pub fn refresh_access(&self) -> Result<()> {
        if !self.store.shared() {
            return Ok(());
        }
        self.catch_up_in_snapshot()?;
        let before = self.clock.now() - ACCESS_LOG_RETENTION;
        store::write(self.store.as_ref(), |tx| tx.prune_access_log(before))
    }

    /// Runs `f` in a write transaction, committed together with the writes other handlers
    /// submit meanwhile (group commit, [`crate::group_commit`]), then applies the access
    /// changes it returns to the index; answers once all that is done. A refused write (any
    /// 4xx but 409) is undone and leaves one `failure` audit record for `op`. `f` may run
    /// more than once (when the batch's earlier writes changed what it read from the
    /// index); only its last run is kept.
    pub async fn write<T, F>(
        self: &Arc<Self>,
        caller: Caller,
        correlation_id: String,
        op: Operation,
        f: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = crate::group_commit::Job {
            caller,
            correlation_id,
            op,
            f,
            value: None,
            reply,
        };
        if self.writes.push(Box::new(job)) {
            let state = Arc::clone(self);
            tokio::task::spawn_blocking(move || crate::group_commit::drain(&state));
        }
        match answer.await {
            Ok(r) => r.map_err(ApiError::from),
            Err(_) => {
                Err(DomainError::internal("the write was dropped before it was answered").into())
            }
        }
    }

    /// A system job's write (the background scheduler's): runs `f` as `caller` in a write
    /// transaction on the calling thread, in the same order as [`AppState::write`] (one
    /// write lock), and applies the access changes it returns to the index before releasing
    /// that lock, so the index never lags behind a committed change. A failure rolls back
    /// and is returned, not audited (there is no client to refuse). Blocks: call it from a
    /// blocking thread.
    pub fn write_as_system<T>(
        &self,
        caller: &Caller,
        correlation_id: &str,
        f: impl FnOnce(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)>,
    ) -> Result<T> {
        self.write_ordered(caller, correlation_id, true, f)
    }

    /// [`AppState::write_as_system`] without signalling [`AppState::committed`]: for the
    /// connectors' planner, whose own writes must not wake it again.
    pub fn write_unsignalled<T>(
        &self,
        caller: &Caller,
        correlation_id: &str,
        f: impl FnOnce(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)>,
    ) -> Result<T> {
        self.write_ordered(caller, correlation_id, false, f)
    }

    /// The write lock: held while a transaction commits and its changes reach the index.
    /// A panic under it before the commit leaves nothing written (the transaction rolled
    /// back while unwinding), so a poisoned lock is taken over; applying committed changes
    /// to the index does not fail.
    pub(crate) fn write_order(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The write lock for a batch of handlers' writes, once no system write waits for it.
    pub(crate) fn write_order_after_system_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        use std::sync::atomic::Ordering;
        // A waiting system write waits for nothing but the lock, which the drain does not
        // hold here, so it takes it within a few scheduling rounds; the bound only keeps a
        // surprise from stalling every write.
        for _ in 0..100_000 {
            if self.system_writes_waiting.load(Ordering::Acquire) == 0 {
                break;
            }
            std::thread::yield_now();
        }
        self.write_order()
    }

    /// A system write: under the write lock, commit `f`, then patch the index, then (with
    /// `signal`) wake whoever waits on [`AppState::committed`].
    fn write_ordered<T>(
        &self,
        caller: &Caller,
        correlation_id: &str,
        signal: bool,
        f: impl FnOnce(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)>,
    ) -> Result<T> {
        use std::sync::atomic::Ordering;
        self.system_writes_waiting.fetch_add(1, Ordering::AcqRel);
        let _order = self.write_order();
        self.system_writes_waiting.fetch_sub(1, Ordering::AcqRel);
        let new_id = crate::new_id;
        let view = self.access_view();
        let ctx = OpContext {
            caller,
            access: &view,
            now: self.clock.now(),
            correlation_id,
            new_id: &new_id,
            mail: self.mail.as_ref(),
        };
        let shared = self.store.shared();
        let (value, changes, seq) = store::write(self.store.as_ref(), |tx| {
            // On a shared store the transaction holds the cluster's write lock: catch up
            // first, so `f` decides on every change committed before it, then log its own.
            self.catch_up(tx)?;
            let (value, changes) = f(tx, &ctx)?;
            let seq = if shared && !changes.is_empty() {
                Some(tx.log_access_changes(&changes, ctx.now)?)
            } else {
                None
            };
            Ok((value, changes, seq))
        })?;
        self.apply_committed(std::iter::once((changes.as_slice(), seq)))?;
        if signal {
            self.committed.notify_one();
        }
        Ok(value)
    }

    /// Applies committed writes' access changes to the index, in commit order, each with
    /// its access-log position on a shared store. Call it under the write lock.
    pub(crate) fn apply_committed<'c>(
        &self,
        writes: impl IntoIterator<Item = (&'c [AccessChange], Option<i64>)>,
    ) -> Result<()> {
        let mut writes = writes.into_iter().filter(|(c, _)| !c.is_empty()).peekable();
        if writes.peek().is_none() {
            return Ok(());
        }
        let mut position = self
            .access_log
            .lock()
            .map_err(|_| DomainError::internal("access log position lock poisoned"))?;
        let mut index = self
            .access
            .write()
            .map_err(|_| DomainError::internal("access index lock poisoned"))?;
        let mut entities = self.entities_mut()?;
        let mut held = self.held_cache()?;
        for (changes, seq) in writes {
            // A read that caught up after this commit has applied these changes already
            // (with any later ones): apply them only when it has not.
            if seq.is_none_or(|seq| seq > position.seq) {
                index.apply(changes);
                entities.apply(changes);
                held.apply(changes);
                if let Some(seq) = seq {
                    position.seq = seq;
                }
            }
        }
        Ok(())
    }
}

/// What a write does, for the audit record of a refusal.
#[derive(Debug, Clone)]
pub struct Operation {
    category: &'static str,
    activity: &'static str,
    about: rolegate_core::audit::About,
}

impl Operation {
    /// An operation of audit `category` named `activity`.
    pub const fn new(category: &'static str, activity: &'static str) -> Self {
        Self {
            category,
            activity,
            about: rolegate_core::audit::About::NOTHING,
        }
    }

    /// Registering a resource.
    pub fn register_resource() -> Self {
        Self::new("ResourceManagement", "Register resource")
    }

    /// A PATCH of role setting `id`.
    pub fn update_role_setting(id: &str) -> Self {
        Self::new("Policy", "Update role setting").about(rolegate_core::audit::About::entity(
            "RoleSetting",
            id,
            "roleSettingId",
        ))
    }

    /// Submitting request `new`.
    pub fn create_request(new: &rolegate_core::request::NewRequest) -> Self {
        Self::new("RoleManagement", "Create role assignment request")
            .about(rolegate_core::audit::About::request(new))
    }

    /// Cancelling request `id`.
    pub fn cancel_request(id: &str) -> Self {
        Self::new("RoleManagement", "Cancel request").about(Self::request(id))
    }

    /// Deciding request `id`.
    pub fn decide_request(id: &str) -> Self {
        Self::new("RoleManagement", "Decide request").about(Self::request(id))
    }

    fn request(id: &str) -> rolegate_core::audit::About {
        rolegate_core::audit::About::entity("Request", id, "requestId")
    }

    /// The same operation, whose refusal record names what it was about.
    pub fn about(mut self, about: rolegate_core::audit::About) -> Self {
        self.about = about;
        self
    }

    pub(crate) fn refusal(
        &self,
        ctx: &OpContext,
        e: &DomainError,
    ) -> rolegate_core::audit::AuditRecord {
        rolegate_core::audit::refusal(ctx, self.category, self.activity, e, self.about.clone())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(DomainError::internal(format!("blocking task failed: {e}")).into()),
    }
}

/// The access index as transaction `tx` sees the store at `now` (for a caller that must
/// decide inside its own transaction, like the demo's seeding).
pub fn build_index_in(tx: &mut dyn ReadTx, now: jiff::Timestamp) -> Result<(AccessIndex, i64)> {
    let mut ix = AccessIndex::new();
    let seq = fill_index(tx, &mut ix, now)?;
    Ok((ix, seq))
}

/// Every subject and resource as `tx` sees them, for the read cache. (Role definitions are
/// kept as reads find them: eight per scope, they would take 60 MB at 10,000 scopes.)
fn load_entities(tx: &mut dyn ReadTx) -> Result<EntityCache> {
    let mut entities = EntityCache::new(tx.all_subjects()?);
    let all = rolegate_core::query::ListQuery {
        top: u32::MAX - 1,
        ..Default::default()
    };
    for r in &tx.list_resources(&all)?.items {
        entities.keep_resource(r);
    }
    Ok(entities)
}

/// Fills `ix` from one transaction's view of the store; returns the access-log position
/// that view includes.
fn fill_index(tx: &mut dyn ReadTx, ix: &mut AccessIndex, now: jiff::Timestamp) -> Result<i64> {
    let seq = tx.access_log_head()?;
    for (id, parent) in tx.all_resource_parents()? {
        ix.add_resource(&id, parent.as_deref());
    }
    for (id, template) in tx.all_role_templates()? {
        ix.add_role(&id, &template);
    }
    for (group, member) in tx.all_memberships()? {
        ix.add_membership(&group, &member);
    }
    tx.for_each_live_assignment(now, &mut |a, admin| ix.upsert(&a, admin))?;
    Ok(seq)
}
