//! Write Feast on-demand feature view (ODFV) transformations in Rust and ship them
//! as WebAssembly components that `feast-server` loads, sandboxes and hot-swaps.
//!
//! A plugin is a plain function from an Arrow [`RecordBatch`] of inputs to a batch
//! of outputs, described once with [`Plugin`] and exported with [`export_plugin!`].
//! The SDK does the rest: the WIT bindings (`wit/transformation.wit`), Arrow IPC
//! decoding and encoding, and turning errors into the `plugin-error` the host shows
//! to callers. A panic aborts the call (wasm has no unwinding); its message goes to
//! the host, which reports it and replaces the instance.
//!
//! Custom online stores (the `online-store` world, `wit/online-store.wit`) are
//! written with the [`store`] module and exported with [`export_store!`].
//!
//! The crate also builds natively, so transformations are unit-tested with
//! `cargo test` and built for the server with
//! `cargo build --release --target wasm32-wasip2`.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use feast_plugin_sdk::arrow_array::types::{Float32Type, Int64Type};
//! use feast_plugin_sdk::arrow_array::{Float64Array, RecordBatch};
//! use feast_plugin_sdk::{ColumnType, Odfv, Plugin, PluginError, batch, column};
//!
//! /// conv_rate_plus_val1 = conv_rate + val_to_add (null in, null out).
//! fn plus_val(input: &RecordBatch) -> Result<RecordBatch, PluginError> {
//!     let conv = column::<Float32Type>(input, "conv_rate")?;
//!     let val = column::<Int64Type>(input, "val_to_add")?;
//!     let out: Float64Array = conv
//!         .iter()
//!         .zip(val.iter())
//!         .map(|(c, v)| Some(f64::from(c?) + v? as f64))
//!         .collect();
//!     batch([("conv_rate_plus_val1", Arc::new(out) as _)])
//! }
//!
//! fn plugin() -> Plugin {
//!     Plugin::new("example", "0.1.0").odfv(
//!         Odfv::new("transformed_conv_rate", plus_val)
//!             .input("conv_rate", ColumnType::Float32)
//!             .input("val_to_add", ColumnType::Int64)
//!             .output("conv_rate_plus_val1", ColumnType::Float64),
//!     )
//! }
//!
//! feast_plugin_sdk::export_plugin!(plugin);
//!
//! // Natively, call it as the server would:
//! let input = batch([
//!     ("conv_rate", Arc::new(feast_plugin_sdk::arrow_array::Float32Array::from(vec![Some(0.5), None])) as _),
//!     ("val_to_add", Arc::new(feast_plugin_sdk::arrow_array::Int64Array::from(vec![1, 2])) as _),
//! ])
//! .unwrap();
//! let out = plugin().call("transformed_conv_rate", &input).unwrap();
//! assert_eq!(out.num_rows(), 2);
//! ```

mod flat_ipc;
pub mod ipc;
pub mod row;
pub mod store;

use std::sync::Arc;

pub use arrow_array;
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
pub use arrow_schema;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
pub use ipc::{decode_batch, encode_batch};

/// A function of one row as an on-demand feature view.
///
/// Each argument is an input column, named as the argument; the result is the output,
/// or a tuple of outputs, named by `outputs = "a, b"` (one output defaults to the ODFV's
/// name). Types map to columns as [`row`] lists; an `Option<T>` argument receives
/// nulls, a plain `T` argument makes a row with a null input a row of null outputs
/// without calling the function; an `Option<T>` result may be null. The attribute
/// keeps the function and adds `<function>_odfv() -> Odfv`, for [`Plugin::odfv`]:
///
/// ```
/// use feast_plugin_sdk::arrow_array::{Array, Float32Array, Int64Array};
/// use feast_plugin_sdk::{Plugin, batch, odfv};
/// use std::sync::Arc;
///
/// #[odfv(name = "transformed_conv_rate", outputs = "conv_rate_plus_val1, conv_rate_plus_val2")]
/// fn plus_vals(conv_rate: f32, val_to_add: Option<i64>, val_to_add_2: i64) -> (Option<f64>, f64) {
///     let c = f64::from(conv_rate);
///     (val_to_add.map(|v| c + v as f64), c + val_to_add_2 as f64)
/// }
///
/// let plugin = Plugin::new("example", "0.1.0").odfv(plus_vals_odfv());
/// let input = batch([
///     ("conv_rate", Arc::new(Float32Array::from(vec![Some(0.5), None])) as _),
///     ("val_to_add", Arc::new(Int64Array::from(vec![None, Some(2)])) as _),
///     ("val_to_add_2", Arc::new(Int64Array::from(vec![10, 20])) as _),
/// ])
/// .unwrap();
/// let out = plugin.call("transformed_conv_rate", &input).unwrap();
/// assert!(out.column(0).is_null(0)); // val_to_add is null
/// assert!(out.column(1).is_null(1)); // conv_rate is null: the row is not computed
/// ```
pub use feast_plugin_macros::odfv;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "odfv-plugin",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "feast_plugin_sdk::bindings",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod store_bindings {
    wit_bindgen::generate!({
        world: "online-store",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "feast_plugin_sdk::store_bindings",
    });
}

/// Column types of plugin inputs and outputs (`column-type` in the WIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Arrow Int32 (Feast INT32).
    Int32,
    /// Arrow Int64 (Feast INT64).
    Int64,
    /// Arrow Float32 (Feast FLOAT).
    Float32,
    /// Arrow Float64 (Feast DOUBLE).
    Float64,
    /// Arrow Boolean (Feast BOOL).
    Boolean,
    /// Arrow Utf8 (Feast STRING, and JSON as text).
    Utf8,
    /// Arrow Binary (Feast BYTES).
    Binary,
    /// Arrow Timestamp(Second, UTC) (Feast UNIX_TIMESTAMP).
    TimestampSeconds,
    /// Arrow List<Int32> (Feast INT32_LIST). Lists: an `item` field, no null items.
    Int32List,
    /// Arrow List<Int64> (Feast INT64_LIST).
    Int64List,
    /// Arrow List<Float32> (Feast FLOAT_LIST).
    Float32List,
    /// Arrow List<Float64> (Feast DOUBLE_LIST).
    Float64List,
    /// Arrow List<Boolean> (Feast BOOL_LIST).
    BooleanList,
    /// Arrow List<Utf8> (Feast STRING_LIST, and JSON_LIST as texts).
    Utf8List,
    /// Arrow List<Binary> (Feast BYTES_LIST).
    BinaryList,
    /// Arrow List<Timestamp(Second, UTC)> (Feast UNIX_TIMESTAMP_LIST).
    TimestampSecondsList,
}

impl ColumnType {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        let list = |item: ColumnType| DataType::List(std::sync::Arc::new(item.item_field()));
        match self {
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Binary => DataType::Binary,
            ColumnType::TimestampSeconds => {
                DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
            }
            ColumnType::Int32List => list(ColumnType::Int32),
            ColumnType::Int64List => list(ColumnType::Int64),
            ColumnType::Float32List => list(ColumnType::Float32),
            ColumnType::Float64List => list(ColumnType::Float64),
            ColumnType::BooleanList => list(ColumnType::Boolean),
            ColumnType::Utf8List => list(ColumnType::Utf8),
            ColumnType::BinaryList => list(ColumnType::Binary),
            ColumnType::TimestampSecondsList => list(ColumnType::TimestampSeconds),
        }
    }

    /// The item field of a list column of this (scalar) type: named `item`, nullable,
    /// as Arrow writers make it.
    pub fn item_field(self) -> arrow_schema::Field {
        arrow_schema::Field::new("item", self.data_type(), true)
    }

    /// Whether a column of Arrow type `got` has this type (a list's item field may
    /// have any name and nullability).
    pub fn matches(self, got: &DataType) -> bool {
        match (self.data_type(), got) {
            (DataType::List(want), DataType::List(got)) => want.data_type() == got.data_type(),
            (want, got) => &want == got,
        }
    }
}

/// A transformation failure, shown to the caller of the feature server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginError {
    /// The input is not what the transformation expects.
    InvalidInput(String),
    /// The ODFV is not implemented by this plugin.
    Unsupported(String),
    /// Anything else.
    Internal(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            PluginError::Unsupported(m) => write!(f, "unsupported: {m}"),
            PluginError::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<arrow_schema::ArrowError> for PluginError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        PluginError::Internal(e.to_string())
    }
}

/// A transformation over a decoded batch.
pub type BatchFn = fn(&RecordBatch) -> Result<RecordBatch, PluginError>;
/// A transformation over raw Arrow IPC bytes (for plugins that encode themselves).
pub type IpcFn = fn(&[u8]) -> Result<Vec<u8>, PluginError>;

#[derive(Clone, Copy, Debug)]
enum Transform {
    Batch(BatchFn),
    Ipc(IpcFn),
}

/// One on-demand feature view: its inputs, outputs and transformation.
#[derive(Clone, Debug)]
pub struct Odfv {
    name: String,
    inputs: Vec<(String, ColumnType)>,
    outputs: Vec<(String, ColumnType)>,
    transform: Transform,
}

impl Odfv {
    /// An ODFV named as in the Feast registry, computed by `f`.
    pub fn new(name: &str, f: BatchFn) -> Self {
        Odfv {
            name: name.to_string(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            transform: Transform::Batch(f),
        }
    }

    /// An ODFV whose function reads and writes Arrow IPC bytes itself.
    pub fn new_ipc(name: &str, f: IpcFn) -> Self {
        Odfv {
            transform: Transform::Ipc(f),
            ..Odfv::new(name, |b| Ok(b.clone()))
        }
    }

    /// Declares an input column (a source feature or a request data field).
    pub fn input(mut self, name: &str, ty: ColumnType) -> Self {
        self.inputs.push((name.to_string(), ty));
        self
    }

    /// Declares an output column (one of the ODFV's features).
    pub fn output(mut self, name: &str, ty: ColumnType) -> Self {
        self.outputs.push((name.to_string(), ty));
        self
    }

    /// The ODFV name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Declared inputs.
    pub fn inputs(&self) -> &[(String, ColumnType)] {
        &self.inputs
    }

    /// Declared outputs.
    pub fn outputs(&self) -> &[(String, ColumnType)] {
        &self.outputs
    }
}

/// A plugin: a name, a version and the ODFVs it implements.
#[derive(Clone, Debug)]
pub struct Plugin {
    name: String,
    version: String,
    odfvs: Vec<Odfv>,
}

impl Plugin {
    /// A plugin without ODFVs yet.
    pub fn new(name: &str, version: &str) -> Self {
        Plugin {
            name: name.to_string(),
            version: version.to_string(),
            odfvs: Vec::new(),
        }
    }

    /// Adds an ODFV.
    pub fn odfv(mut self, odfv: Odfv) -> Self {
        self.odfvs.push(odfv);
        self
    }

    /// Plugin name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Plugin version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The ODFVs.
    pub fn odfvs(&self) -> &[Odfv] {
        &self.odfvs
    }

    fn find(&self, odfv: &str) -> Result<&Odfv, PluginError> {
        self.odfvs.iter().find(|o| o.name == odfv).ok_or_else(|| {
            PluginError::Unsupported(format!(
                "plugin {} does not implement on-demand feature view {odfv}",
                self.name
            ))
        })
    }

    /// Runs an ODFV on a batch, as the server does: the declared outputs are checked
    /// (row count, names and types) whichever way the ODFV was written.
    pub fn call(&self, odfv: &str, input: &RecordBatch) -> Result<RecordBatch, PluginError> {
        let o = self.find(odfv)?;
        let out = match o.transform {
            Transform::Batch(f) => f(input)?,
            Transform::Ipc(f) => decode_batch(&f(&encode_batch(input)?)?)?,
        };
        check_outputs(o, &out, input.num_rows())?;
        Ok(out)
    }

    /// Runs an ODFV on Arrow IPC bytes and returns Arrow IPC bytes (the WIT `transform`).
    pub fn call_ipc(&self, odfv: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        let o = self.find(odfv)?;
        match o.transform {
            Transform::Ipc(f) => f(input),
            Transform::Batch(f) => {
                let batch = decode_batch(input).map_err(|e| {
                    PluginError::InvalidInput(format!("cannot decode the input batch: {e}"))
                })?;
                let out = f(&batch)?;
                check_outputs(o, &out, batch.num_rows())?;
                encode_batch(&out)
            }
        }
    }
}

fn check_outputs(o: &Odfv, out: &RecordBatch, rows: usize) -> Result<(), PluginError> {
    if out.num_rows() != rows {
        return Err(PluginError::Internal(format!(
            "{} returned {} rows for {rows} input rows",
            o.name,
            out.num_rows()
        )));
    }
    for (name, ty) in &o.outputs {
        let col = out.column_by_name(name).ok_or_else(|| {
            PluginError::Internal(format!("{} did not return its output {name}", o.name))
        })?;
        if !ty.matches(col.data_type()) {
            return Err(PluginError::Internal(format!(
                "{} returned {name} as {} instead of {}",
                o.name,
                col.data_type(),
                ty.data_type()
            )));
        }
    }
    Ok(())
}

/// The column `name` of `batch` as a primitive array of type `T`, or a clear error.
pub fn column<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>, PluginError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| PluginError::InvalidInput(format!("no input column {name}")))?;
    col.as_any()
        .downcast_ref::<PrimitiveArray<T>>()
        .ok_or_else(|| {
            PluginError::InvalidInput(format!(
                "input column {name} is {}, expected {}",
                col.data_type(),
                T::DATA_TYPE
            ))
        })
}

/// A batch from named columns (all the same length).
pub fn batch<const N: usize>(columns: [(&str, ArrayRef); N]) -> Result<RecordBatch, PluginError> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
        .collect();
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, c)| c).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[doc(hidden)]
pub mod export {
    //! Glue used by [`export_plugin!`](crate::export_plugin); not part of the API.

    use crate::Plugin;
    #[cfg(target_arch = "wasm32")]
    use crate::bindings::feast::plugin::types as wit;
    #[cfg(target_arch = "wasm32")]
    use crate::{ColumnType, PluginError};

    /// Writes panics to stderr with a prefix the host looks for, once.
    pub fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                eprintln!("feast-plugin panicked: {msg}{at}");
            }));
        });
    }

    #[cfg(target_arch = "wasm32")]
    fn wit_type(t: ColumnType) -> wit::ColumnType {
        match t {
            ColumnType::Int32 => wit::ColumnType::Int32,
            ColumnType::Int64 => wit::ColumnType::Int64,
            ColumnType::Float32 => wit::ColumnType::Float32,
            ColumnType::Float64 => wit::ColumnType::Float64,
            ColumnType::Boolean => wit::ColumnType::Boolean,
            ColumnType::Utf8 => wit::ColumnType::Utf8,
            ColumnType::Binary => wit::ColumnType::Binary,
            ColumnType::TimestampSeconds => wit::ColumnType::TimestampSeconds,
            ColumnType::Int32List => wit::ColumnType::Int32List,
            ColumnType::Int64List => wit::ColumnType::Int64List,
            ColumnType::Float32List => wit::ColumnType::Float32List,
            ColumnType::Float64List => wit::ColumnType::Float64List,
            ColumnType::BooleanList => wit::ColumnType::BooleanList,
            ColumnType::Utf8List => wit::ColumnType::Utf8List,
            ColumnType::BinaryList => wit::ColumnType::BinaryList,
            ColumnType::TimestampSecondsList => wit::ColumnType::TimestampSecondsList,
        }
    }

    /// The WIT `describe`.
    #[cfg(target_arch = "wasm32")]
    pub fn describe(p: &Plugin) -> wit::PluginInfo {
        install_panic_hook();
        let fields = |cols: &[(String, ColumnType)]| {
            cols.iter()
                .map(|(n, t)| wit::Field {
                    name: n.clone(),
                    column_type: wit_type(*t),
                })
                .collect()
        };
        wit::PluginInfo {
            name: p.name().to_string(),
            version: p.version().to_string(),
            odfvs: p
                .odfvs()
                .iter()
                .map(|o| wit::OdfvSpec {
                    name: o.name().to_string(),
                    inputs: fields(o.inputs()),
                    outputs: fields(o.outputs()),
                })
                .collect(),
        }
    }

    /// The WIT `transform`.
    #[cfg(target_arch = "wasm32")]
    pub fn transform(p: &Plugin, odfv: &str, input: &[u8]) -> Result<Vec<u8>, wit::PluginError> {
        install_panic_hook();
        p.call_ipc(odfv, input).map_err(|e| match e {
            PluginError::InvalidInput(m) => wit::PluginError::InvalidInput(m),
            PluginError::Unsupported(m) => wit::PluginError::Unsupported(m),
            PluginError::Internal(m) => wit::PluginError::Internal(m),
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[doc(hidden)]
    pub fn touch(_: &Plugin) {}
}

/// Exports a plugin from a function returning its [`Plugin`] description. On
/// `wasm32` this implements the `odfv-plugin` world; natively it expands to nothing,
/// so the crate can be tested with `cargo test`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct FeastPluginComponent;

            fn feast_plugin() -> &'static $crate::Plugin {
                static PLUGIN: ::std::sync::OnceLock<$crate::Plugin> = ::std::sync::OnceLock::new();
                PLUGIN.get_or_init($plugin)
            }

            impl $crate::bindings::Guest for FeastPluginComponent {
                fn describe() -> $crate::bindings::feast::plugin::types::PluginInfo {
                    $crate::export::describe(feast_plugin())
                }

                fn transform(
                    odfv: ::std::string::String,
                    input: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<u8>,
                    $crate::bindings::feast::plugin::types::PluginError,
                > {
                    $crate::export::transform(feast_plugin(), &odfv, &input)
                }
            }

    $crate::bindings::export!(FeastPluginComponent with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Float64Type;
    use arrow_array::{Float64Array, Int64Array};

    fn double(input: &RecordBatch) -> Result<RecordBatch, PluginError> {
        let x = column::<arrow_array::types::Int64Type>(input, "x")?;
        let y: Float64Array = x.iter().map(|v| v.map(|v| v as f64 * 2.0)).collect();
        batch([("y", Arc::new(y) as ArrayRef)])
    }

    fn plugin() -> Plugin {
        Plugin::new("t", "1").odfv(
            Odfv::new("double", double)
                .input("x", ColumnType::Int64)
                .output("y", ColumnType::Float64),
        )
    }

    #[test]
    fn calls_through_ipc_like_the_server() {
        let input = batch([(
            "x",
            Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
        )])
        .expect("batch");
        let out = decode_batch(
            &plugin()
                .call_ipc("double", &encode_batch(&input).expect("encode"))
                .expect("call"),
        )
        .expect("decode");
        let y = column::<Float64Type>(&out, "y").expect("y");
        assert_eq!(y.value(0), 2.0);
        assert!(y.is_null(1));
    }

    #[test]
    fn outputs_of_ipc_transforms_are_checked_too() {
        fn wrong_rows(input: &[u8]) -> Result<Vec<u8>, PluginError> {
            let _ = decode_batch(input)?;
            let y = Float64Array::from(vec![1.0, 2.0, 3.0]);
            encode_batch(&batch([("y", Arc::new(y) as ArrayRef)])?)
        }
        let p = Plugin::new("t", "1").odfv(
            Odfv::new_ipc("ipc", wrong_rows)
                .input("x", ColumnType::Int64)
                .output("y", ColumnType::Float64),
        );
        let input = batch([("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).expect("batch");
        let err = p.call("ipc", &input).expect_err("three rows for one");
        assert!(err.to_string().contains("3 rows for 1 input rows"), "{err}");
    }

    #[test]
    fn errors_are_clear() {
        let input = batch([("z", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).expect("batch");
        assert_eq!(
            plugin().call("double", &input).expect_err("no x"),
            PluginError::InvalidInput("no input column x".into())
        );
        assert!(matches!(
            plugin().call("nope", &input),
            Err(PluginError::Unsupported(_))
        ));
        assert!(matches!(
            plugin().call_ipc("double", b"garbage"),
            Err(PluginError::InvalidInput(_))
        ));
    }
}
