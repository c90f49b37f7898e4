//! Reads of concurrent requests on one serving thread carried by one component call.
//!
//! A read that finds no call of its thread in flight makes one (it "leads"); reads
//! arriving meanwhile queue, and when the call returns the first of them leads the
//! next call with the views of every read queued by then (at most [`MAX_BATCH`]
//! reads), so a thread has at most one read call in flight and a busy thread makes
//! fewer, larger calls: one crossing into the component, one round trip to its
//! backend, for many requests (as the native Redis store multiplexes its requests on
//! one connection).
//!
//! Isolation: when a call carrying several reads fails (a trap, a timeout, a broken
//! answer, a backend error), each read is made again on its own, so a read that makes
//! the component fail fails only its request. Deadlines: a call's timer runs from the
//! arrival of its oldest read, so no read waits past its own deadline (plus the
//! timer's slack) for the calls before it. A read whose request is dropped while it
//! waits or leads passes the lead on.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::oneshot;

use super::StoreError;
use super::component::{Loaded, TIMER_SLACK, ViewRead};
use crate::threads::PerThread;

/// Most reads carried by one call.
pub(super) const MAX_BATCH: usize = 16;

/// The read queue of each serving thread.
pub(super) struct ReadQueues {
    slots: PerThread<Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    /// A read of this thread is leading (its call is in flight or about to be).
    leading: bool,
    waiting: VecDeque<Waiter>,
}

/// A queued read: a copy of its views (the read keeps its own), its arrival.
struct Waiter {
    views: Vec<ViewRead>,
    since: Instant,
    turn: oneshot::Sender<Turn>,
}

/// What a queued read is told.
enum Turn {
    /// Its answers (one per view).
    Answered(Vec<Vec<u8>>),
    /// Lead the next call.
    Lead,
    /// The call carrying it failed: read on its own.
    Alone,
}

impl ReadQueues {
    /// Queues for `slots` serving threads.
    pub(super) fn new(slots: usize) -> Self {
        ReadQueues {
            slots: PerThread::new(slots, Mutex::default),
        }
    }

    fn here(&self) -> &Mutex<Slot> {
        self.slots.mine().1
    }

    /// Reads `views` through `loaded`, in a call shared with the thread's concurrent
    /// reads; one answer per view.
    pub(super) async fn read(
        &self,
        loaded: &Loaded,
        views: Vec<ViewRead>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let since = Instant::now();
        let slot = self.here();
        let queued = {
            let mut s = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if s.leading {
                let (turn, told) = oneshot::channel();
                s.waiting.push_back(Waiter {
                    views: views.clone(),
                    since,
                    turn,
                });
                Some(told)
            } else {
                s.leading = true;
                None
            }
        };
        if let Some(told) = queued {
            let mut waiting = Waiting { told, slot };
            // The calls ahead end within their own deadlines; this bound only keeps a
            // read from waiting past its own if that ever failed.
            let bound = loaded.timeout() + TIMER_SLACK * 2;
            match tokio::time::timeout_at((since + bound).into(), &mut waiting.told).await {
                Ok(Ok(Turn::Answered(answers))) => return Ok(answers),
                Ok(Ok(Turn::Lead)) => {}
                // Failed together, the leading request was dropped with its call, or
                // the wait ran out.
                Ok(Ok(Turn::Alone)) | Ok(Err(_)) | Err(_) => {
                    drop(waiting);
                    return alone(loaded, &views, since).await;
                }
            }
        }
        let mut lead = Leading { slot, done: false };
        let result = lead_call(loaded, slot, views, since).await;
        lead.done = true;
        hand_over(slot);
        result
    }
}

async fn alone(
    loaded: &Loaded,
    views: &[ViewRead],
    since: Instant,
) -> Result<Vec<Vec<u8>>, StoreError> {
    loaded
        .call_since("read", since, async |i| i.read(views).await)
        .await
}

/// One call with the leader's views and those of the reads queued now.
async fn lead_call(
    loaded: &Loaded,
    slot: &Mutex<Slot>,
    views: Vec<ViewRead>,
    since: Instant,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let riders: Vec<Waiter> = {
        let mut s = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reads whose requests went away are left out.
        s.waiting.retain(|w| !w.turn.is_closed());
        let n = s.waiting.len().min(MAX_BATCH - 1);
        s.waiting.drain(..n).collect()
    };
    if riders.is_empty() {
        return alone(loaded, &views, since).await;
    }
    let oldest = riders.iter().map(|w| w.since).fold(since, Instant::min);
    let own = views.len();
    let mut all = views;
    let mut turns = Vec::with_capacity(riders.len());
    for w in riders {
        turns.push((w.views.len(), w.turn));
        all.extend(w.views);
    }
    let result = loaded
        .call_since("read", oldest, async |i| i.read(&all).await)
        .await;
    match result {
        Ok(mut answers) if answers.len() == all.len() => {
            for (n, turn) in turns.into_iter().rev() {
                let theirs = answers.split_off(answers.len() - n);
                let _ = turn.send(Turn::Answered(theirs));
            }
            Ok(answers)
        }
        // The answer count is checked by the caller for a read made alone.
        _ => {
            for (_, turn) in turns {
                let _ = turn.send(Turn::Alone);
            }
            all.truncate(own);
            alone(loaded, &all, since).await
        }
    }
}

/// Passes the lead to the first queued read that is still waiting, or ends it.
fn hand_over(slot: &Mutex<Slot>) {
    loop {
        let next = {
            let mut s = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match s.waiting.pop_front() {
                Some(w) => w,
                None => {
                    s.leading = false;
                    return;
                }
            }
        };
        // A read whose request was dropped no longer receives: try the next one.
        if next.turn.send(Turn::Lead).is_ok() {
            return;
        }
    }
}

/// A queued read; dropped before it reads a `Lead` it was sent, it passes the lead on.
struct Waiting<'a> {
    told: oneshot::Receiver<Turn>,
    slot: &'a Mutex<Slot>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Closed first: a `Lead` sent from another thread either arrived before (and is
        // read here) or fails to send (and goes to the next waiter).
        self.told.close();
        if let Ok(Turn::Lead) = self.told.try_recv() {
            hand_over(self.slot);
        }
    }
}

/// A leading read; dropped before its call is done (its request went away), it
/// passes the lead on (the reads riding its call read alone).
struct Leading<'a> {
    slot: &'a Mutex<Slot>,
    done: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !self.done {
            hand_over(self.slot);
        }
    }
}
