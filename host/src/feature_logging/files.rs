//! Parquet files on disk, never half-written where a reader looks.
//!
//! Layout, for a file destination `<dest>` (Feast's `file_destination.path`,
//! relative to the repo):
//!
//! ```text
//! <dest>/<uuid>-<i>.parquet                     flushed logs (what Feast reads)
//! <dest>/<p1>/<p2>/<uuid>-<i>.parquet           the same with partition_by [p1, p2]
//! <dest>/.feast-server-logging/<service>/
//!     staged/[<p1>/...]/<time>-<uuid>.parquet   written, waiting for the next flush
//!     flushing-<uuid>/...                       being flushed (a renamed `staged/`)
//! ```
//!
//! Every file is written under a dot-prefixed temporary name in its final
//! directory, synced, then renamed, so a reader sees whole files or nothing.
//! A flush renames `staged/` to `flushing-<uuid>/` (one atomic step), merges the
//! files of each partition and schema into `<dest>/.../<uuid>-<i>.parquet`, and
//! only then deletes the `flushing-` directory; an output that already exists is
//! not written again, so a flush interrupted at any point is finished by the next
//! one (at the latest when the server starts again), without loss or duplicates.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

/// Rows per row group of written files.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per batch read back while merging.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// A file operation of the log writer that failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A filesystem call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Parquet encoding or decoding failed.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ParquetError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq_err(path: &Path) -> impl FnOnce(ParquetError) -> FileError + '_ {
    move |source| FileError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// Published files: Snappy and dictionaries, as pyarrow writes by default.
fn published_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Staged files live until the next flush re-encodes them: cheapest encoding.
fn staged_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// A fresh random id as 32 hex digits (how Feast names its files: `uuid4().hex`).
pub fn new_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).simple().to_string()
}

/// Writes a Parquet file at `path` through a temporary name in the same directory;
/// `fill` writes the batches. Returns the rows written.
fn write_atomically(
    path: &Path,
    schema: SchemaRef,
    props: WriterProperties,
    fill: impl FnOnce(&mut ArrowWriter<File>) -> Result<(), FileError>,
) -> Result<usize, FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq_err(&tmp))?;
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(pq_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let rows = parquet_rows(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir);
    Ok(rows)
}

fn parquet_rows(path: &Path) -> Result<usize, FileError> {
    let file = File::open(path).map_err(io_err(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq_err(path))?;
    Ok(usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// Makes a rename durable (best effort: not every filesystem supports it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes batches (one schema) as a staged file of a partition; returns its path.
pub fn write_staged(
    staging: &Path,
    partition: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<PathBuf, FileError> {
    let mut dir = staging.join("staged");
    if !partition.is_empty() {
        dir.push(partition);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("{nanos:020}-{}.parquet", new_id()));
    write_atomically(&path, schema, staged_props(), |w| {
        for b in batches {
            w.write(b).map_err(pq_err(&path))?;
        }
        Ok(())
    })?;
    Ok(path)
}

/// What a flush published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Files written into the destination.
    pub files: usize,
    /// Rows in them.
    pub rows: usize,
}

/// Publishes everything staged under `staging` into `destination`.
pub fn flush(staging: &Path, destination: &Path) -> Result<Published, FileError> {
    let staged = staging.join("staged");
    if staged.is_dir() {
        let target = staging.join(format!("flushing-{}", new_id()));
        std::fs::rename(&staged, &target).map_err(io_err(&staged))?;
    }
    let mut pending: Vec<PathBuf> = match std::fs::read_dir(staging) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("flushing-"))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(staging)(e)),
    };
    pending.sort();
    let mut total = Published::default();
    for dir in pending {
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("flushing-"))
            .unwrap_or("0")
            .to_string();
        let p = publish(&dir, destination, &id)?;
        total.files += p.files;
        total.rows += p.rows;
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    Ok(total)
}

/// Staged Parquet files under `root`, by partition directory (relative), sorted.
fn staged_files(root: &Path) -> Result<BTreeMap<PathBuf, Vec<PathBuf>>, FileError> {
    let mut out: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                todo.push(path);
            } else if !name.starts_with('.') && name.ends_with(".parquet") {
                let rel = dir
                    .strip_prefix(root)
                    .unwrap_or(Path::new(""))
                    .to_path_buf();
                out.entry(rel).or_default().push(path);
            }
        }
    }
    for files in out.values_mut() {
        files.sort();
    }
    Ok(out)
}

/// Merges a `flushing-<id>` directory into the destination: per partition, one file
/// per schema, `<id>-<i>.parquet`; outputs that exist already are kept.
fn publish(dir: &Path, destination: &Path, id: &str) -> Result<Published, FileError> {
    let mut published = Published::default();
    for (rel, files) in staged_files(dir)? {
        // Group by schema, in order of each group's first file.
        let mut groups: Vec<(SchemaRef, Vec<PathBuf>)> = Vec::new();
        for f in files {
            let file = File::open(&f).map_err(io_err(&f))?;
            let schema = match ParquetRecordBatchReaderBuilder::try_new(file) {
                Ok(b) => b.schema().clone(),
                Err(e) => {
                    // Only whole files are ever staged; one that does not read is
                    // reported and left out rather than blocking every later flush.
                    tracing::error!(file = %f.display(), error = %e, "feature logging: skipping an unreadable staged file");
                    continue;
                }
            };
            match groups.iter_mut().find(|(s, _)| *s == schema) {
                Some((_, g)) => g.push(f),
                None => groups.push((schema, vec![f])),
            }
        }
        let out_dir = destination.join(&rel);
        for (i, (schema, group)) in groups.into_iter().enumerate() {
            let out = out_dir.join(format!("{id}-{i}.parquet"));
            if out.exists() {
                continue;
            }
            let rows = write_atomically(&out, schema, published_props(), |w| {
                for f in &group {
                    let file = File::open(f).map_err(io_err(f))?;
                    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(pq_err(f))?
                        .with_batch_size(READ_BATCH_ROWS)
                        .build()
                        .map_err(pq_err(f))?;
                    for batch in reader {
                        let batch = batch.map_err(|e| pq_err(f)(ParquetError::from(e)))?;
                        w.write(&batch).map_err(pq_err(f))?;
                    }
                }
                Ok(())
            })?;
            published.files += 1;
            published.rows += rows;
        }
    }
    Ok(published)
}
