//! Parquet files on disk, never half-written where a reader looks.
//!
//! Layout, for a file destination `<dest>` (Feast's `file_destination.path`,
//! relative to the repo):
//!
//! ```text
//! <dest>/<uuid>-<i>.parquet                     flushed logs (what Feast reads)
//! <dest>/<p1>/<p2>/<uuid>-<i>.parquet           the same with partition_by [p1, p2]
//! <dest>/.feast-server-logging/<service>/
//!     staged/[<p1>/...]/<time>-<uuid>.arrow     written, waiting for the next flush
//!     flushing-<uuid>/...                       being flushed (a renamed `staged/`)
//! ```
//!
//! Staged files are Arrow IPC files (the batches as they are in memory, no
//! encoding); a flush encodes them once, as Parquet. Staged Parquet files (written
//! by earlier versions) are published the same way.
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

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

/// Rows per row group of published files.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Extension of staged files (Arrow IPC file format).
const STAGED_EXT: &str = "arrow";
/// Rows per batch read back while merging.
const READ_BATCH_ROWS: usize = 8 * 1024;

/// A file operation of the log writer that failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum FileError {
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
    /// Arrow data (an IPC file, batches read back) did not write or read.
    #[error("{path}: {source}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ArrowError,
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

fn arrow_err(path: &Path) -> impl FnOnce(ArrowError) -> FileError + '_ {
    move |source| FileError::Arrow {
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

/// A fresh random id as 32 hex digits (how Feast names its files: `uuid4().hex`).
pub(super) fn new_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).simple().to_string()
}

/// Writes a file at `path` through a temporary name in the same directory: `fill`
/// writes the temporary file (given with its path) and returns it with the rows it
/// holds; it is synced, then renamed. Returns the rows.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(File, &Path) -> Result<(File, usize), FileError>,
) -> Result<usize, FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = File::create(&tmp)
        .map_err(io_err(&tmp))
        .and_then(|file| fill(file, &tmp))
        .and_then(|(file, rows)| file.sync_all().map_err(io_err(&tmp)).map(|()| rows));
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir);
    Ok(rows)
}

/// [`write_atomically`] for a Parquet file; `fill` writes the batches and returns
/// their rows.
fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    props: WriterProperties,
    fill: impl FnOnce(&mut ArrowWriter<File>) -> Result<usize, FileError>,
) -> Result<usize, FileError> {
    write_atomically(path, |file, tmp| {
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq_err(tmp))?;
        let rows = fill(&mut writer)?;
        let file = writer.into_inner().map_err(pq_err(tmp))?;
        Ok((file, rows))
    })
}

/// A staged file, Arrow IPC or (from earlier versions) Parquet, as a batch reader.
fn open_staged(path: &Path) -> Result<Box<dyn RecordBatchReader>, FileError> {
    let file = File::open(path).map_err(io_err(path))?;
    if path.extension().is_some_and(|e| e == STAGED_EXT) {
        let reader = FileReader::try_new_buffered(file, None).map_err(arrow_err(path))?;
        Ok(Box::new(reader))
    } else {
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(READ_BATCH_ROWS).build())
            .map_err(pq_err(path))?;
        Ok(Box::new(reader))
    }
}

/// Makes a rename durable (best effort: not every filesystem supports it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes batches (one schema) as a staged file of a partition; returns its path.
pub(super) fn write_staged(
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
    let path = dir.join(format!("{nanos:020}-{}.{STAGED_EXT}", new_id()));
    write_atomically(&path, |file, tmp| {
        let mut writer = FileWriter::try_new_buffered(file, &schema).map_err(arrow_err(tmp))?;
        for b in batches {
            writer.write(b).map_err(arrow_err(tmp))?;
        }
        writer.finish().map_err(arrow_err(tmp))?;
        let file = writer
            .into_inner()
            .map_err(arrow_err(tmp))?
            .into_inner()
            .map_err(|e| io_err(tmp)(e.into_error()))?;
        Ok((file, batches.iter().map(RecordBatch::num_rows).sum()))
    })?;
    Ok(path)
}

/// What a flush published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Published {
    /// Files written into the destination.
    pub files: usize,
    /// Rows in them.
    pub rows: usize,
}

/// The quick first step of a flush: renames `staged/` to `flushing-<uuid>/`, after
/// which new writes go to a new `staged/`. Call it where staged files are written
/// (so no write is under way), and publish from anywhere.
pub(super) fn begin_flush(staging: &Path) -> Result<(), FileError> {
    let staged = staging.join("staged");
    if staged.is_dir() {
        let target = staging.join(format!("flushing-{}", new_id()));
        std::fs::rename(&staged, &target).map_err(io_err(&staged))?;
    }
    Ok(())
}

/// The slow second step of a flush: publishes every `flushing-` directory of
/// `staging` into `destination`, then deletes it. Calls for one `staging` must not
/// overlap.
pub(super) fn publish_flushing(staging: &Path, destination: &Path) -> Result<Published, FileError> {
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

/// Staged files under `root`, by partition directory (relative), sorted.
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
            } else if !name.starts_with('.')
                && (name.ends_with(".parquet") || name.ends_with(&format!(".{STAGED_EXT}")))
            {
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
            let schema = match open_staged(&f) {
                Ok(r) => r.schema(),
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
            let rows = write_parquet(&out, schema, published_props(), |w| {
                let mut rows = 0;
                for f in &group {
                    for batch in open_staged(f)? {
                        let batch = batch.map_err(arrow_err(f))?;
                        w.write(&batch).map_err(pq_err(f))?;
                        rows += batch.num_rows();
                    }
                }
                Ok(rows)
            })?;
            published.files += 1;
            published.rows += rows;
        }
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    /// Publishes everything staged under `staging` into `destination`.
    fn flush(staging: &Path, destination: &Path) -> Result<Published, FileError> {
        begin_flush(staging)?;
        publish_flushing(staging, destination)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("driver_id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    /// Rows `from..from + n`: ids, and a name on even ids only.
    fn batch(from: i64, n: i64) -> RecordBatch {
        let ids = from..from + n;
        let names = ids.clone().map(|i| (i % 2 == 0).then(|| format!("v{i}")));
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(StringArray::from_iter(names)),
            ],
        )
        .expect("batch")
    }

    /// The rows of batches as (id, name) pairs.
    fn rows(batches: &[RecordBatch]) -> Vec<(i64, Option<String>)> {
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>();
            let names = b.column(1).as_any().downcast_ref::<StringArray>();
            let (ids, names) = (ids.expect("ids"), names.expect("names"));
            for i in 0..b.num_rows() {
                let name = names.is_valid(i).then(|| names.value(i).to_string());
                out.push((ids.value(i), name));
            }
        }
        out
    }

    /// The rows of each published Parquet file directly in `dir`.
    fn published(dir: &Path) -> Vec<Vec<(i64, Option<String>)>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let batches: Vec<RecordBatch> = open_staged(f)
                    .expect("parquet")
                    .collect::<Result<_, _>>()
                    .expect("batches");
                rows(&batches)
            })
            .collect()
    }

    #[test]
    fn staged_arrow_files_are_published_as_one_parquet_file_per_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join(".feast-server-logging").join("svc");
        let first = write_staged(&staging, "", schema(), &[batch(0, 100)]).expect("write");
        write_staged(&staging, "", schema(), &[batch(100, 50), batch(150, 25)]).expect("write");
        write_staged(&staging, "day=1", schema(), &[batch(1000, 10)]).expect("write");

        // Staged files are whole Arrow IPC files, under their final names only.
        assert_eq!(first.extension().and_then(|e| e.to_str()), Some("arrow"));
        let staged: Vec<RecordBatch> = open_staged(&first)
            .expect("ipc")
            .collect::<Result<_, _>>()
            .expect("batches");
        assert_eq!(staged, vec![batch(0, 100)]);

        let p = flush(&staging, dir.path()).expect("flush");
        assert_eq!(
            p,
            Published {
                files: 2,
                rows: 185
            }
        );
        assert_eq!(published(dir.path()), vec![rows(&[batch(0, 175)])]);
        assert_eq!(
            published(&dir.path().join("day=1")),
            vec![rows(&[batch(1000, 10)])]
        );
        assert!(staged_files(&staging).expect("list").is_empty());
        assert_eq!(
            flush(&staging, dir.path()).expect("flush"),
            Published::default()
        );
    }

    #[test]
    fn parquet_files_staged_by_earlier_versions_are_published_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = dir.path().join(".feast-server-logging").join("svc");
        let old = staging
            .join("staged")
            .join("00000000000000000001-old.parquet");
        let props = WriterProperties::builder().build();
        write_parquet(&old, schema(), props, |w| {
            w.write(&batch(0, 20)).map_err(pq_err(Path::new("old")))?;
            Ok(20)
        })
        .expect("old staged file");
        write_staged(&staging, "", schema(), &[batch(20, 5)]).expect("write");

        let p = flush(&staging, dir.path()).expect("flush");
        assert_eq!(p, Published { files: 1, rows: 25 });
        assert_eq!(published(dir.path()), vec![rows(&[batch(0, 25)])]);
    }
}
