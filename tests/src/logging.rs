//! Helpers for the feature logging tests: add a logged feature service to a repo
//! copy's registry, turn logging on in `feature_store.yaml`, read the log files
//! back (published Parquet, staged Arrow IPC), and find the `feast-server` binary.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use feast_server::proto::feast::core::logging_config::{Destination, FileDestination};
use feast_server::proto::feast::core::{
    FeatureService, FeatureServiceSpec, FeatureSpecV2, FeatureViewProjection, LoggingConfig,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::RepoCopy;

/// `Registry.feature_services` field number.
const FEATURE_SERVICES_FIELD: u32 = 7;

/// A feature service to add: `(view, [(feature, value type)])` projections.
pub struct LoggedService<'a> {
    /// Service name.
    pub name: &'a str,
    /// Projections.
    pub projections: Vec<(&'a str, Vec<(&'a str, i32)>)>,
    /// `logging_config.sample_rate`.
    pub sample_rate: f32,
    /// The destination (`None` = a BigQuery destination, which is not served).
    pub file_path: Option<&'a Path>,
    /// `file_destination.partition_by`.
    pub partition_by: Vec<&'a str>,
}

/// Feast's value types used by the tests.
pub mod vt {
    /// INT64.
    pub const INT64: i32 = 4;
    /// DOUBLE.
    pub const DOUBLE: i32 = 5;
    /// FLOAT.
    pub const FLOAT: i32 = 6;
}

/// Adds a feature service to the copy's `data/registry.db`. The service is appended
/// as one more `feature_services` entry to the bytes Feast wrote, so every other
/// field stays exactly as Feast wrote it and Feast itself still reads the registry.
pub fn add_service(repo: &RepoCopy, service: &LoggedService<'_>) {
    let path = repo.path().join("data/registry.db");
    let mut bytes = std::fs::read(&path).expect("registry");
    let destination = match service.file_path {
        Some(p) => Destination::FileDestination(FileDestination {
            path: p.to_string_lossy().into_owned(),
            s3_endpoint_override: String::new(),
            partition_by: service.partition_by.iter().map(|s| s.to_string()).collect(),
        }),
        None => Destination::BigqueryDestination(
            feast_server::proto::feast::core::logging_config::BigQueryDestination {
                table_ref: "project.dataset.logs".into(),
            },
        ),
    };
    let fs = FeatureService {
        spec: Some(FeatureServiceSpec {
            name: service.name.to_string(),
            project: "repo".into(),
            features: service
                .projections
                .iter()
                .map(|(view, features)| FeatureViewProjection {
                    feature_view_name: view.to_string(),
                    feature_columns: features
                        .iter()
                        .map(|(n, t)| FeatureSpecV2 {
                            name: n.to_string(),
                            value_type: *t,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            precompute_online: false,
            tags: Default::default(),
            logging_config: Some(LoggingConfig {
                sample_rate: service.sample_rate,
                destination: Some(destination),
            }),
        }),
    };
    prost::encoding::message::encode(FEATURE_SERVICES_FIELD, &fs, &mut bytes);
    std::fs::write(&path, bytes).expect("write registry");
}

/// The demo `feature_store.yaml` with feature logging on and these knobs.
pub fn enable_logging(
    repo: &RepoCopy,
    write_secs: u64,
    flush_secs: u64,
    capacity: usize,
    emit_us: u64,
) {
    let yaml = std::fs::read_to_string(repo.path().join("feature_store.yaml")).expect("yaml");
    repo.write_config(&format!(
        "{yaml}\nfeature_server:\n  type: local\n  feature_logging:\n    enabled: true\n    write_to_disk_interval_secs: {write_secs}\n    flush_interval_secs: {flush_secs}\n    queue_capacity: {capacity}\n    emit_timeout_micro_secs: {emit_us}\n"
    ));
}

/// Every log file under `dir`: the published `*.parquet` files and, with `hidden`,
/// also the files under dot directories (staged `*.arrow` files).
pub fn log_files(dir: &Path, hidden: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if hidden || !name.starts_with('.') {
                    todo.push(p);
                }
            } else if name.ends_with(".parquet") || (hidden && name.ends_with(".arrow")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a whole log file with the Rust readers: Parquet, or Arrow IPC for
/// `*.arrow`.
pub fn read_log_file(path: &Path) -> Result<Vec<RecordBatch>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if path.extension().is_some_and(|e| e == "arrow") {
        let reader = FileReader::try_new_buffered(file, None).map_err(|e| e.to_string())?;
        return reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string());
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Rows in every log file under `dir` (panics on an unreadable file).
pub fn count_rows(dir: &Path, hidden: bool) -> usize {
    log_files(dir, hidden)
        .iter()
        .map(|f| {
            read_log_file(f)
                .unwrap_or_else(|e| panic!("{} is not a whole log file: {e}", f.display()))
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>()
        })
        .sum()
}

/// The `feast-server` binary of the build running these tests, built if needed
/// (`cargo test` builds the library the tests use, not always the binary). Built with
/// the workspace's features, as `cargo build --workspace` resolves them, so that after
/// `tests/run.sh`'s build nothing compiles again.
pub fn feast_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let mut cmd = crate::cargo();
    cmd.args(["build", "-q", "--workspace", "--bins"])
        .arg("--target-dir")
        .arg(&target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build of feast-server failed");
    let bin = profile_dir.join("feast-server");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}
