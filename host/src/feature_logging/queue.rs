//! The bounded queue between the request path and the writer: at most
//! `queue_capacity` rows wait; a request waits at most `emit_timeout` for room, then
//! its rows are dropped and counted (the request itself still succeeds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::entry::LogEntry;

/// Seconds between two warnings about dropped rows.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the writer receives.
#[derive(Debug)]
pub(super) enum Msg {
    /// Rows to buffer (they hold `rows` queue permits until buffered).
    Entry(LogEntry),
    /// Write buffered rows to staged files now.
    Write,
    /// Write, then publish staged files to the destinations.
    Flush,
    /// Write and flush everything, then stop; answers when done.
    Shutdown(oneshot::Sender<()>),
}

/// Counters of the feature logger.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Rows accepted into the queue.
    pub enqueued_rows: AtomicU64,
    /// Rows dropped because the queue stayed full (or the writer had stopped).
    pub dropped_rows: AtomicU64,
    /// Rows written to staged files.
    pub written_rows: AtomicU64,
    /// Rows lost because a write kept failing.
    pub failed_rows: AtomicU64,
    /// Files published into destinations.
    pub published_files: AtomicU64,
    /// Rows in those files.
    pub published_rows: AtomicU64,
    /// Write or flush attempts that failed.
    pub errors: AtomicU64,
}

/// The sending side of the queue.
#[derive(Debug)]
pub(super) struct RowQueue {
    permits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Msg>,
    capacity: usize,
    emit_timeout: Duration,
    counters: Arc<Counters>,
    started: Instant,
    /// Milliseconds after `started` of the last drop warning, and drops then.
    last_warn_ms: AtomicU64,
    warned_drops: AtomicU64,
}

/// The receiving side, for the writer.
#[derive(Debug)]
pub(super) struct RowReceiver {
    /// Messages in order.
    pub rx: mpsc::UnboundedReceiver<Msg>,
    permits: Arc<Semaphore>,
}

impl RowReceiver {
    /// Gives back the queue room of rows taken out of the queue.
    pub(super) fn release(&self, rows: usize) {
        self.permits.add_permits(rows);
    }
}

/// A queue of `capacity` rows.
pub(super) fn row_queue(
    capacity: usize,
    emit_timeout: Duration,
    counters: Arc<Counters>,
) -> (RowQueue, RowReceiver) {
    let capacity = capacity.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(capacity));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        RowQueue {
            permits: permits.clone(),
            tx,
            capacity,
            emit_timeout,
            counters,
            started: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
            warned_drops: AtomicU64::new(0),
        },
        RowReceiver { rx, permits },
    )
}

impl RowQueue {
    /// Enqueues a request's rows, waiting at most the emit timeout for room.
    /// Returns whether they were accepted.
    pub(super) async fn push(&self, entry: LogEntry) -> bool {
        let rows = entry.rows;
        let n = match u32::try_from(rows) {
            Ok(n) if rows <= self.capacity => n,
            _ => {
                self.dropped(rows);
                return false;
            }
        };
        let permit = match self.permits.try_acquire_many(n) {
            Ok(p) => Some(p),
            Err(tokio::sync::TryAcquireError::NoPermits) if !self.emit_timeout.is_zero() => {
                tokio::time::timeout(self.emit_timeout, self.permits.acquire_many(n))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            self.dropped(rows);
            return false;
        };
        permit.forget();
        if self.tx.send(Msg::Entry(entry)).is_err() {
            self.dropped(rows);
            return false;
        }
        self.counters
            .enqueued_rows
            .fetch_add(rows as u64, Ordering::Relaxed);
        true
    }

    /// Sends a control message; false when the writer has stopped.
    pub(super) fn control(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok()
    }

    fn dropped(&self, rows: usize) {
        let total = self
            .counters
            .dropped_rows
            .fetch_add(rows as u64, Ordering::Relaxed)
            + rows as u64;
        let now = self.started.elapsed().as_millis() as u64 + DROP_WARN_EVERY.as_millis() as u64;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= DROP_WARN_EVERY.as_millis() as u64
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let before = self.warned_drops.swap(total, Ordering::Relaxed);
            tracing::warn!(
                dropped_rows = total - before.min(total),
                dropped_rows_total = total,
                queue_capacity = self.capacity,
                "feature logging: the log queue is full, rows are being dropped (requests are still served)"
            );
        }
    }
}
