//! Row-wise ODFVs over list columns: `Vec<T>` arguments and results, through IPC as
//! the server calls them.

#![allow(
    clippy::expect_used,
    clippy::type_complexity,
    reason = "a test: a failed step ends it; the row function's tuple of outputs is its signature"
)]

use std::sync::Arc;

use feast_plugin_sdk::arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
use feast_plugin_sdk::arrow_array::cast::AsArray;
use feast_plugin_sdk::arrow_array::types::{Int64Type, TimestampSecondType};
use feast_plugin_sdk::arrow_array::{Array, ArrayRef, RecordBatch};
use feast_plugin_sdk::row::Timestamp;
use feast_plugin_sdk::{ColumnType, Plugin, PluginError, batch, decode_batch, encode_batch, odfv};

#[odfv(name = "lists", outputs = "reversed, labels, total, stamps")]
fn lists(
    clicks: Option<Vec<i64>>,
    names: Vec<String>,
) -> (Option<Vec<i64>>, Vec<String>, i64, Option<Vec<Timestamp>>) {
    let total = clicks.iter().flatten().sum();
    let stamps = clicks
        .as_ref()
        .map(|c| c.iter().map(|s| Timestamp(*s)).collect());
    let reversed = clicks.map(|mut c| {
        c.reverse();
        c
    });
    let labels = names.iter().map(|n| format!("<{n}>")).collect();
    (reversed, labels, total, stamps)
}

fn input() -> RecordBatch {
    let mut clicks = ListBuilder::new(Int64Builder::new());
    clicks.values().append_slice(&[1, 2, 3]);
    clicks.append(true);
    clicks.append_null();
    clicks.append(true); // empty
    let mut names = ListBuilder::new(StringBuilder::new());
    for row in [&["a", "b"][..], &[], &["c"]] {
        for n in row {
            names.values().append_value(n);
        }
        names.append(true);
    }
    batch([
        ("clicks", Arc::new(clicks.finish()) as ArrayRef),
        ("names", Arc::new(names.finish()) as ArrayRef),
    ])
    .expect("batch")
}

#[test]
fn list_columns_are_read_and_written_per_row() {
    let odfv = lists_odfv();
    assert_eq!(
        odfv.inputs().iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        [ColumnType::Int64List, ColumnType::Utf8List]
    );
    assert_eq!(odfv.outputs()[3].1, ColumnType::TimestampSecondsList);
    let plugin = Plugin::new("t", "1").odfv(odfv);
    let raw = plugin
        .call_ipc("lists", &encode_batch(&input()).expect("encode"))
        .expect("call");
    let out = decode_batch(&raw).expect("decode");
    let reversed = out.column(0).as_list::<i32>();
    assert_eq!(
        reversed.value(0).as_primitive::<Int64Type>().values(),
        &[3, 2, 1]
    );
    assert!(reversed.is_null(1));
    assert!(reversed.is_valid(2) && reversed.value(2).is_empty());
    let labels = out.column(1).as_list::<i32>();
    let first = labels.value(0);
    let first: Vec<_> = first.as_string::<i32>().iter().flatten().collect();
    assert_eq!(first, ["<a>", "<b>"]);
    assert!(labels.value(1).is_empty());
    let total = out.column(2).as_primitive::<Int64Type>();
    assert_eq!((total.value(0), total.value(2)), (6, 0));
    let stamps = out.column(3).as_list::<i32>();
    assert_eq!(
        stamps
            .value(0)
            .as_primitive::<TimestampSecondType>()
            .values(),
        &[1, 2, 3]
    );
}

#[test]
fn a_null_item_in_an_input_list_is_invalid_input() {
    let mut clicks = ListBuilder::new(Int64Builder::new());
    clicks.values().append_value(1);
    clicks.values().append_null();
    clicks.append(true);
    let mut names = ListBuilder::new(StringBuilder::new());
    names.append(true);
    let input = batch([
        ("clicks", Arc::new(clicks.finish()) as ArrayRef),
        ("names", Arc::new(names.finish()) as ArrayRef),
    ])
    .expect("batch");
    let err = Plugin::new("t", "1")
        .odfv(lists_odfv())
        .call("lists", &input)
        .expect_err("a null item");
    assert_eq!(
        err,
        PluginError::InvalidInput("input column clicks has a null item in row 0".into())
    );
}
