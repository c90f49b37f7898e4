//! The `composite` repository (composite, INT32 and STRING join keys; written and
//! answered by the real Feast 0.67, `tests/golden/composite`): the columns a Feast
//! client sees, join keys echoed in request order included.

use feast_server_e2e::{RepoCopy, TestServer, compare_columns, golden_cases};
use serde_json::Value as Json;

/// Cases where this server deliberately answers differently from Feast: (case,
/// status, Feast error class, words the message names).
const OUR_ERRORS: &[(&str, u16, &str, &str)] = &[
    // Feast answers NOT_FOUND rows for a composite-key view given some of its keys.
    (
        "k5_composite_key_partial",
        400,
        "FeastError",
        "merchant_code",
    ),
    // Feast (pydantic) answers 422.
    (
        "f7_full_feature_names_str_maybe",
        400,
        "FeastError",
        "full_feature_names",
    ),
    (
        "f8_full_feature_names_null",
        400,
        "FeastError",
        "full_feature_names",
    ),
    (
        "o6_missing_request_data",
        400,
        "RequestDataNotFoundInEntityRowsException",
        "amount",
    ),
];

/// Feast's Python server reports a stored null as PRESENT; this server reports
/// NULL_VALUE, as Feast's Go server does (a documented difference).
pub(crate) fn with_null_values(mut body: Json) -> Json {
    let n = body["results"].as_array().map_or(0, Vec::len);
    for i in 0..n {
        let col = &mut body["results"][i];
        let rows = col["values"].as_array().map_or(0, Vec::len);
        for row in 0..rows {
            if col["values"][row].is_null() && col["statuses"][row] == "PRESENT" {
                col["statuses"][row] = Json::from("NULL_VALUE");
            }
        }
    }
    body
}

/// The response's leading join-key columns, in order.
fn join_keys(body: &Json) -> Vec<String> {
    const KEYS: [&str; 3] = ["customer_id", "merchant_code", "device_id"];
    body["metadata"]["feature_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .take_while(|n| KEYS.contains(n))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn answers_like_feast_on_composite_int32_and_string_keys() {
    let repo = RepoCopy::composite();
    let server = TestServer::demo(&repo).await;
    let cases = golden_cases("composite");
    assert!(cases.len() >= 26, "the captured cases are present");
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in &cases {
        let name = case.name.as_str();
        // On-demand views written in Python need a plugin built from them (not yet).
        if name.starts_with('o') && !OUR_ERRORS.iter().any(|(n, ..)| *n == name) {
            continue;
        }
        let resp = server.send_case(case).await;
        if let Some(&(_, status, class, words)) = OUR_ERRORS.iter().find(|(n, ..)| *n == name) {
            let (got, message) = resp.feast_error();
            if resp.status != status || got != class || !message.contains(words) {
                failures.push(format!(
                    "{name}: {} {got}: {message} (expected {status} {class} naming {words})",
                    resp.status
                ));
            }
            continue;
        }
        compared += 1;
        if resp.status != case.status {
            failures.push(format!(
                "{name}: status {} (Feast {}): {}",
                resp.status,
                case.status,
                String::from_utf8_lossy(&resp.body)
            ));
            continue;
        }
        let (Some(want), got) = (case.response.clone().map(with_null_values), resp.json()) else {
            continue;
        };
        let want = &want;
        for d in compare_columns(want, &got) {
            failures.push(format!("{name}: {d}"));
        }
        if join_keys(want) != join_keys(&got) {
            failures.push(format!(
                "{name}: join keys {:?}, Feast {:?}",
                join_keys(&got),
                join_keys(want)
            ));
        }
        let meta = |b: &Json| b["metadata"].get("feature_view_metadata").cloned();
        if meta(want) != meta(&got) {
            failures.push(format!(
                "{name}: feature_view_metadata {:?}, Feast {:?}",
                meta(&got),
                meta(want)
            ));
        }
    }
    server.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 17, "{compared} cases compared");
}
