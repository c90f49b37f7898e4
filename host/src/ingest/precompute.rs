//! Feature services with `precompute_online`: after a materialization, one
//! `PrecomputedFeatureVector` per entity of the service's first view, built and
//! stored as Feast 0.67's `precompute_feature_service` does (the `vector` bytes
//! feature of the synthetic view `__precomputed__<service>`), so that Feast's own
//! readers, which read a service with `precompute_online` only from its vectors, find
//! them.
//!
//! As in Feast: entity keys are found by listing the store, which only Redis can do
//! (elsewhere the service is skipped with a warning); a service with anything but
//! batch or stream feature views is skipped; a failure is logged and does not fail
//! the materialization. As `feast serve` (whose pushes are asynchronous on Redis),
//! `/push` and `/write-to-online-store` do not refresh the vectors.

use std::collections::BTreeSet;
use std::sync::Arc;

use prost::Message;

use super::Ingest;
use crate::entity_key::{KeyLayout, join_key_names};
use crate::online_store::{ReadBatch, StoreError, WriteBatch, WriteRow, WriteValue};
use crate::proto::feast::core::{FeatureViewTimestamp, PrecomputedFeatureVector};
use crate::registry::{FeatureService, FeatureView, Registry, ViewKind};
use crate::value::{EventTime, Val, Value};

/// Entities per read and write (Feast's `batch_size`).
const BATCH: usize = 1_000;

/// Why a service's vectors were not computed.
#[derive(Debug, thiserror::Error)]
enum PrecomputeError {
    /// A projection is not a batch or stream feature view (Feast's assertion).
    #[error("{0} is not a batch or stream feature view")]
    NotAFeatureView(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One projection of a service, as its vectors hold it.
struct Part<'a> {
    view: &'a FeatureView,
    /// `name_to_use()` in Feast: the alias or the view name, then `@v<tag>`.
    name: String,
    features: Vec<String>,
}

impl Ingest {
    /// Recomputes the vectors of every service with `precompute_online` that uses one
    /// of `views` (just materialized).
    pub(super) async fn precompute_services_of(&self, views: &[String]) {
        let snapshot = self.registry.snapshot();
        let registry = &snapshot.registry;
        let mut services: Vec<&Arc<FeatureService>> = registry
            .services
            .values()
            .filter(|s| {
                s.precompute_online && s.projections.iter().any(|p| views.contains(&p.view_name))
            })
            .collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        for service in services {
            match self.precompute(registry, service).await {
                Ok(Some(n)) => tracing::info!(
                    service = %service.name,
                    vectors = n,
                    "pre-computed the feature vectors of a service"
                ),
                Ok(None) => tracing::warn!(
                    service = %service.name,
                    store = self.store.type_name(),
                    "the store cannot list its entity keys: feature vectors are not \
                     pre-computed (as in Feast, only Redis can)"
                ),
                Err(e) => tracing::warn!(
                    service = %service.name,
                    error = %e,
                    "cannot pre-compute the feature vectors of a service"
                ),
            }
        }
    }

    /// Writes the vectors of one service; `None` when the store cannot list entities.
    async fn precompute(
        &self,
        registry: &Registry,
        service: &FeatureService,
    ) -> Result<Option<usize>, PrecomputeError> {
        let parts = parts(registry, service)?;
        let Some(primary) = parts.first() else {
            return Ok(Some(0));
        };
        let join_keys: Vec<&str> = primary
            .view
            .join_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        // Feast scans with the version 3 prefix whatever the configured version.
        let layout = KeyLayout::new(&join_keys, 3);
        let Some(found) = self.store.entity_keys(layout.prefix()).await? else {
            return Ok(None);
        };
        let wanted: BTreeSet<&str> = join_keys.iter().copied().collect();
        let keys: Vec<Vec<u8>> = found
            .into_iter()
            .filter(|k| {
                join_key_names(k).is_some_and(|names| {
                    names.iter().map(String::as_str).collect::<BTreeSet<_>>() == wanted
                })
            })
            .collect();

        let feature_names: Vec<String> = parts
            .iter()
            .flat_map(|p| p.features.iter().map(move |f| format!("{}__{f}", p.name)))
            .collect();
        let targets: Vec<_> = parts
            .iter()
            .map(|p| {
                Arc::new(
                    self.store
                        .target(&p.view.name, &p.view.online_name, p.features.clone()),
                )
            })
            .collect();
        let synthetic = format!("__precomputed__{}", service.name);
        let vector_target = Arc::new(self.store.target(
            &synthetic,
            &synthetic,
            vec!["vector".to_string()],
        ));

        for chunk in keys.chunks(BATCH) {
            let reads = targets
                .iter()
                .map(|t| ReadBatch {
                    target: t.clone(),
                    keys: chunk.to_vec(),
                })
                .collect();
            let rows = self.store.read(reads).await?;
            let now = self.clock.event_time();
            let mut out = Vec::with_capacity(chunk.len());
            for (k, key) in chunk.iter().enumerate() {
                let mut values = Vec::with_capacity(feature_names.len());
                let mut fv_timestamps = Vec::with_capacity(parts.len());
                for (part, view_rows) in parts.iter().zip(&rows) {
                    if part.features.is_empty() {
                        // Feast reads nothing, and records no time, for such a view.
                        continue;
                    }
                    // The row's time is its `_ts` field (the epoch when the hash has
                    // none), as every present cell of the row carries it.
                    let event_time = (0..part.features.len())
                        .find_map(|slot| view_rows.get(k, slot))
                        .map_or(EventTime::EPOCH, |c| c.event_time);
                    fv_timestamps.push(FeatureViewTimestamp {
                        feature_view_name: part.name.clone(),
                        event_timestamp: Some(event_time.through_python_datetime().to_proto()),
                    });
                    values.extend(
                        (0..part.features.len())
                            .map(|slot| view_rows.get(k, slot).map(|c| c.value.clone())),
                    );
                }
                let vector = PrecomputedFeatureVector {
                    feature_names: feature_names.clone(),
                    values: values.into_iter().map(Option::unwrap_or_default).collect(),
                    fv_timestamps,
                    precomputed_at: Some(now.to_proto()),
                };
                let value = Value {
                    val: Some(Val::BytesVal(vector.encode_to_vec())),
                };
                out.push(WriteRow {
                    entity_key: key.clone(),
                    values: vec![WriteValue {
                        bytes: value.encode_to_vec(),
                        text: None,
                    }],
                    event_time: now,
                    created: None,
                });
            }
            self.store
                .write(vec![WriteBatch {
                    target: vector_target.clone(),
                    rows: out,
                }])
                .await?;
        }
        Ok(Some(keys.len()))
    }
}

/// The projections of a service, with the views they select from.
fn parts<'a>(
    registry: &'a Registry,
    service: &FeatureService,
) -> Result<Vec<Part<'a>>, PrecomputeError> {
    service
        .projections
        .iter()
        .map(|p| {
            let view = registry
                .views
                .get(&p.view_name)
                .filter(|v| matches!(v.kind, ViewKind::Batch | ViewKind::Stream))
                .ok_or_else(|| PrecomputeError::NotAFeatureView(p.view_name.clone()))?;
            let features = if p.features.is_empty() {
                view.features.iter().map(|f| f.name.clone()).collect()
            } else {
                p.features.clone()
            };
            let name = match p.version_tag {
                Some(tag) => format!("{}@v{tag}", p.name_to_use()),
                None => p.name_to_use().to_string(),
            };
            Ok(Part {
                view: view.as_ref(),
                name,
                features,
            })
        })
        .collect()
}
