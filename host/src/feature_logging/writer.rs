//! The background writer: one thread that takes rows off the queue, keeps them in
//! memory (compacted into Arrow batches), writes them to staged Arrow IPC files on
//! `Write` and, on `Flush`, hands the staged files to a second thread that publishes
//! them (encoding Parquet takes long enough that the queue must not wait for it).

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow_array::RecordBatch;
use tokio::sync::mpsc::error::TryRecvError;

use super::batch::{Row, build_batch, partition_of};
use super::entry::LogEntry;
use super::files;
use super::queue::{Counters, Msg, RowReceiver};
use super::target::ServiceTarget;

/// How often the writer looks at the queue.
const POLL: Duration = Duration::from_millis(10);
/// Rows of one service kept as entries before they are compacted into Arrow.
const COMPACT_ROWS: usize = 4096;
/// Buffered rows that trigger a write before the write interval (kept small so
/// one write never keeps the queue undrained for long).
const MAX_BUFFERED_ROWS: usize = 1 << 17;
/// Rows kept for retry after failed writes; past this, the rows of a write that
/// fails are given up.
const MAX_RETRY_ROWS: usize = 1 << 21;

/// Rows of one target, waiting to be written.
struct TargetBuffer {
    target: Arc<ServiceTarget>,
    entries: Vec<LogEntry>,
    entry_rows: usize,
    /// Compacted rows by partition.
    batches: BTreeMap<String, Vec<RecordBatch>>,
    batch_rows: usize,
}

impl TargetBuffer {
    fn rows(&self) -> usize {
        self.entry_rows + self.batch_rows
    }

    /// Turns the entries into Arrow batches (one per partition).
    fn compact(&mut self, counters: &Counters) {
        if self.entries.is_empty() {
            return;
        }
        let mut parts: BTreeMap<String, Vec<Row<'_>>> = BTreeMap::new();
        let rows = self
            .entries
            .iter()
            .flat_map(|e| (0..e.rows).map(move |r| (e, r)));
        if self.target.partition_by.is_empty() {
            parts.insert(String::new(), rows.collect());
        } else {
            for row in rows {
                parts
                    .entry(partition_of(&self.target, row))
                    .or_default()
                    .push(row);
            }
        }
        let keep: Vec<usize> = (0..self.target.schema.arrow.fields().len())
            .filter(|i| !self.target.partition_by.contains(i))
            .collect();
        for (p, rows) in parts {
            let batch = build_batch(&self.target, &rows).and_then(|b| {
                if keep.len() == b.num_columns() {
                    Ok(b)
                } else {
                    b.project(&keep)
                }
            });
            match batch {
                Ok(b) => {
                    self.batch_rows += b.num_rows();
                    self.batches.entry(p).or_default().push(b);
                }
                Err(e) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    counters
                        .failed_rows
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    tracing::error!(service = %self.target.service, error = %e, "feature logging: cannot encode log rows; they are lost");
                }
            }
        }
        self.entries.clear();
        self.entry_rows = 0;
    }
}

/// The writer's state.
pub(super) struct Writer {
    queue: RowReceiver,
    counters: Arc<Counters>,
    buffers: HashMap<usize, TargetBuffer>,
    buffered_rows: usize,
    /// Of `buffered_rows`, those kept after a failed write (retried at the next
    /// `Write`, not at every new row).
    retained_rows: usize,
    /// Staging directory -> destination of every service seen.
    roots: BTreeMap<PathBuf, PathBuf>,
    publisher: Publisher,
}

/// Publishes flushed staging directories, in order, on its own thread (or inline if
/// the thread could not be started).
struct Publisher {
    jobs: Option<std::sync::mpsc::Sender<(PathBuf, PathBuf)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Publisher {
    fn start(counters: Arc<Counters>) -> Self {
        let (jobs, incoming) = std::sync::mpsc::channel::<(PathBuf, PathBuf)>();
        let c = counters.clone();
        let spawned = std::thread::Builder::new()
            .name("feature-log-publish".into())
            .spawn(move || {
                for (staging, destination) in incoming {
                    publish_now(&c, &staging, &destination);
                }
            });
        match spawned {
            Ok(thread) => Publisher {
                jobs: Some(jobs),
                thread: Some(thread),
                counters,
            },
            Err(e) => {
                tracing::warn!(error = %e, "feature logging: no publishing thread; the writer publishes itself");
                Publisher {
                    jobs: None,
                    thread: None,
                    counters,
                }
            }
        }
    }

    /// Publishes what `staging` has in `flushing-` directories.
    fn publish(&self, staging: &std::path::Path, destination: &std::path::Path) {
        let handed_over = self.jobs.as_ref().is_some_and(|jobs| {
            jobs.send((staging.to_path_buf(), destination.to_path_buf()))
                .is_ok()
        });
        if !handed_over {
            publish_now(&self.counters, staging, destination);
        }
    }

    /// Waits until everything handed over is published.
    fn finish(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("feature logging: the publishing thread panicked");
        }
    }
}

/// Publishes `staging`'s `flushing-` directories on the calling thread.
fn publish_now(counters: &Counters, staging: &std::path::Path, destination: &std::path::Path) {
    match files::publish_flushing(staging, destination) {
        Ok(p) => {
            if p.files > 0 {
                tracing::debug!(destination = %destination.display(), files = p.files, rows = p.rows, "feature logging: flushed");
            }
            counters
                .published_files
                .fetch_add(p.files as u64, Ordering::Relaxed);
            counters
                .published_rows
                .fetch_add(p.rows as u64, Ordering::Relaxed);
        }
        Err(e) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "feature logging: flushing staged logs failed; retrying at the next flush");
        }
    }
}

impl Writer {
    /// A writer over a queue; `targets` are the services logged at start, whose
    /// leftover staged files (from a crash) are published first.
    pub(super) fn new(
        queue: RowReceiver,
        counters: Arc<Counters>,
        targets: &[Arc<ServiceTarget>],
    ) -> Self {
        let roots = targets
            .iter()
            .map(|t| (t.staging.clone(), t.destination.clone()))
            .collect();
        Writer {
            queue,
            publisher: Publisher::start(counters.clone()),
            counters,
            buffers: HashMap::new(),
            buffered_rows: 0,
            retained_rows: 0,
            roots,
        }
    }

    /// Runs until `Shutdown` (or until every sender is gone). The queue is polled
    /// every `POLL` rather than waited on, so enqueuing a row never has to wake
    /// this thread (a system call on the request path).
    pub(super) fn run(mut self) {
        self.flush();
        loop {
            loop {
                match self.queue.rx.try_recv() {
                    Ok(Msg::Shutdown(done)) => {
                        // Everything sent before the shutdown is handled (the queue is
                        // in order); late senders find the channel closed.
                        self.queue.rx.close();
                        while let Ok(m) = self.queue.rx.try_recv() {
                            if let Msg::Entry(e) = m {
                                self.take(e);
                            }
                        }
                        self.write();
                        self.flush();
                        self.publisher.finish();
                        let _ = done.send(());
                        return;
                    }
                    Ok(msg) => {
                        let step = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(msg)));
                        if step.is_err() {
                            self.counters.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                "feature logging: the writer panicked; it goes on with the next rows"
                            );
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.write();
                        self.flush();
                        self.publisher.finish();
                        return;
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Entry(e) => {
                self.take(e);
                if self.buffered_rows - self.retained_rows >= MAX_BUFFERED_ROWS {
                    self.write();
                }
            }
            Msg::Write => self.write(),
            Msg::Flush => {
                self.write();
                self.flush();
            }
            Msg::Shutdown(_) => {}
        }
    }

    fn take(&mut self, e: LogEntry) {
        self.queue.release(e.rows);
        let key = Arc::as_ptr(&e.target) as usize;
        let counters = &self.counters;
        let buf = self.buffers.entry(key).or_insert_with(|| TargetBuffer {
            target: e.target.clone(),
            entries: Vec::new(),
            entry_rows: 0,
            batches: BTreeMap::new(),
            batch_rows: 0,
        });
        self.roots
            .entry(e.target.staging.clone())
            .or_insert_with(|| e.target.destination.clone());
        buf.entry_rows += e.rows;
        self.buffered_rows += e.rows;
        buf.entries.push(e);
        if buf.entry_rows >= COMPACT_ROWS {
            let before = buf.rows();
            buf.compact(counters);
            self.buffered_rows -= before - buf.rows();
        }
    }

    /// Writes every buffered row to staged files; failed writes are kept for retry.
    fn write(&mut self) {
        let mut retained = 0;
        for buf in self.buffers.values_mut() {
            buf.compact(&self.counters);
            let target = buf.target.clone();
            let schema = buf.batches.values().flatten().next().map(|b| b.schema());
            let Some(schema) = schema else { continue };
            let batches = std::mem::take(&mut buf.batches);
            buf.batch_rows = 0;
            for (partition, group) in batches {
                let rows: usize = group.iter().map(RecordBatch::num_rows).sum();
                match files::write_staged(&target.staging, &partition, schema.clone(), &group) {
                    Ok(_) => {
                        self.counters
                            .written_rows
                            .fetch_add(rows as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        if retained + rows <= MAX_RETRY_ROWS {
                            tracing::warn!(service = %target.service, error = %e, rows, "feature logging: writing log rows failed; retrying at the next write");
                            retained += rows;
                            buf.batch_rows += rows;
                            buf.batches.insert(partition, group);
                        } else {
                            tracing::error!(service = %target.service, error = %e, rows, "feature logging: writing log rows failed again; giving them up");
                            self.counters
                                .failed_rows
                                .fetch_add(rows as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        self.buffers.retain(|_, b| b.rows() > 0);
        self.buffered_rows = retained;
        self.retained_rows = retained;
    }

    /// Hands the staged files of every service seen to the publisher: renamed here,
    /// between writes, then published on the publisher's thread.
    fn flush(&mut self) {
        for (staging, destination) in &self.roots {
            if let Err(e) = files::begin_flush(staging) {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "feature logging: flushing staged logs failed; retrying at the next flush");
            }
            // Also publishes what an earlier flush (or a crash) left behind.
            self.publisher.publish(staging, destination);
        }
    }
}
