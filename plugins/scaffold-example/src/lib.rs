//! The on-demand feature view `transformed_conv_rate` of Feast project `repo`, scaffolded by
//! `feast-server plugins scaffold` from the registry.
//! Inputs: conv_rate (FLOAT), acc_rate (FLOAT), avg_daily_trips (INT64), driver_config (JSON), val_to_add (INT64), val_to_add_2 (INT64).
//! Outputs: conv_rate_plus_val1 (DOUBLE), conv_rate_plus_val2 (DOUBLE).

use feast_plugin_sdk::{Plugin, odfv};

/// One row of `transformed_conv_rate`: every input may be null (`None`).
#[odfv(
    name = "transformed_conv_rate",
    outputs = "conv_rate_plus_val1, conv_rate_plus_val2"
)]
fn transformed_conv_rate(
    conv_rate: Option<f32>,
    acc_rate: Option<f32>,
    avg_daily_trips: Option<i64>,
    driver_config: Option<String>,
    val_to_add: Option<i64>,
    val_to_add_2: Option<i64>,
) -> (Option<f64>, Option<f64>) {
    // Compute the outputs from the inputs here.
    let _ = (
        conv_rate,
        acc_rate,
        avg_daily_trips,
        driver_config,
        val_to_add,
        val_to_add_2,
    );
    (None, None)
}

/// The plugin: the ODFV above.
pub fn plugin() -> Plugin {
    Plugin::new("transformed_conv_rate", "0.1.0").odfv(transformed_conv_rate_odfv())
}

feast_plugin_sdk::export_plugin!(plugin);
