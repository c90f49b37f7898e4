//! A test-only plugin that misbehaves on demand: each ODFV it declares (`evil_*`,
//! with the inputs and outputs of the demo's `transformed_conv_rate`) does one bad
//! thing, so the host's sandbox and output checks can be tested one by one;
//! `evil_ok` behaves.

use std::sync::Arc;

use feast_plugin_sdk::arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use feast_plugin_sdk::{ColumnType, Odfv, Plugin, PluginError, batch};

fn odfv(name: &str, f: fn(&RecordBatch) -> Result<RecordBatch, PluginError>) -> Odfv {
    Odfv::new(name, f)
        .input("conv_rate", ColumnType::Float32)
        .input("val_to_add", ColumnType::Int64)
        .input("val_to_add_2", ColumnType::Int64)
        .output("conv_rate_plus_val1", ColumnType::Float64)
        .output("conv_rate_plus_val2", ColumnType::Float64)
}

fn ipc(name: &str, f: fn(&[u8]) -> Result<Vec<u8>, PluginError>) -> Odfv {
    Odfv::new_ipc(name, f)
        .input("conv_rate", ColumnType::Float32)
        .output("conv_rate_plus_val1", ColumnType::Float64)
        .output("conv_rate_plus_val2", ColumnType::Float64)
}

fn ones(rows: usize) -> Result<RecordBatch, PluginError> {
    let v = Arc::new(Float64Array::from(vec![1.0; rows])) as ArrayRef;
    batch([
        ("conv_rate_plus_val1", v.clone()),
        ("conv_rate_plus_val2", v),
    ])
}

fn well_behaved(input: &RecordBatch) -> Result<RecordBatch, PluginError> {
    ones(input.num_rows())
}

fn infinite_loop(_: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn memory_bomb(input: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![7u8; 8 << 20]);
        if std::hint::black_box(hoard.len()) == usize::MAX {
            return ones(input.num_rows());
        }
    }
}

fn recurse(n: u64) -> u64 {
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    recurse(n + 1).wrapping_add(std::hint::black_box(1))
}

fn deep_recursion(input: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let _ = recurse(0);
    ones(input.num_rows())
}

fn panics(_: &RecordBatch) -> Result<RecordBatch, PluginError> {
    panic!("evil plugin panics on purpose");
}

/// Reports whether a capability the host should deny was available.
fn denied<T, E: std::fmt::Display>(
    what: &str,
    r: Result<T, E>,
) -> Result<RecordBatch, PluginError> {
    match r {
        Ok(_) => Err(PluginError::Internal(format!(
            "SANDBOX ESCAPE: {what} succeeded"
        ))),
        Err(e) => Err(PluginError::Internal(format!("denied: {what}: {e}"))),
    }
}

fn read_file(_: &RecordBatch) -> Result<RecordBatch, PluginError> {
    denied("read /etc/passwd", std::fs::read("/etc/passwd"))
}

fn open_socket(_: &RecordBatch) -> Result<RecordBatch, PluginError> {
    denied(
        "connect to 127.0.0.1:22",
        std::net::TcpStream::connect("127.0.0.1:22"),
    )
}

fn read_env(_: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    if vars.is_empty() {
        denied::<(), _>("read the environment", Err("no variables visible"))
    } else {
        denied::<(), String>("read the environment", Ok(()))
    }
}

fn garbage_ipc(_: &[u8]) -> Result<Vec<u8>, PluginError> {
    Ok(b"\xde\xad\xbe\xef this is not Arrow IPC".to_vec())
}

/// Skips the SDK's own output checks, so the host's are exercised.
fn raw(out: Result<RecordBatch, PluginError>) -> Result<Vec<u8>, PluginError> {
    feast_plugin_sdk::encode_batch(&out?)
}

fn wrong_schema(input: &[u8]) -> Result<Vec<u8>, PluginError> {
    let rows = feast_plugin_sdk::decode_batch(input)?.num_rows();
    let s = Arc::new(StringArray::from(vec!["x"; rows])) as ArrayRef;
    raw(batch([
        ("conv_rate_plus_val1", s.clone()),
        ("something_else", s),
    ]))
}

fn oversized_ipc(input: &[u8]) -> Result<Vec<u8>, PluginError> {
    let batch = feast_plugin_sdk::decode_batch(input)?;
    let big = "x".repeat(4 << 20);
    let col = Arc::new(StringArray::from(vec![big.as_str(); batch.num_rows()])) as ArrayRef;
    let out = feast_plugin_sdk::batch([
        ("conv_rate_plus_val1", col.clone()),
        ("conv_rate_plus_val2", col),
    ])?;
    feast_plugin_sdk::encode_batch(&out)
}

fn wrong_rows(input: &[u8]) -> Result<Vec<u8>, PluginError> {
    raw(ones(feast_plugin_sdk::decode_batch(input)?.num_rows() + 1))
}

fn guest_error(_: &RecordBatch) -> Result<RecordBatch, PluginError> {
    Err(PluginError::InvalidInput(
        "evil plugin rejects its input".into(),
    ))
}

/// The plugin description.
pub fn plugin() -> Plugin {
    // The first ODFV behaves: the host's trial call at load time uses it.
    Plugin::new("evil", "0.0.1")
        .odfv(odfv("evil_ok", well_behaved))
        .odfv(odfv("evil_loop", infinite_loop))
        .odfv(odfv("evil_memory", memory_bomb))
        .odfv(odfv("evil_recursion", deep_recursion))
        .odfv(odfv("evil_panic", panics))
        .odfv(odfv("evil_file", read_file))
        .odfv(odfv("evil_socket", open_socket))
        .odfv(odfv("evil_env", read_env))
        .odfv(ipc("evil_garbage", garbage_ipc))
        .odfv(ipc("evil_schema", wrong_schema))
        .odfv(ipc("evil_oversized", oversized_ipc))
        .odfv(ipc("evil_rows", wrong_rows))
        .odfv(odfv("evil_error", guest_error))
}

feast_plugin_sdk::export_plugin!(plugin);
