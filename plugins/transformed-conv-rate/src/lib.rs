//! The Feast demo's on-demand feature views `transformed_conv_rate` and
//! `transformed_conv_rate_fresh`, as a Wasm plugin for `feast-server`:
//!
//! - `conv_rate_plus_val1 = conv_rate + val_to_add`
//! - `conv_rate_plus_val2 = conv_rate + val_to_add_2`
//!
//! as Float64, computed like Feast's pandas UDF (FLOAT widened to double, INT64 as
//! double); a null input gives a null output.
//!
//! Build: `cargo build --profile plugin --target wasm32-wasip2 -p transformed-conv-rate`.

use std::sync::Arc;

use feast_plugin_sdk::arrow_array::types::{Float32Type, Int64Type};
use feast_plugin_sdk::arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use feast_plugin_sdk::{ColumnType, Odfv, Plugin, PluginError, batch, column};

/// What the v2 build adds to every output (hot-swap tests tell versions apart by it).
const SHIFT: f64 = if cfg!(feature = "v2") { 1000.0 } else { 0.0 };

fn plus(conv_rate: &feast_plugin_sdk::arrow_array::Float32Array, val: &Int64Array) -> Float64Array {
    conv_rate
        .iter()
        .zip(val.iter())
        .map(|(c, v)| Some(f64::from(c?) + v? as f64 + SHIFT))
        .collect()
}

/// The transformation of both ODFVs.
pub fn conv_rate_plus_vals(input: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let conv_rate = column::<Float32Type>(input, "conv_rate")?;
    let val1 = column::<Int64Type>(input, "val_to_add")?;
    let val2 = column::<Int64Type>(input, "val_to_add_2")?;
    batch([
        (
            "conv_rate_plus_val1",
            Arc::new(plus(conv_rate, val1)) as ArrayRef,
        ),
        (
            "conv_rate_plus_val2",
            Arc::new(plus(conv_rate, val2)) as ArrayRef,
        ),
    ])
}

fn odfv(name: &str) -> Odfv {
    Odfv::new(name, conv_rate_plus_vals)
        .input("conv_rate", ColumnType::Float32)
        .input("val_to_add", ColumnType::Int64)
        .input("val_to_add_2", ColumnType::Int64)
        .output("conv_rate_plus_val1", ColumnType::Float64)
        .output("conv_rate_plus_val2", ColumnType::Float64)
}

/// The plugin description.
pub fn plugin() -> Plugin {
    let version = if cfg!(feature = "v2") {
        "0.2.0"
    } else {
        env!("CARGO_PKG_VERSION")
    };
    Plugin::new("transformed-conv-rate", version)
        .odfv(odfv("transformed_conv_rate"))
        .odfv(odfv("transformed_conv_rate_fresh"))
}

feast_plugin_sdk::export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use feast_plugin_sdk::arrow_array::types::Float64Type;
    use feast_plugin_sdk::arrow_array::{Array, Float32Array};

    #[test]
    fn matches_feasts_pandas_udf() {
        let input = batch([
            (
                "conv_rate",
                Arc::new(Float32Array::from(vec![Some(0.296_535_58), None])) as ArrayRef,
            ),
            (
                "val_to_add",
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
            ),
            (
                "val_to_add_2",
                Arc::new(Int64Array::from(vec![10, 20])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let out = plugin()
            .call("transformed_conv_rate", &input)
            .expect("call");
        let v1 = column::<Float64Type>(&out, "conv_rate_plus_val1").expect("v1");
        // Feast (golden c1): 0.29653558135032654 + 1 = 1.2965355813503265
        assert_eq!(v1.value(0), 1.296_535_581_350_326_5 + SHIFT);
        assert!(v1.is_null(1));
    }
}
