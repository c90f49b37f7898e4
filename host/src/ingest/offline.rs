//! `POST /push` with `to: offline` (or `online_and_offline`): the rows appended to
//! each view's Parquet file source, as Feast's file offline store does
//! (`offline_write_batch`): the dataframe's columns must be the file's columns, the
//! rows are cast to the file's schema, and the file is rewritten with the new rows
//! first. The new file is written beside the old one and renamed over it, so a
//! reader sees the old file or the new one, never a partial one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value as Json;

use super::rows::Frame;
use crate::error::Error;
use crate::registry::{FeatureView, SourceKind};

/// Rows ready to be appended to one file.
#[derive(Debug)]
pub(super) struct Prepared {
    path: PathBuf,
    schema: SchemaRef,
    rows: RecordBatch,
}

/// A new file written beside the one it replaces.
#[derive(Debug)]
pub(super) struct Staged {
    tmp: PathBuf,
    path: PathBuf,
}

/// The Parquet file a view's batch source names (relative to the repository when
/// the path is relative).
pub(super) fn source_file(view: &FeatureView, repo_dir: &Path) -> Result<PathBuf, Error> {
    let source = view.batch_source.as_ref().ok_or_else(|| {
        Error::WriteUnsupported(format!("feature view {} has no batch source", view.name))
    })?;
    match &source.kind {
        SourceKind::File {
            path,
            parquet: true,
        } => {
            let path = path.strip_prefix("file://").unwrap_or(path);
            if path.contains("://") {
                return Err(Error::WriteUnsupported(format!(
                    "the source of feature view {} is {path}: only local files are read and written",
                    view.name
                )));
            }
            Ok(repo_dir.join(path))
        }
        SourceKind::File { path, .. } => Err(Error::WriteUnsupported(format!(
            "the source of feature view {} ({path}) is not a Parquet file: only Parquet file sources are read and written",
            view.name
        ))),
        SourceKind::Other(kind) => Err(Error::WriteUnsupported(format!(
            "the source of feature view {} is a {kind} source: only Parquet file sources (Feast's file offline store) are read and written",
            view.name
        ))),
    }
}

/// Checks the dataframe against the file and converts its rows to the file's schema.
pub(super) fn prepare(
    view: &FeatureView,
    frame: &Frame<'_>,
    repo_dir: &Path,
) -> Result<Prepared, Error> {
    let path = source_file(view, repo_dir)?;
    let file = std::fs::File::open(&path).map_err(|e| {
        Error::WriteFailed(format!(
            "cannot open {} (the source of feature view {}): {e}",
            path.display(),
            view.name
        ))
    })?;
    let schema = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::WriteFailed(format!("{}: {e}", path.display())))?
        .schema()
        .clone();
    let wanted: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let given = frame.names();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|c| !given.contains(c))
        .copied()
        .collect();
    let extra: Vec<&str> = given
        .iter()
        .filter(|c| !wanted.contains(c))
        .copied()
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(Error::InvalidWrite(format!(
            "the dataframe's columns must be those of {} (the source of feature view {}): missing {missing:?}, unexpected {extra:?}",
            path.display(),
            view.name
        )));
    }
    let records: Vec<serde_json::Map<String, Json>> = (0..frame.rows())
        .map(|row| {
            wanted
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        frame.cell(c, row).cloned().unwrap_or(Json::Null),
                    )
                })
                .collect()
        })
        .collect();
    // The JSON decoder knows UTC only as an offset: decode with "+00:00", then put the
    // file's own time zone names back (the same instants).
    let decode_schema = Arc::new(arrow_schema::Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_data_type(utc_as_offset(f.data_type()))
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ));
    let mut decoder = arrow_json::ReaderBuilder::new(decode_schema)
        .with_batch_size(records.len().max(1))
        .build_decoder()
        .map_err(|e| Error::InvalidWrite(e.to_string()))?;
    let bad = |e: arrow_schema::ArrowError| {
        Error::InvalidWrite(format!(
            "the dataframe does not fit the columns of {}: {e}",
            path.display()
        ))
    };
    decoder.serialize(&records).map_err(bad)?;
    let decoded = decoder
        .flush()
        .map_err(bad)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    let columns = decoded
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| {
            let data = array
                .to_data()
                .into_builder()
                .data_type(field.data_type().clone())
                .build()
                .map_err(bad)?;
            Ok(arrow_array::make_array(data))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let rows = RecordBatch::try_new(schema.clone(), columns).map_err(bad)?;
    Ok(Prepared { path, schema, rows })
}

/// A timestamp type whose time zone is UTC by name, with UTC as an offset instead.
fn utc_as_offset(t: &arrow_schema::DataType) -> arrow_schema::DataType {
    match t {
        arrow_schema::DataType::Timestamp(unit, Some(tz))
            if matches!(tz.as_ref(), "UTC" | "Etc/UTC" | "utc" | "Z") =>
        {
            arrow_schema::DataType::Timestamp(*unit, Some("+00:00".into()))
        }
        other => other.clone(),
    }
}

/// Writes each new file (the new rows, then the file's rows) beside the old one.
pub(super) async fn stage(prepared: Vec<Prepared>) -> Result<Vec<Staged>, Error> {
    if prepared.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || {
        let mut staged = Vec::with_capacity(prepared.len());
        for p in prepared {
            match write_beside(&p) {
                Ok(s) => staged.push(s),
                Err(e) => {
                    discard(staged);
                    return Err(e);
                }
            }
        }
        Ok(staged)
    })
    .await
    .map_err(|e| Error::WriteFailed(format!("the offline writer failed: {e}")))?
}

fn write_beside(p: &Prepared) -> Result<Staged, Error> {
    let failed =
        |e: &dyn std::fmt::Display| Error::WriteFailed(format!("{}: {e}", p.path.display()));
    let file = std::fs::File::open(&p.path).map_err(|e| failed(&e))?;
    let old = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| failed(&e))?
        .build()
        .map_err(|e| failed(&e))?;
    let name = p
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = p
        .path
        .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let out = std::fs::File::create(&tmp).map_err(|e| failed(&e))?;
        let mut writer =
            ArrowWriter::try_new(out, Arc::clone(&p.schema), None).map_err(|e| failed(&e))?;
        writer.write(&p.rows).map_err(|e| failed(&e))?;
        for batch in old {
            writer
                .write(&batch.map_err(|e| failed(&e))?)
                .map_err(|e| failed(&e))?;
        }
        let out = writer.into_inner().map_err(|e| failed(&e))?;
        out.sync_all().map_err(|e| failed(&e))
    })();
    match result {
        Ok(()) => Ok(Staged {
            tmp,
            path: p.path.clone(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Moves every staged file into place.
pub(super) async fn commit(staged: Vec<Staged>) -> Result<(), Error> {
    if staged.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        for s in &staged {
            std::fs::rename(&s.tmp, &s.path)
                .map_err(|e| Error::WriteFailed(format!("{}: {e}", s.path.display())))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::WriteFailed(format!("the offline writer failed: {e}")))?
}

/// Removes staged files (the online write failed).
pub(super) fn discard(staged: Vec<Staged>) {
    for s in staged {
        let _ = std::fs::remove_file(&s.tmp);
    }
}
