//! One logged request: the columns its log rows need, taken out of the engine's
//! response once it is encoded, before it is sent (any column the service produces,
//! found by name, and the request data the on-demand views were computed from).

use std::sync::Arc;

use super::schema::Input;
use super::target::{ServiceLog, ServiceTarget};
use crate::api::{FeatureColumn, OnlineFeaturesResponse};

/// The rows of one logged request, waiting to be written.
#[derive(Debug)]
pub(super) struct LogEntry {
    /// The service and schema the rows belong to.
    pub target: Arc<ServiceTarget>,
    /// Entity rows (= log rows).
    pub rows: usize,
    /// `__request_id`, a random (version 4) UUID.
    pub request_id: u128,
    /// `__log_timestamp`, microseconds since the epoch (UTC).
    pub log_time_us: i64,
    /// Per schema input: its column (join keys and request data carry values only;
    /// an input the response lacks is empty and logged as nulls).
    pub columns: Vec<FeatureColumn>,
}

impl LogEntry {
    /// Takes what `log` needs from a served request (a response column is moved, and
    /// copied only when two inputs use it).
    pub(super) fn capture(
        log: &ServiceLog,
        resp: OnlineFeaturesResponse,
        rows: usize,
        log_time_us: i64,
    ) -> Self {
        let target = &log.target;
        let binding = log.binding(&resp.feature_names);
        let mut uses = vec![0usize; resp.columns.len()];
        for i in binding.columns.iter().flatten() {
            if let Some(n) = uses.get_mut(*i) {
                *n += 1;
            }
        }
        let mut request_data = resp.request_data;
        let mut served = resp.columns;
        let mut take = |i: usize| -> FeatureColumn {
            match (uses.get_mut(i), served.get_mut(i)) {
                (Some(n), Some(col)) => {
                    *n -= 1;
                    if *n == 0 {
                        std::mem::take(col)
                    } else {
                        col.clone()
                    }
                }
                _ => FeatureColumn::default(),
            }
        };
        let columns = target
            .schema
            .inputs
            .iter()
            .zip(&binding.columns)
            .map(|(input, col)| match (input, col) {
                (Input::Feature { .. }, Some(i)) => take(*i),
                (Input::JoinKey(_), Some(i)) => take(*i).values_only(),
                // As the on-demand views got it: coerced to the declared type.
                (Input::RequestData(name), _) => FeatureColumn::new(
                    request_data
                        .iter_mut()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| std::mem::take(v))
                        .unwrap_or_default(),
                    Vec::new(),
                    Vec::new(),
                ),
                _ => FeatureColumn::default(),
            })
            .collect();
        let mut id = fastrand::u128(..).to_le_bytes();
        // RFC 4122 version 4, variant 1.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        LogEntry {
            target: target.clone(),
            rows,
            request_id: u128::from_be_bytes(id),
            log_time_us,
            columns,
        }
    }
}
