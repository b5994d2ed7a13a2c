//! Catch-ups with the access log shared by the requests that need one at the same time.
//!
//! On a store other nodes write, every authenticated request must start caught up with
//! every change committed anywhere before it arrived (docs/deployment.md). One catch-up
//! statement that *begins* after a request arrived serves it: so catch-ups run one at a
//! time, in turns, and a request arriving while a turn runs waits for the next turn (the
//! running one may have read the log before it arrived), which then serves every request
//! that waited for it. Under load a node runs one statement per turn instead of one per
//! request.

use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// The turns of catch-ups (see the module's doc).
pub struct CatchUpTurns {
    turns: Mutex<Turns>,
    finished: watch::Sender<Finished>,
}

struct Turns {
    /// The last turn begun.
    started: u64,
    /// Whether it is still running.
    running: bool,
}

/// The last turn that finished, and whether it left the node caught up.
#[derive(Debug, Clone, Copy)]
struct Finished {
    turn: u64,
    caught_up: bool,
}

/// What a request arriving now must do.
pub enum Turn {
    /// Wait for the running turn to finish, then ask again ([`CatchUpTurns::next`]).
    Wait(Waiting),
    /// Run the turn, then say how it went ([`RunningTurn::caught_up`]).
    Run(RunningTurn),
    /// The last turn to finish (the one it needed, or a later one: begun later still)
    /// left the node caught up.
    CaughtUp,
    /// That turn did not catch up (an error, or the index must be rebuilt): catch up
    /// alone.
    Alone,
}

/// The turn a request runs, reported when dropped: as not caught up unless
/// [`RunningTurn::caught_up`] said otherwise, so a failure or a panic cannot leave it
/// running with others waiting.
pub struct RunningTurn {
    turns: Arc<CatchUpTurns>,
    turn: u64,
    caught_up: bool,
}

impl RunningTurn {
    /// The turn left the node caught up.
    pub fn caught_up(mut self) {
        self.caught_up = true;
    }
}

impl Drop for RunningTurn {
    fn drop(&mut self) {
        self.turns.finish(self.turn, self.caught_up);
    }
}

/// A request waiting for the running turn.
pub struct Waiting(watch::Receiver<Finished>);

impl Waiting {
    /// Returns once the running turn has finished.
    pub async fn finished(mut self) {
        // An error: the sender is gone with the state, and nothing runs any more.
        let _ = self.0.changed().await;
    }
}

impl Default for CatchUpTurns {
    fn default() -> Self {
        Self {
            turns: Mutex::new(Turns {
                started: 0,
                running: false,
            }),
            finished: watch::Sender::new(Finished {
                turn: 0,
                caught_up: true,
            }),
        }
    }
}

impl CatchUpTurns {
    /// The turn a request arriving now needs: the first to begin after now.
    pub fn needed(&self) -> u64 {
        self.lock().started + 1
    }

    /// What a request that needs turn `needed` does next.
    pub fn next(self: &Arc<Self>, needed: u64) -> Turn {
        let mut t = self.lock();
        let last = *self.finished.borrow();
        if last.turn >= needed {
            return if last.caught_up {
                Turn::CaughtUp
            } else {
                Turn::Alone
            };
        }
        if !t.running {
            t.running = true;
            t.started += 1;
            return Turn::Run(RunningTurn {
                turns: Arc::clone(self),
                turn: t.started,
                caught_up: false,
            });
        }
        // Subscribed under the lock: the running turn's report (made under it) wakes it.
        Turn::Wait(Waiting(self.finished.subscribe()))
    }

    /// Reports turn `turn` done, `caught_up` or not, and wakes those waiting.
    fn finish(&self, turn: u64, caught_up: bool) {
        let mut t = self.lock();
        t.running = false;
        self.finished.send_replace(Finished { turn, caught_up });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Turns> {
        // The state is two plain fields, each written in one step: still whole after a
        // panic elsewhere.
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &Arc<CatchUpTurns>, needed: u64) -> RunningTurn {
        match t.next(needed) {
            Turn::Run(r) => r,
            _ => panic!("expected to run turn {needed}"),
        }
    }

    #[tokio::test]
    async fn a_request_arriving_during_a_turn_is_served_by_the_next_one_only() {
        let t = Arc::new(CatchUpTurns::default());
        let first = t.needed();
        let running = run(&t, first);
        // Arrived while turn 1 runs: turn 1 may have read the log before, so it waits.
        let later = t.needed();
        assert_eq!(later, first + 1);
        let Turn::Wait(waiting) = t.next(later) else {
            panic!("expected to wait");
        };
        running.caught_up();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting.finished())
            .await
            .expect("the finished turn wakes those waiting");
        // Turn 1 served the request that needed it; the later one runs turn 2.
        assert!(matches!(t.next(first), Turn::CaughtUp));
        let second = run(&t, later);
        let last = t.needed();
        assert!(matches!(t.next(last), Turn::Wait(_)));
        second.caught_up();
        assert!(matches!(t.next(later), Turn::CaughtUp));
        assert!(matches!(t.next(last), Turn::Run(_)));
    }

    #[test]
    fn a_turn_that_did_not_catch_up_sends_those_it_served_alone() {
        let t = Arc::new(CatchUpTurns::default());
        let first = t.needed();
        let running = run(&t, first);
        let later = t.needed();
        assert!(matches!(t.next(later), Turn::Wait(_)));
        // Dropped without catching up (an error, a rebuild needed, a panic).
        drop(running);
        assert!(matches!(t.next(first), Turn::Alone));
        // The request that arrived during it still needs a turn of its own.
        drop(run(&t, later));
        assert!(matches!(t.next(later), Turn::Alone));
        assert!(matches!(t.next(t.needed()), Turn::Run(_)));
    }
}
