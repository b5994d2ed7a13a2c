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
    use proptest::prelude::*;

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

    /// A step of the model: a request arrives, a request asks what to do, a running turn
    /// finishes (caught up or not).
    #[derive(Debug, Clone)]
    enum Step {
        Arrive,
        Ask(usize),
        Finish(usize, bool),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                Just(Step::Arrive),
                (0..8usize).prop_map(Step::Ask),
                (0..4usize, any::<bool>()).prop_map(|(i, ok)| Step::Finish(i, ok)),
            ],
            0..60,
        )
    }

    proptest! {
        /// Whatever the order of arrivals and finishes: a request is told it is caught up
        /// only when a turn that began after it arrived finished caught up, to go alone
        /// only when such a turn failed, to wait only while a turn runs; one turn runs at
        /// a time, and a request that keeps asking is answered once turns finish.
        #[test]
        fn a_request_is_served_only_by_a_turn_begun_after_it_arrived(steps in steps()) {
            let t = Arc::new(CatchUpTurns::default());
            // Per request: the turns begun when it arrived, the turn it needs, its answer.
            let mut requests: Vec<(u64, u64, Option<bool>)> = Vec::new();
            let mut running: Vec<RunningTurn> = Vec::new();
            let mut begun = 0u64;
            let mut finished: Vec<(u64, bool)> = Vec::new();
            let ask = |r: usize,
                       requests: &mut Vec<(u64, u64, Option<bool>)>,
                       running: &mut Vec<RunningTurn>,
                       begun: &mut u64,
                       finished: &[(u64, bool)]|
                       -> Result<(), TestCaseError> {
                let (arrived_after, needed, answer) = requests[r];
                if answer.is_some() {
                    return Ok(());
                }
                match t.next(needed) {
                    Turn::CaughtUp => {
                        prop_assert!(finished.iter().any(|&(n, ok)| ok && n > arrived_after));
                        requests[r].2 = Some(true);
                    }
                    Turn::Alone => {
                        prop_assert!(finished.iter().any(|&(n, ok)| !ok && n > arrived_after));
                        requests[r].2 = Some(false);
                    }
                    Turn::Wait(_) => prop_assert!(!running.is_empty()),
                    Turn::Run(turn) => {
                        *begun += 1;
                        prop_assert_eq!(turn.turn, *begun);
                        prop_assert!(turn.turn > arrived_after);
                        running.push(turn);
                        prop_assert!(running.len() <= 1);
                    }
                }
                Ok(())
            };
            for step in steps {
                match step {
                    Step::Arrive => requests.push((begun, t.needed(), None)),
                    Step::Ask(i) if !requests.is_empty() => {
                        let r = i % requests.len();
                        ask(r, &mut requests, &mut running, &mut begun, &finished)?;
                    }
                    Step::Finish(i, ok) if !running.is_empty() => {
                        let turn = running.remove(i % running.len());
                        finished.push((turn.turn, ok));
                        if ok {
                            turn.caught_up();
                        }
                    }
                    _ => {}
                }
            }
            // Liveness: every request asking again, with turns finishing as they are
            // started, is answered.
            for r in 0..requests.len() {
                for _ in 0..4 {
                    ask(r, &mut requests, &mut running, &mut begun, &finished)?;
                    for turn in running.drain(..) {
                        finished.push((turn.turn, true));
                        turn.caught_up();
                    }
                }
                prop_assert!(requests[r].2.is_some(), "request {} never answered", r);
            }
        }
    }
}
