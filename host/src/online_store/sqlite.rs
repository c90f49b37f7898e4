//! Feast's SQLite online store: table `<project>_<view>` with one row per
//! (`entity_key`, `feature_name`), `value` a serialized `feast.types.Value` and
//! `event_ts` epoch seconds (or ISO text in databases older than Feast 0.42).
//!
//! Writes (push, write-to-online-store, materialize) go through one read-write
//! connection, opened on the first write, in one transaction per call: Feast's
//! upsert for every (row, feature), in row order, so the last row of an entity wins
//! as in Feast; a table Feast's `apply` would have created is created when missing.
//! That connection puts the database in WAL mode: readers (ours and Feast's) then
//! read the last committed state without waiting for a writer, and a writer never
//! waits for readers. The mode is a property of the file, so every process that
//! opens it afterwards (Feast's SDK, `feast materialize`, sqlite3) uses it too.
//!
//! Reads use read-only connections, one query per view per request, with prepared
//! statements. A small read (at most [`INLINE_MAX_KEYS`] keys) is first tried on the
//! calling thread without waiting for locks, with that serving thread's own
//! connection: on a database the OS keeps in its page cache (an online store that is
//! read all the time) it is CPU work of a few microseconds, while handing it to
//! another thread costs more than the query, and a connection of its own means no
//! lock shared with the other serving threads (a thread preempted while holding one
//! would stall the others' requests); in rollback-journal mode that connection keeps
//! its read transaction open for the reads of the next millisecond ([`HOLD`]). A read
//! that would wait (a writer such as `feast materialize` holds the lock) or is large
//! runs on the blocking pool instead, off the async runtime, with a pooled
//! connection, where it waits up to the busy timeout. When another file takes the
//! path's place (a store rebuilt and renamed in, or deleted and written again),
//! connections to the old one are closed and new ones opened, within
//! [`FILE_CHECK_INTERVAL`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::{
    Cell, OnlineStore, OpenError, ReadBatch, StoreError, StoreSettings, ViewRows, ViewTarget,
    WriteBatch, WriteOutcome,
};
use crate::config::{ConfigError, RepoConfig};
use crate::entity_key::same_key;
use crate::threads::PerThread;
use crate::value::{EventTime, Value, decode_stored};

const STORE: &str = "sqlite";
/// Keys per statement; larger batches are split. Counts above
/// [`LOOKUPS_MAX_KEYS`] are padded to a power of two (see [`query_keys`]).
const MAX_KEYS_PER_QUERY: usize = 256;
/// Largest read (in keys, over all views) tried on the calling thread.
pub(crate) const INLINE_MAX_KEYS: usize = 256;

/// Tuning for the SQLite reader.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Connections (and so concurrent reads).
    pub pool_size: usize,
    /// How long a read waits for a writer's lock.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        SqliteOptions {
            pool_size: (cores * 2).clamp(2, 16),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// `online_store: {type: sqlite, ...}`: the keys Feast 0.67's SQLite config knows
/// (it rejects others); only `path` is used here.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqliteConfig {
    #[serde(rename = "type", default)]
    _type: Option<String>,
    #[serde(default = "default_path")]
    path: String,
    #[serde(rename = "text_search_enabled", default)]
    _text_search_enabled: Option<bool>,
    #[serde(rename = "enable_openai_compatible_store", default)]
    _enable_openai_compatible_store: Option<bool>,
    #[serde(rename = "vector_enabled", default)]
    _vector_enabled: Option<bool>,
    #[serde(rename = "vector_len", default)]
    _vector_len: Option<i64>,
    #[serde(rename = "similarity", default)]
    _similarity: Option<String>,
}

fn default_path() -> String {
    "data/online.db".into()
}

/// Opens the store `online_store` configures (the file must exist).
pub(super) fn open(
    config: &RepoConfig,
    settings: &StoreSettings,
) -> Result<Arc<dyn OnlineStore>, OpenError> {
    let section = match &config.online_store.raw {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        raw => raw.clone(),
    };
    let cfg: SqliteConfig = config.parse_section("online_store", section)?;
    let path = config.resolve_path(&cfg.path);
    if !path.is_file() {
        return Err(ConfigError::MissingFile {
            path: config.source.clone(),
            key: "online_store.path",
            file: path,
        }
        .into());
    }
    let store = SqliteStore::open(
        &path,
        &config.project,
        settings.sqlite.clone(),
        settings.connections,
    )?;
    Ok(Arc::new(store))
}

/// What a read of one view needs: its table and its queries.
struct Target {
    /// `<project>_<online name>`.
    table: String,
    /// The query of `n` keys at `n - 1`, up to [`LOOKUPS_MAX_KEYS`], then of each
    /// power of two up to [`MAX_KEYS_PER_QUERY`] (see [`query_keys`]).
    selects: Vec<String>,
}

impl Target {
    fn new(table: String) -> Self {
        let lists = (LOOKUPS_MAX_KEYS.trailing_zeros() + 1..=MAX_KEYS_PER_QUERY.trailing_zeros())
            .map(|i| 1 << i);
        let selects = (1..=LOOKUPS_MAX_KEYS)
            .chain(lists)
            .map(|n| select_sql(&table, n))
            .collect();
        Target { table, selects }
    }

    /// The query of `keys` keys, a count [`query_keys`] gives.
    fn select(&self, keys: usize) -> &str {
        let at = if keys <= LOOKUPS_MAX_KEYS {
            keys - 1
        } else {
            LOOKUPS_MAX_KEYS + (keys.trailing_zeros() - LOOKUPS_MAX_KEYS.trailing_zeros()) as usize
                - 1
        };
        &self.selects[at]
    }
}

/// The key count of the query that reads `keys` keys (at most [`MAX_KEYS_PER_QUERY`]):
/// exact for lookups, whose every key costs a lookup; an `IN` list's is padded to a
/// power of two, so a handful of queries serves every count.
fn query_keys(keys: usize) -> usize {
    if keys <= LOOKUPS_MAX_KEYS {
        keys
    } else {
        keys.next_power_of_two()
    }
}

/// A pooled, read-only reader of a Feast SQLite online store.
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    project: String,
    opts: SqliteOptions,
    /// One connection per serving thread (see [`PerThread`]), for reads on
    /// the calling thread; only its own thread locks it, so never in contention.
    local: PerThread<Mutex<Local>>,
    /// Connections of the blocking pool.
    idle: Mutex<Vec<Pooled>>,
    /// The file at `path` when last looked at, and when that was.
    file: Mutex<(Option<FileId>, Instant)>,
    permits: Arc<Semaphore>,
    missing_tables: Mutex<HashSet<String>>,
    /// The read-write connection, opened on the first write.
    writer: Mutex<Option<Pooled>>,
}

/// Which file a path names (device and inode): `feast teardown` + `materialize`, or a
/// rename over the path, put a new file there while pooled connections still read
/// the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Elsewhere a replaced file is not noticed.
    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<FileId> {
        None
    }
}

/// A connection and the file it has open.
#[derive(Debug)]
struct Pooled {
    conn: Connection,
    file: Option<FileId>,
}

/// A serving thread's connection, when it last looked at which file the path names,
/// and its read transaction (see [`HOLD`]).
#[derive(Debug)]
struct Local {
    conn: Option<Pooled>,
    checked: Option<Instant>,
    /// When the read transaction held open began.
    held: Option<Instant>,
    /// A task that ends the held transaction is scheduled.
    release_scheduled: bool,
    /// When the database was last seen in WAL mode (reads are not held then).
    wal_seen: Option<Instant>,
}

impl Local {
    fn new() -> Self {
        Local {
            conn: None,
            checked: None,
            held: None,
            release_scheduled: false,
            wal_seen: None,
        }
    }

    /// Closes the connection (and so ends its transaction).
    fn close(&mut self) {
        self.conn = None;
        self.held = None;
        self.wal_seen = None;
    }

    /// Ends the held read transaction, if any.
    fn release(&mut self) {
        if self.held.take().is_some()
            && let Some(c) = &self.conn
            && let Err(e) = run_cached(&c.conn, "COMMIT")
        {
            // The connection cannot be trusted to be out of its transaction.
            tracing::warn!(error = %e, "ending a read transaction failed; reconnecting");
            self.close();
        }
    }
}

/// How long a serving thread's connection keeps one read transaction open for the
/// reads that follow, in rollback-journal mode (the mode Feast leaves the file in).
///
/// Starting a read transaction is most of a small read's cost there: SQLite takes and
/// releases its file locks (`fcntl`), checks for a hot journal and reads the file's
/// change counter, every time. A transaction held open serves the next reads with
/// none of that, and serves them the latest commit: in rollback-journal mode no
/// writer can commit while a reader holds its shared lock, so what the transaction
/// reads is what is committed. What a writer (`feast materialize`, or this server's
/// own writes) sees is its commit waiting up to about this long (plus its busy
/// handler's sleep) for the transaction to end: it is ended this long after it began,
/// by a timer on the thread, whether or not reads keep coming, and a writer waiting
/// to commit keeps new transactions from starting. In WAL mode (where a transaction
/// would read a snapshot while writers commit) every read is its own transaction.
const HOLD: Duration = Duration::from_millis(1);

/// Whether the connection's database is in WAL mode (as of its last transaction).
fn journal_is_wal(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("PRAGMA journal_mode")?
        .query_row([], |r| {
            Ok(r.get_ref(0)?
                .as_bytes()
                .is_ok_and(|m| m.eq_ignore_ascii_case(b"wal")))
        })
}

/// Runs a statement without parameters or rows, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// How often a checkout looks at which file the path names.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl SqliteStore {
    /// Opens the store of `project` (one connection now, to fail fast on a bad file),
    /// with a connection for each of `threads` slots (see [`PerThread`])
    /// opened on first use.
    pub(crate) fn open(
        path: &Path,
        project: &str,
        opts: SqliteOptions,
        threads: usize,
    ) -> Result<Self, StoreError> {
        let inner = Inner {
            path: path.to_path_buf(),
            project: project.to_string(),
            local: PerThread::new(threads, || Mutex::new(Local::new())),
            permits: Arc::new(Semaphore::new(opts.pool_size.max(1))),
            opts,
            idle: Mutex::new(Vec::new()),
            file: Mutex::new((FileId::of(path), Instant::now())),
            missing_tables: Mutex::new(HashSet::new()),
            writer: Mutex::new(None),
        };
        let conn = inner.connect()?;
        inner.checkin(conn);
        Ok(SqliteStore {
            inner: Arc::new(inner),
        })
    }
}

#[async_trait::async_trait]
impl OnlineStore for SqliteStore {
    fn type_name(&self) -> &'static str {
        STORE
    }

    fn prepare(
        &self,
        online_name: &str,
        _features: &[String],
    ) -> Box<dyn std::any::Any + Send + Sync> {
        Box::new(Target::new(format!("{}_{online_name}", self.inner.project)))
    }

    /// Reads every batch with one query per view, on a pooled connection.
    async fn read(&self, batches: Vec<ReadBatch>) -> Result<Vec<ViewRows>, StoreError> {
        let keys: usize = batches.iter().map(|b| b.keys.len()).sum();
        if keys <= INLINE_MAX_KEYS {
            match self.inner.read_on_thread(&batches) {
                Err(e) if e.is_unavailable() => {} // locked by a writer: wait off the runtime
                Ok(OnThread {
                    rows,
                    held: Some(slot),
                }) => {
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(HOLD).await;
                        inner.release_held(slot);
                    });
                    return Ok(rows);
                }
                done => return done.map(|d| d.rows),
            }
        }
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("reader pool closed"))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner.read_now(&batches, inner.opts.busy_timeout)
        })
        .await
        .map_err(|e| StoreError::Failed {
            store: STORE,
            reason: format!("reader task failed: {e}"),
        })?
    }

    /// Writes every batch in one transaction, on the blocking pool.
    async fn write(&self, batches: Vec<WriteBatch>) -> Result<WriteOutcome, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.write_now(&batches))
            .await
            .map_err(|e| StoreError::Failed {
                store: STORE,
                reason: format!("writer task failed: {e}"),
            })?
    }

    /// Checks that the database can be queried.
    async fn ping(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.checkout()?;
            let r = conn
                .conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .map_err(|e| classify(&e));
            inner.checkin(conn);
            r
        })
        .await
        .map_err(|e| unavailable(&e.to_string()))?
    }
}

/// A read made on the calling thread, and the slot whose connection now holds a
/// transaction that needs a timer to end it.
struct OnThread {
    rows: Vec<ViewRows>,
    held: Option<usize>,
}

impl OnThread {
    fn done(rows: Vec<ViewRows>) -> Self {
        OnThread { rows, held: None }
    }
}

fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable {
        store: STORE,
        reason: reason.to_string(),
    }
}

fn classify(e: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            unavailable(&e.to_string())
        }
        _ => StoreError::Failed {
            store: STORE,
            reason: e.to_string(),
        },
    }
}

impl Inner {
    fn connect(&self) -> Result<Pooled, StoreError> {
        // Looked at before opening: if the file is replaced in between, the
        // connection is taken for the old one and opened again at the next checkout.
        let file = FileId::of(&self.path);
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unavailable(&format!("cannot open {}: {e}", self.path.display())))?;
        conn.busy_timeout(self.opts.busy_timeout)
            .map_err(|e| classify(&e))?;
        // Room for the 20 queries of each of a dozen views (see [`Target`]).
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Pooled { conn, file })
    }

    /// The file at `path` now, looked at most every [`FILE_CHECK_INTERVAL`].
    fn current_file(&self) -> Option<FileId> {
        let Ok(mut file) = self.file.lock() else {
            return None;
        };
        if file.1.elapsed() >= FILE_CHECK_INTERVAL {
            let now = FileId::of(&self.path);
            if now != file.0 {
                tracing::info!(path = %self.path.display(), "the online store file was replaced; reopening");
                if let Ok(mut missing) = self.missing_tables.lock() {
                    missing.clear();
                }
            }
            *file = (now, Instant::now());
        }
        file.0
    }

    /// An idle connection to the current file, or a new one.
    fn checkout(&self) -> Result<Pooled, StoreError> {
        let current = self.current_file();
        loop {
            let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match pooled {
                // A connection to a replaced file is closed.
                Some(p) if p.file != current && current.is_some() => continue,
                Some(c) => return Ok(c),
                None => return self.connect(),
            }
        }
    }

    fn checkin(&self, conn: Pooled) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// The read-write connection to the current file (opened, in WAL mode, when
    /// there is none or the file was replaced).
    fn open_writer(&self, slot: &mut Option<Pooled>) -> Result<(), StoreError> {
        let current = self.current_file();
        if slot
            .as_ref()
            .is_some_and(|w| w.file == current || current.is_none())
        {
            return Ok(());
        }
        *slot = None;
        let file = FileId::of(&self.path);
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            unavailable(&format!(
                "cannot open {} for writing: {e}",
                self.path.display()
            ))
        })?;
        conn.busy_timeout(self.opts.busy_timeout)
            .map_err(|e| classify(&e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| classify(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), %mode, "the online store cannot use WAL; readers wait for writers");
        }
        // In WAL mode NORMAL syncs at checkpoints: a commit survives a crash of this
        // process; the last commits may be lost only with the machine's power.
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(|e| classify(&e))?;
        conn.set_prepared_statement_cache_capacity(64);
        *slot = Some(Pooled { conn, file });
        Ok(())
    }

    /// Writes every batch in one transaction: Feast's upsert per (row, feature).
    fn write_now(&self, batches: &[WriteBatch]) -> Result<WriteOutcome, StoreError> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| unavailable("the writer connection was poisoned"))?;
        self.open_writer(&mut writer)?;
        #[expect(
            clippy::expect_used,
            reason = "open_writer leaves a connection or fails"
        )]
        let conn = &mut writer.as_mut().expect("an open writer").conn;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&e))?;
        let mut written = 0;
        for batch in batches {
            let target = &batch.target;
            let table = &target.prepared::<Target>().table;
            let sql = upsert_sql(table);
            let mut stmt = match tx.prepare_cached(&sql) {
                Err(e) if is_missing_table(&e) => {
                    tx.execute_batch(&create_table_sql(table))
                        .map_err(|e| classify(&e))?;
                    tracing::info!(%table, view = %target.view, "created the online table Feast's apply creates");
                    tx.prepare_cached(&sql).map_err(|e| classify(&e))?
                }
                other => other.map_err(|e| classify(&e))?,
            };
            for row in &batch.rows {
                let event = row.event_time.seconds_toward_zero();
                let created = row.created.map(EventTime::seconds_toward_zero);
                for (feature, value) in target.features.iter().zip(&row.values) {
                    stmt.execute(rusqlite::params![
                        row.entity_key,
                        feature,
                        value.bytes,
                        value.text,
                        event,
                        created
                    ])
                    .map_err(|e| classify(&e))?;
                }
                written += 1;
            }
        }
        tx.commit().map_err(|e| classify(&e))?;
        if let Ok(mut missing) = self.missing_tables.lock() {
            missing.clear();
        }
        Ok(WriteOutcome {
            written,
            skipped: 0,
        })
    }

    /// Reads on the calling thread with its own connection, without waiting for
    /// locks (with a pooled one when that connection is in use, on a thread that is
    /// not a serving thread), in the transaction the connection holds (see [`HOLD`]).
    fn read_on_thread(&self, batches: &[ReadBatch]) -> Result<OnThread, StoreError> {
        let (slot_no, local) = self.local.mine();
        let Ok(mut local) = local.try_lock() else {
            return self.read_now(batches, Duration::ZERO).map(OnThread::done);
        };
        let local = &mut *local;
        // One clock read serves every age check of this read.
        let now = Instant::now();
        let age = |t: Instant| now.saturating_duration_since(t);
        if local.checked.is_none_or(|t| age(t) >= FILE_CHECK_INTERVAL) {
            let current = self.current_file();
            if local
                .conn
                .as_ref()
                .is_some_and(|c| c.file != current && current.is_some())
            {
                local.close(); // a connection to a replaced file is closed
            }
            local.checked = Some(now);
        }
        if local.held.is_some_and(|t| age(t) >= HOLD) {
            local.release(); // its timer is late: a busy thread
        }
        if local.conn.is_none() {
            let c = self.connect()?;
            c.conn
                .busy_timeout(Duration::ZERO)
                .map_err(|e| classify(&e))?;
            local.conn = Some(c);
        }
        #[expect(clippy::expect_used, reason = "connected just above")]
        let conn = &local.conn.as_ref().expect("a connection").conn;
        let wal = local.wal_seen.is_some_and(|t| age(t) < FILE_CHECK_INTERVAL);
        let begins = !wal && local.held.is_none();
        if begins {
            run_cached(conn, "BEGIN").map_err(|e| classify(&e))?;
            local.held = Some(now);
        }
        let read = batches
            .iter()
            .map(|b| self.read_view(conn, b))
            .collect::<Result<Vec<_>, _>>();
        let rows = match read {
            Ok(rows) => rows,
            Err(e) => {
                local.release();
                return Err(e);
            }
        };
        if !begins {
            return Ok(OnThread::done(rows));
        }
        // A new transaction: held, unless the file is in WAL mode.
        match journal_is_wal(conn) {
            Ok(false) => {
                local.wal_seen = None;
                let schedule = !std::mem::replace(&mut local.release_scheduled, true);
                Ok(OnThread {
                    rows,
                    held: schedule.then_some(slot_no),
                })
            }
            Ok(true) => {
                local.wal_seen = Some(now);
                local.release();
                Ok(OnThread::done(rows))
            }
            Err(e) => {
                local.release();
                Err(classify(&e))
            }
        }
    }

    /// Ends the transaction held by the connection of `slot` (its timer's task).
    fn release_held(&self, slot: usize) {
        if let Some(Ok(mut local)) = self.local.at(slot).map(Mutex::lock) {
            local.release_scheduled = false;
            local.release();
        }
    }

    /// Reads on the calling thread with a pooled connection, waiting at most
    /// `busy_timeout` for locks.
    fn read_now(
        &self,
        batches: &[ReadBatch],
        busy_timeout: Duration,
    ) -> Result<Vec<ViewRows>, StoreError> {
        let conn = self.checkout()?;
        if let Err(e) = conn.conn.busy_timeout(busy_timeout) {
            self.checkin(conn);
            return Err(classify(&e));
        }
        let result = batches
            .iter()
            .map(|b| self.read_view(&conn.conn, b))
            .collect::<Result<Vec<_>, _>>();
        self.checkin(conn);
        result
    }

    fn read_view(&self, conn: &Connection, batch: &ReadBatch) -> Result<ViewRows, StoreError> {
        let target = &batch.target;
        let mut rows = ViewRows::empty(batch.keys.len(), target.features.len());
        for (chunk_no, chunk) in batch.keys.chunks(MAX_KEYS_PER_QUERY).enumerate() {
            let base = chunk_no * MAX_KEYS_PER_QUERY;
            let padded = query_keys(chunk.len());
            let prepared = target.prepared::<Target>();
            let table = &prepared.table;
            let mut stmt = match conn.prepare_cached(prepared.select(padded)) {
                Ok(s) => s,
                Err(e) if is_missing_table(&e) => {
                    self.note_missing_table(table, target);
                    return Ok(rows);
                }
                Err(e) => return Err(classify(&e)),
            };
            // An `IN` list's padding keys repeat its last key.
            let params = (0..padded).map(|i| chunk.get(i).or(chunk.last()).map(Vec::as_slice));
            let mut result = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(|e| classify(&e))?;
            let mut keys = KeyIndex::new(chunk);
            let mut times = TimeText::default();
            while let Some(row) = result.next().map_err(|e| classify(&e))? {
                let (ValueRef::Blob(ek), ValueRef::Text(name)) = (
                    row.get_ref(0).map_err(|e| classify(&e))?,
                    row.get_ref(1).map_err(|e| classify(&e))?,
                ) else {
                    continue;
                };
                let Some(key_idx) = keys.find(ek) else {
                    continue;
                };
                let Some(slot) = target.slot(name) else {
                    continue;
                };
                let corrupt = |reason: String| StoreError::Corrupt {
                    store: STORE,
                    view: target.view.clone(),
                    feature: target.features[slot].clone(),
                    reason,
                };
                let value = match row.get_ref(2).map_err(|e| classify(&e))? {
                    ValueRef::Blob(b) => decode_stored(b).map_err(|e| corrupt(e.to_string()))?,
                    _ => Value::default(),
                };
                let event_time = match row.get_ref(3).map_err(|e| classify(&e))? {
                    ValueRef::Integer(s) => Some(EventTime::from_secs(s)),
                    ValueRef::Real(f) => Some(EventTime::from_secs_f64(f)),
                    ValueRef::Text(t) => times.parse(t),
                    ValueRef::Null | ValueRef::Blob(_) => None,
                }
                .ok_or_else(|| corrupt("event_ts is not a date and time".into()))?;
                rows.set(base + key_idx, slot, Cell { value, event_time });
            }
        }
        Ok(rows)
    }

    fn note_missing_table(&self, table: &str, target: &ViewTarget) {
        let first = self
            .missing_tables
            .lock()
            .map(|mut s| s.insert(table.to_string()))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                table = %table,
                view = %target.view,
                "online table does not exist (the view was never materialized); its features read as NOT_FOUND"
            );
        }
    }
}

/// Which of a query's keys a returned row is for. SQLite looks each key up in an
/// index, so a key's rows mostly come together and the last key found is tried
/// first; otherwise a few keys are searched in order, more through a map.
struct KeyIndex<'a> {
    keys: &'a [Vec<u8>],
    last: usize,
    map: Option<HashMap<&'a [u8], usize>>,
}

impl<'a> KeyIndex<'a> {
    /// Keys searched in order, without a map.
    const SCANNED: usize = 16;

    fn new(keys: &'a [Vec<u8>]) -> Self {
        let map = (keys.len() > Self::SCANNED).then(|| {
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_slice(), i))
                .collect()
        });
        KeyIndex { keys, last: 0, map }
    }

    fn find(&mut self, key: &[u8]) -> Option<usize> {
        if self.keys.get(self.last).is_some_and(|k| same_key(k, key)) {
            return Some(self.last);
        }
        let found = match &self.map {
            Some(map) => map.get(key).copied(),
            None => self.keys.iter().position(|k| same_key(k, key)),
        }?;
        self.last = found;
        Some(found)
    }
}

/// `event_ts` text parsed once for each run of rows that repeat it (a key's
/// features are mostly written together).
#[derive(Default)]
struct TimeText {
    text: Vec<u8>,
    time: Option<EventTime>,
}

impl TimeText {
    fn parse(&mut self, text: &[u8]) -> Option<EventTime> {
        if self.time.is_none() || self.text != text {
            self.time = std::str::from_utf8(text)
                .ok()
                .and_then(EventTime::parse_datetime);
            self.text.clear();
            self.text.extend_from_slice(text);
        }
        self.time
    }
}

fn is_missing_table(e: &rusqlite::Error) -> bool {
    e.to_string().contains("no such table")
}

/// `"name"` with inner quotes doubled.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Feast 0.67's upsert (`SqliteOnlineStore.online_write_batch`, default config).
fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {} (entity_key, feature_name, value, value_text, event_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;",
        quoted(table)
    )
}

/// The table and index Feast's `FeatureStore.apply()` creates (`SqliteOnlineStore.update`).
fn create_table_sql(table: &str) -> String {
    let t = quoted(table);
    let index = quoted(&format!("{table}_ek"));
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, vector_value BLOB, event_ts timestamp, created_ts timestamp,  PRIMARY KEY(entity_key, feature_name)); CREATE INDEX IF NOT EXISTS {index} ON {t} (entity_key);"
    )
}

/// Largest key count read with one lookup per key rather than an `IN` list.
const LOOKUPS_MAX_KEYS: usize = 16;

/// The query of `keys` keys. A few keys are read with one indexed lookup each, joined
/// by `UNION ALL`: SQLite builds a temporary index of an `IN` list on every run, which
/// costs more than it saves for a few keys (measured on Feast's schema: 7.2 rather
/// than 8.1 us for 5 keys of 6 rows each). More keys are an `IN` list (a padding key
/// repeats a key), which opens the table once where lookups would open it for every
/// key.
fn select_sql(table: &str, keys: usize) -> String {
    let select = format!(
        "SELECT entity_key, feature_name, value, event_ts FROM {} WHERE entity_key",
        quoted(table)
    );
    if keys <= LOOKUPS_MAX_KEYS {
        return vec![format!("{select} = ?"); keys].join(" UNION ALL ");
    }
    let mut sql = String::with_capacity(select.len() + 6 + keys * 2);
    sql.push_str(&select);
    sql.push_str(" IN (?");
    for _ in 1..keys {
        sql.push_str(",?");
    }
    sql.push(')');
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online_store::{WriteRow, WriteValue, sqlite_at};
    use crate::value::Val;
    use prost::Message;

    #[tokio::test]
    async fn reads_of_any_key_count_find_each_stored_key_and_no_other() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("online.db");
        Connection::open(&path).expect("a new database");
        let store = sqlite_at(&path);
        let target = Arc::new(store.target("v", "v", vec!["f".into()]));
        let key = |i: usize| format!("key-{i:03}").into_bytes();
        let value = |i: usize| Value {
            val: Some(Val::Int64Val(i as i64)),
        };
        let rows = (0..600)
            .map(|i| WriteRow {
                entity_key: key(i),
                values: vec![WriteValue {
                    bytes: value(i).encode_to_vec(),
                    text: Some(i.to_string()),
                }],
                event_time: EventTime::from_secs(1_000),
                created: None,
            })
            .collect();
        store
            .write(vec![WriteBatch {
                target: target.clone(),
                rows,
            }])
            .await
            .expect("written");
        // Lookups, `IN` lists and more keys than one query takes; every third key absent.
        for n in [1, 2, 3, 5, 10, 16, 17, 32, 40, MAX_KEYS_PER_QUERY + 7, 600] {
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|i| match i % 3 {
                    2 => format!("absent-{i}").into_bytes(),
                    _ => key(i),
                })
                .collect();
            let read = store
                .read(vec![ReadBatch {
                    target: target.clone(),
                    keys,
                }])
                .await
                .expect("read");
            for i in 0..n {
                let got = read[0].get(i, 0).map(|c| c.value.clone());
                let expected = (i % 3 != 2).then(|| value(i));
                assert_eq!(got, expected, "{n} keys, key {i}");
            }
        }
    }

    #[test]
    fn rows_find_their_key_whether_scanned_or_mapped() {
        for n in [1, 3, KeyIndex::SCANNED + 4] {
            let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("key-{i}").into_bytes()).collect();
            let mut index = KeyIndex::new(&keys);
            // Grouped rows, then a key seen before, then one not asked for.
            for i in (0..n).chain([0, n - 1]) {
                assert_eq!(index.find(&keys[i]), Some(i), "{n} keys, key {i}");
                assert_eq!(index.find(&keys[i]), Some(i));
            }
            assert_eq!(index.find(b"other"), None);
            assert_eq!(index.find(&keys[n - 1]), Some(n - 1));
        }
    }

    #[test]
    fn repeated_event_times_parse_as_the_first() {
        let mut times = TimeText::default();
        let a = b"2021-04-12 10:59:42";
        let b = b"2021-04-12 10:59:43.5";
        let parsed = |t: &[u8]| EventTime::parse_datetime(std::str::from_utf8(t).expect("utf8"));
        assert_eq!(times.parse(a), parsed(a));
        assert_eq!(times.parse(a), parsed(a));
        assert_eq!(times.parse(b), parsed(b));
        assert_ne!(times.parse(b), times.parse(a));
        assert_eq!(times.parse(b"not a time"), None);
        assert_eq!(times.parse(a), parsed(a));
    }
}
