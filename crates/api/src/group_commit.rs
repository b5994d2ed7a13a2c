//! Group commit (issue 14): the writes handlers submit at the same time share one database
//! transaction, so one durable commit (one fsync on SQLite, one round of WAL flush on
//! PostgreSQL) acknowledges them all.
//!
//! A handler queues its write and waits. The first write to find the queue idle starts a
//! drain on a blocking thread, which takes every queued write (at most [`MAX_BATCH`]) and
//! runs them in one write transaction, in arrival order: each keeps its own checks and its
//! own answer, and one that fails is undone alone (its refusal audited as before). On
//! PostgreSQL each runs in a savepoint of its own. On SQLite a savepoint costs more (every
//! page a write touches is first copied to its journal) and is rarely needed: a refused
//! write almost always fails on its checks, before writing anything. So there a write runs
//! without one, and SQLite's count of rows written shows whether a failing write wrote: if
//! it did, the whole transaction is rolled back and the batch runs again with a savepoint
//! per write ([`Attempt::MustGuard`]); nothing of it was answered yet.
//!
//! Then the transaction commits, the access changes are applied to the index in the same
//! order, and only then does each handler get its answer, so nothing is acknowledged
//! before it is durable and a failed commit acknowledges nothing.
//! Writes that arrive meanwhile queue for the next batch, so the batch grows exactly as fast
//! as commits are slow. The audit chain stays linear: the records are appended in one
//! transaction, in order.
//!
//! Each write is decided on the index as last committed plus the store as its batch has
//! left it. [`BatchView`] notices when the batch's earlier writes could have changed an
//! answer of the index (a second activation by the same person, a group change, a new
//! resource): that write is undone and runs again first in the next batch, where nothing is
//! pending. Writes are therefore `FnMut`: a write may run more than once, and only its last
//! run is kept.

use crate::state::{AppState, Operation};
use rolegate_core::access::{AccessChange, Caller, OpContext};
use rolegate_core::error::{DomainError, Result};
use rolegate_core::pending_access::{BatchView, PendingAccess};
use rolegate_core::store::{self, Tx};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// At most this many writes share a transaction: a bound on how long one commit holds the
/// write lock, and below PostgreSQL's 64 cached subtransactions per transaction (each write
/// that commits is one released savepoint; past 64 every other session's visibility checks
/// would read `pg_subtrans`).
pub const MAX_BATCH: usize = 48;

/// What a batch gives each of its writes besides the write's own caller and request id.
pub(crate) struct Env<'a> {
    /// The index as the write may read it.
    pub(crate) access: &'a BatchView<'a>,
    /// The time the write runs at.
    pub(crate) now: jiff::Timestamp,
    /// Makes fresh GUIDs.
    pub(crate) new_id: &'a dyn Fn() -> String,
    /// E-mail notifications, when on.
    pub(crate) mail: Option<&'a rolegate_core::email::MailPolicy>,
}

/// A queued write, its value kept until the batch commits.
pub(crate) trait QueuedWrite: Send {
    /// Runs the write in `tx`; keeps its value and returns its access changes.
    fn run(&mut self, tx: &mut dyn Tx, env: &Env) -> Result<Vec<AccessChange>>;
    /// The audit record of refusing the write with `e`.
    fn refusal(&self, env: &Env, e: &DomainError) -> rolegate_core::audit::AuditRecord;
    /// Answers the waiting handler: the kept value when `outcome` is `Ok`.
    fn answer(self: Box<Self>, outcome: Result<()>);
}

/// A handler's write: its closure, the value of its last run, and where to answer.
pub(crate) struct Job<T, F> {
    pub(crate) caller: Caller,
    pub(crate) correlation_id: String,
    pub(crate) op: Operation,
    pub(crate) f: F,
    pub(crate) value: Option<T>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<T>>,
}

/// The operation context of a write by `caller` in its batch.
fn context<'a>(caller: &'a Caller, correlation_id: &'a str, env: &'a Env) -> OpContext<'a> {
    OpContext {
        caller,
        access: env.access,
        now: env.now,
        correlation_id,
        new_id: env.new_id,
        mail: env.mail,
    }
}

impl<T, F> QueuedWrite for Job<T, F>
where
    T: Send,
    F: FnMut(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)> + Send,
{
    fn run(&mut self, tx: &mut dyn Tx, env: &Env) -> Result<Vec<AccessChange>> {
        self.value = None;
        let ctx = context(&self.caller, &self.correlation_id, env);
        let (value, changes) = (self.f)(tx, &ctx)?;
        self.value = Some(value);
        Ok(changes)
    }

    fn refusal(&self, env: &Env, e: &DomainError) -> rolegate_core::audit::AuditRecord {
        self.op
            .refusal(&context(&self.caller, &self.correlation_id, env), e)
    }

    fn answer(self: Box<Self>, outcome: Result<()>) {
        let Job { value, reply, .. } = *self;
        let answer = outcome.and_then(|()| {
            value.ok_or_else(|| DomainError::internal("a committed write kept no value"))
        });
        // The handler may have gone (its client disconnected): the write stands all the same.
        let _ = reply.send(answer);
    }
}

/// The writes waiting for a batch.
#[derive(Default)]
pub(crate) struct WriteQueue {
    inner: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    writes: VecDeque<Box<dyn QueuedWrite>>,
    /// A drain is running (it takes whatever is queued before it stops).
    draining: bool,
    /// How many more batches run each write in a savepoint (a recent write failed after
    /// writing, and the next may too).
    guarded_batches: u32,
}

/// After a write fails having written, this many batches run each write in a savepoint:
/// when such failures come often (one person's writes racing each other, say), rolling a
/// batch back and running it again would cost more than the savepoints.
const GUARDED_BATCHES: u32 = 16;

/// A batch of writes and whether each must run in a savepoint.
struct Batch {
    writes: VecDeque<Box<dyn QueuedWrite>>,
    guarded: bool,
}

impl WriteQueue {
    /// Queues `write`; true when the caller must start a drain.
    pub(crate) fn push(&self, write: Box<dyn QueuedWrite>) -> bool {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        w.writes.push_back(write);
        !std::mem::replace(&mut w.draining, true)
    }

    /// The next batch, or `None` (and the drain ends) when nothing waits.
    fn next_batch(&self) -> Option<Batch> {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if w.writes.is_empty() {
            w.draining = false;
            return None;
        }
        let n = w.writes.len().min(MAX_BATCH);
        let guarded = w.guarded_batches > 0;
        w.guarded_batches = w.guarded_batches.saturating_sub(1);
        Some(Batch {
            writes: w.writes.drain(..n).collect(),
            guarded,
        })
    }

    /// Puts writes that must run again at the head of the queue, in their order; with
    /// `guard`, the next batches run each write in a savepoint.
    fn requeue(&self, writes: Vec<Box<dyn QueuedWrite>>, guard: bool) {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for write in writes.into_iter().rev() {
            w.writes.push_front(write);
        }
        if guard {
            w.guarded_batches = GUARDED_BATCHES;
        }
    }
}

/// Runs batches until the queue is empty. Blocks: runs on a blocking thread. A batch that
/// panics outside its writes (a bug) is rolled back while unwinding and its writes are
/// answered with an error (their replies dropped); the drain goes on with the next one, so
/// the queue never stays marked as drained by nobody.
pub(crate) fn drain(state: &Arc<AppState>) {
    while let Some(batch) = state.writes.next_batch() {
        match catch_unwind(AssertUnwindSafe(|| run_batch(state, batch))) {
            Ok((again, guard)) => state.writes.requeue(again, guard),
            Err(_) => tracing::error!("a batch of writes panicked; its writes were refused"),
        }
    }
}

/// How a write (or a refusal's audit record) ran.
enum Attempt {
    /// It succeeded, or failed leaving nothing behind: its result, and whether it failed
    /// after writing (its savepoint undid that).
    Done(Result<()>, bool),
    /// It failed after writing without a savepoint: only rolling back the transaction
    /// undoes that.
    MustGuard,
}

/// Runs `f` so that a failure leaves nothing behind: in a savepoint when `guarded` or when
/// the store does not count rows written; otherwise directly, checking the count.
/// The outer `Err` means the transaction failed.
fn attempt(
    tx: &mut dyn Tx,
    guarded: bool,
    f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
) -> Result<Attempt> {
    let before = tx.rows_written();
    let failed_after_writing =
        |tx: &dyn Tx, outcome: &Result<()>| outcome.is_err() && tx.rows_written() != before;
    match before {
        Some(_) if !guarded => {
            let outcome = f(tx);
            if failed_after_writing(tx, &outcome) {
                return Ok(Attempt::MustGuard);
            }
            Ok(Attempt::Done(outcome, false))
        }
        _ => {
            let outcome = tx.savepoint(f)?;
            let wrote = before.is_some() && failed_after_writing(tx, &outcome);
            Ok(Attempt::Done(outcome, wrote))
        }
    }
}

/// How one write of a batch ended inside the transaction.
enum Ran {
    /// Done: its changes and, on a shared store, their access-log position.
    Done(Vec<AccessChange>, Option<i64>),
    /// Refused or failed, and undone; the refusal (if any) is audited in the batch.
    Failed(DomainError),
}

/// Runs one batch in one transaction and answers its writes; returns the writes that must
/// run again (they read an index the batch's earlier writes had changed, or the batch was
/// rolled back to run again with savepoints) and whether the next batches should run each
/// write in a savepoint (one of this batch failed after writing).
fn run_batch(state: &AppState, batch: Batch) -> (Vec<Box<dyn QueuedWrite>>, bool) {
    let Batch {
        writes: mut batch,
        guarded,
    } = batch;
    let order = state.write_order_after_system_writes();
    let new_id = crate::new_id;
    let committed = state.access_view();
    let shared = state.store.shared();
    let mut ran: Vec<(Box<dyn QueuedWrite>, Ran)> = Vec::with_capacity(batch.len());
    let mut again = Vec::new();
    let mut must_guard = false;
    let mut failed_after_writing = false;
    let outcome = store::write(state.store.as_ref(), |tx| {
        state.catch_up(tx)?;
        let mut pending = PendingAccess::default();
        while let Some(mut write) = batch.pop_front() {
            let view = BatchView::new(&committed, &pending);
            let env = Env {
                access: &view,
                now: state.clock.now(),
                new_id: &new_id,
                mail: state.mail.as_ref(),
            };
            let mut done = None;
            let result = attempt(tx, guarded, &mut |tx| {
                let changes = catch_unwind(AssertUnwindSafe(|| write.run(tx, &env)))
                    .unwrap_or_else(|_| Err(DomainError::internal("the write panicked")))?;
                if view.is_stale() {
                    return Err(DomainError::internal("stale"));
                }
                let seq = if shared && !changes.is_empty() {
                    Some(tx.log_access_changes(&changes, env.now)?)
                } else {
                    None
                };
                done = Some((changes, seq));
                Ok(())
            });
            let result = match result {
                Ok(Attempt::Done(result, wrote)) => {
                    failed_after_writing |= wrote;
                    result
                }
                // Undone only by rolling back the whole batch, which then runs again.
                Ok(Attempt::MustGuard) => {
                    batch.push_front(write);
                    must_guard = true;
                    return Err(DomainError::internal(
                        "a write failed after writing: the batch runs again with savepoints",
                    ));
                }
                // The transaction failed (a lost connection, say): the write is answered
                // with the batch's failure, like the writes after it.
                Err(e) => {
                    batch.push_front(write);
                    return Err(e);
                }
            };
            if view.is_stale() {
                again.push(write);
                continue;
            }
            let outcome = match (result, done) {
                (Ok(()), Some((changes, seq))) => {
                    pending.add(&changes);
                    Ran::Done(changes, seq)
                }
                (Ok(()), None) => Ran::Failed(DomainError::internal("a write kept no changes")),
                (Err(e), _) => {
                    if is_refusal(&e) {
                        let record = write.refusal(&env, &e);
                        match attempt(tx, guarded, &mut |tx| tx.append_audit(&record)) {
                            Ok(Attempt::Done(Ok(()), _)) => {}
                            Ok(Attempt::Done(Err(audit), _)) => {
                                tracing::warn!(error = %audit, "could not audit a refused write");
                            }
                            Ok(Attempt::MustGuard) => {
                                batch.push_front(write);
                                must_guard = true;
                                return Err(DomainError::internal(
                                    "a refusal's audit failed after writing: the batch runs again with savepoints",
                                ));
                            }
                            Err(broken) => {
                                ran.push((write, Ran::Failed(e)));
                                return Err(broken);
                            }
                        }
                    }
                    Ran::Failed(e)
                }
            };
            ran.push((write, outcome));
        }
        Ok(())
    });
    match outcome {
        Ok(()) => {
            crate::metrics::record_batch(ran.len(), again.len());
            let changes = ran.iter().filter_map(|(_, r)| match r {
                Ran::Done(changes, seq) if !changes.is_empty() => Some((changes.as_slice(), *seq)),
                _ => None,
            });
            if let Err(e) = state.apply_committed(changes) {
                tracing::error!(error = %e, "could not apply committed access changes");
            }
            drop(order);
            state.committed.notify_one();
            for (write, r) in ran {
                write.answer(match r {
                    Ran::Done(..) => Ok(()),
                    Ran::Failed(e) => Err(e),
                });
            }
        }
        // Rolled back, nothing answered: every write runs again, each in a savepoint.
        Err(_) if must_guard => {
            drop(order);
            crate::metrics::record_guarded_rerun();
            let all = again
                .drain(..)
                .chain(ran.into_iter().map(|(write, _)| write))
                .chain(batch)
                .collect();
            return (all, true);
        }
        Err(e) => {
            drop(order);
            // Nothing of the batch is durable: every write gets the failure, except a
            // refusal, whose answer stands (only its audit record was lost with the batch).
            for (write, r) in ran {
                write.answer(Err(match r {
                    Ran::Failed(refused) if is_refusal(&refused) => {
                        tracing::warn!(error = %e, "could not audit a refused write");
                        refused
                    }
                    _ => e.clone(),
                }));
            }
            for write in batch.into_iter().chain(again.drain(..)) {
                write.answer(Err(e.clone()));
            }
        }
    }
    (again, failed_after_writing)
}

/// Whether `e` refuses a write (a 4xx other than a lost race), which leaves an audit record.
fn is_refusal(e: &DomainError) -> bool {
    let status = e.code.status();
    (400..500).contains(&status) && status != 409
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rolegate_core::audit::{About, refusal};
    use rolegate_store::{SqlStore, SqliteStore, Synchronous};
    use tokio::sync::oneshot;

    /// A directory removed with everything in it when dropped.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A state on a fresh SQLite file, that store, and the file's directory.
    fn state() -> (AppState, Arc<SqliteStore>, Scratch) {
        let dir =
            std::env::temp_dir().join(format!("rolegate-group-commit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(SqliteStore::open(&dir.join("t.db"), Synchronous::Normal).unwrap());
        let auth = crate::auth::Authenticator::hs256(b"0123456789abcdef", None, None, []).unwrap();
        let clock = Arc::new(rolegate_core::clock::SystemClock);
        let state = AppState::new(store.clone(), clock, auth).unwrap();
        (state, store, Scratch(dir))
    }

    type Answer<T> = oneshot::Receiver<Result<T>>;

    /// A queued write named `name` running `f`.
    fn job<T, F>(name: &'static str, f: F) -> (Box<dyn QueuedWrite>, Answer<T>)
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx, &OpContext) -> Result<(T, Vec<AccessChange>)> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let caller = Caller {
            subject_id: format!("caller-{name}"),
            display_name: name.into(),
            principal_name: None,
            is_tenant_admin: false,
            mfa: false,
        };
        let job = Job {
            caller,
            correlation_id: format!("request-{name}"),
            op: Operation::new("Test", "Refused write"),
            f,
            value: None,
            reply,
        };
        (Box::new(job), answer)
    }

    /// Leaves an audit record whose activity is `name` (a database write to look for).
    fn mark(tx: &mut dyn Tx, ctx: &OpContext, name: &str) -> Result<()> {
        tx.append_audit(&refusal(
            ctx,
            "Test",
            name,
            &DomainError::bad_request("x"),
            About::NOTHING,
        ))
    }

    /// The activities of the audit log, in commit order.
    fn activities(store: &SqliteStore) -> Vec<String> {
        let mut out = Vec::new();
        store
            .read_sql(&mut |c| {
                out.clear();
                c.query_each(
                    "SELECT activity FROM audit_log ORDER BY seq",
                    &[],
                    &mut |r| {
                        out.push(r.get::<String>(0)?);
                        Ok(())
                    },
                )
            })
            .unwrap();
        out
    }

    /// `writes` as a batch, run with or without a savepoint per write.
    fn batch(writes: Vec<Box<dyn QueuedWrite>>, guarded: bool) -> Batch {
        Batch {
            writes: writes.into(),
            guarded,
        }
    }

    #[test]
    fn a_write_refused_before_writing_needs_no_savepoint_nor_a_second_run() {
        let (state, store, _dir) = state();
        let (a, answer_a) = job("A", |tx, ctx| Ok((mark(tx, ctx, "A")?, Vec::new())));
        let (b, answer_b) = job("B", |_, _| {
            Err::<((), _), _>(DomainError::bad_request("B is refused"))
        });
        let (c, answer_c) = job("C", |tx, ctx| Ok((mark(tx, ctx, "C")?, Vec::new())));
        let (again, guard) = run_batch(&state, batch(vec![a, b, c], false));
        assert!(again.is_empty());
        assert!(!guard, "B wrote nothing: the batch committed as it ran");
        assert!(answer_a.blocking_recv().unwrap().is_ok());
        let refused = answer_b.blocking_recv().unwrap().unwrap_err();
        assert_eq!(refused.message, "B is refused");
        assert!(answer_c.blocking_recv().unwrap().is_ok());
        assert_eq!(activities(&store), ["A", "Refused write", "C"]);
    }

    #[test]
    fn a_failing_write_is_undone_alone_and_its_neighbours_commit() {
        let (state, store, _dir) = state();
        let (a, answer_a) = job("A", |tx, ctx| Ok((mark(tx, ctx, "A")?, Vec::new())));
        let (b, answer_b) = job("B", |tx, ctx| {
            mark(tx, ctx, "B")?;
            Err::<((), _), _>(DomainError::bad_request("B is refused"))
        });
        let (c, answer_c) = job("C", |tx, ctx| {
            mark(tx, ctx, "C")?;
            panic!("C fails unexpectedly");
            #[allow(unreachable_code)]
            Ok(((), Vec::new()))
        });
        let (d, mut answer_d) = job("D", |tx, ctx| Ok((mark(tx, ctx, "D")?, Vec::new())));
        // Without savepoints B's failure after writing can only be undone with the whole
        // batch: it is rolled back, nobody answered, and runs again with savepoints.
        let (again, guard) = run_batch(&state, batch(vec![a, b, c, d], false));
        assert_eq!(again.len(), 4);
        assert!(guard);
        assert!(
            activities(&store).is_empty(),
            "nothing of the first run is kept"
        );
        assert!(answer_d.try_recv().is_err(), "nobody is answered yet");
        let (again, guard) = run_batch(&state, batch(again, true));
        assert!(again.is_empty());
        assert!(guard, "B and C failed after writing again");
        assert!(answer_a.blocking_recv().unwrap().is_ok());
        let refused = answer_b.blocking_recv().unwrap().unwrap_err();
        assert_eq!(refused.message, "B is refused");
        let panicked = answer_c.blocking_recv().unwrap().unwrap_err();
        assert_eq!(panicked.code.status(), 500);
        assert!(answer_d.blocking_recv().unwrap().is_ok());
        // B's and C's own writes are undone; B's refusal is audited, C's failure is not
        // (a 500 is no refusal).
        assert_eq!(activities(&store), ["A", "Refused write", "D"]);
    }

    #[test]
    fn a_write_that_read_what_an_earlier_write_changed_runs_again_after_it_commits() {
        let (state, store, _dir) = state();
        let (a, answer_a) = job("A", |tx, ctx| {
            mark(tx, ctx, "A")?;
            let joined = AccessChange::Groups {
                member_id: "u1".into(),
                groups: vec!["g1".into()],
            };
            Ok(((), vec![joined]))
        });
        let mut runs = 0;
        let (b, mut answer_b) = job("B", move |tx, ctx| {
            runs += 1;
            mark(tx, ctx, "B")?;
            Ok(((runs, ctx.access.groups_of("u1")), Vec::new()))
        });
        let (c, answer_c) = job("C", |tx, ctx| {
            mark(tx, ctx, "C")?;
            Ok((ctx.access.ancestors_or_self("nowhere"), Vec::new()))
        });
        // B wrote before its view went stale: without savepoints that takes rolling the
        // batch back; with them, B alone is undone and runs again after A commits.
        let (again, guard) = run_batch(&state, batch(vec![a, b, c], false));
        assert_eq!((again.len(), guard), (3, true));
        assert!(activities(&store).is_empty());
        let (again, guard) = run_batch(&state, batch(again, true));
        assert_eq!(again.len(), 1, "B read the groups A changed");
        assert!(guard);
        assert!(answer_a.blocking_recv().unwrap().is_ok());
        assert!(
            answer_c.blocking_recv().unwrap().is_ok(),
            "C read nothing A changed"
        );
        assert!(answer_b.try_recv().is_err(), "B is not answered yet");
        assert_eq!(activities(&store), ["A", "C"]);
        let (again, guard) = run_batch(&state, batch(again, true));
        assert!(again.is_empty() && !guard);
        let (runs, groups) = answer_b.blocking_recv().unwrap().unwrap();
        assert_eq!((runs, groups), (3, vec!["g1".to_string()]));
        assert_eq!(activities(&store), ["A", "C", "B"]);
    }

    #[test]
    fn system_writes_get_the_write_lock_while_batches_follow_each_other() {
        let (state, _store, _dir) = state();
        let busy = std::sync::atomic::AtomicBool::new(true);
        let batches = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Batch after batch, as under a steady stream of handlers' writes, for at
                // most ten seconds.
                let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while busy.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < until
                {
                    let (write, _answer) = job("busy", |_, _| Ok(((), Vec::new())));
                    run_batch(&state, batch(vec![write], false));
                    batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            while batches.load(std::sync::atomic::Ordering::Relaxed) < 10 {
                std::thread::yield_now();
            }
            let system = Caller {
                subject_id: "scheduler".into(),
                display_name: "scheduler".into(),
                principal_name: None,
                is_tenant_admin: true,
                mfa: false,
            };
            let started = std::time::Instant::now();
            for _ in 0..50 {
                state
                    .write_as_system(&system, "sweep", |_, _| Ok(((), Vec::new())))
                    .unwrap();
            }
            let took = started.elapsed();
            busy.store(false, std::sync::atomic::Ordering::Relaxed);
            assert!(
                took < std::time::Duration::from_secs(5),
                "system writes waited {took:?}"
            );
        });
    }
}
