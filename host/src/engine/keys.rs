//! From the request's columns to each view's entity keys: row count checks, join
//! keys found by name (or entity name) and coerced to their declared types, unique
//! serialized keys per view and how request rows map to them, and the request data
//! on-demand views take.

use std::sync::Arc;

use foldhash::HashMap;

use super::plan::{Plan, PlanJoinKey, ViewRead};
use crate::api::{FeatureColumn, OnlineFeaturesRequest, RowKeys};
use crate::entity_key::{coerce, has_type, same_key};
use crate::error::Error;
use crate::value::{Val, Value, ValueType, copy_value};

/// The number of entity rows; every column must have it and it must not be zero.
pub(super) fn row_count(req: &OnlineFeaturesRequest) -> Result<usize, Error> {
    let mut columns = req.entities.iter().chain(&req.request_context);
    let Some((first_name, first)) = columns.next() else {
        return Err(Error::InvalidRequest(
            "`entities` is empty: give at least one join key with a list of values, e.g. {\"driver_id\": [1001]}".into(),
        ));
    };
    let n = first.len();
    for (name, col) in columns {
        if col.len() != n {
            return Err(Error::InvalidRequest(format!(
                "All entity rows must have the same columns: `{first_name}` has {n} values but `{name}` has {}",
                col.len()
            )));
        }
    }
    if n == 0 {
        return Err(Error::InvalidRequest(format!(
            "`entities.{first_name}` is empty: give at least one entity row"
        )));
    }
    Ok(n)
}

/// The request data the plan's ODFVs need, coerced to the declared types, parallel
/// to `plan.request_fields`; all missing fields are named at once. A null stays null
/// (Feast hands it to the function as `None`).
pub(super) fn request_data(
    plan: &Plan,
    req: &OnlineFeaturesRequest,
) -> Result<Vec<Vec<Value>>, Error> {
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(plan.request_fields.len());
    for field in &plan.request_fields {
        match req.request_data(&field.name) {
            None => missing.push(field.name.clone()),
            Some(values) => {
                let target = ValueType::try_from(field.value_type).unwrap_or(ValueType::Invalid);
                out.push(
                    values
                        .iter()
                        .enumerate()
                        .map(|(row, v)| {
                            if matches!(v.val, None | Some(Val::NullVal(_))) {
                                return Ok(Value::default());
                            }
                            coerce(v, target).map_err(|e| {
                                Error::InvalidRequest(format!(
                                    "entities.{}[{row}]: {e}",
                                    field.name
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::RequestDataNotFound(missing));
    }
    Ok(out)
}

/// A join-key column in one type: the request's own values when they already have
/// it, else a coerced copy.
#[derive(Clone)]
enum KeyValues<'a> {
    Sent(&'a [Value]),
    Coerced(Arc<Vec<Value>>),
}

impl std::ops::Deref for KeyValues<'_> {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        match self {
            KeyValues::Sent(values) => values,
            KeyValues::Coerced(values) => values,
        }
    }
}

/// A join-key column in one type: ((join key index, value type), values).
type CoercedColumn<'a> = ((usize, i32), KeyValues<'a>);

/// The request's join-key columns, found by name or entity name, in the types they
/// are read with, cached per (join key, type).
pub(super) struct EntityInputs<'a> {
    columns: Vec<&'a [Value]>,
    coerced: std::cell::RefCell<Vec<CoercedColumn<'a>>>,
}

impl<'a> EntityInputs<'a> {
    pub(super) fn resolve(plan: &Plan, req: &'a OnlineFeaturesRequest) -> Result<Self, Error> {
        let mut columns = Vec::with_capacity(plan.join_keys.len());
        for jk in &plan.join_keys {
            let found = req
                .entities
                .iter()
                .find(|(n, _)| *n == jk.name)
                .or_else(|| {
                    req.entities
                        .iter()
                        .find(|(n, _)| jk.aliases.iter().any(|a| a == n))
                });
            match found {
                Some((_, values)) => columns.push(values.as_slice()),
                None => {
                    let users: Vec<&str> = plan
                        .reads
                        .iter()
                        .filter(|r| {
                            r.key_columns
                                .iter()
                                .any(|&k| plan.join_keys[k].name == jk.name)
                        })
                        .map(|r| r.view.name.as_str())
                        .collect();
                    return Err(Error::MissingJoinKey(format!(
                        "`entities` has no values for join key '{}', which feature view {} needs",
                        jk.name,
                        users.join(", ")
                    )));
                }
            }
        }
        Ok(EntityInputs {
            columns,
            coerced: Default::default(),
        })
    }

    /// The values of join key `idx` in `value_type`: the request's own when they
    /// already have it, else coerced (cached).
    fn coerced(&self, idx: usize, name: &str, value_type: i32) -> Result<KeyValues<'a>, Error> {
        if let Some((_, v)) = self
            .coerced
            .borrow()
            .iter()
            .find(|(k, _)| *k == (idx, value_type))
        {
            return Ok(v.clone());
        }
        let target = ValueType::try_from(value_type).unwrap_or(ValueType::Invalid);
        let column = self.columns[idx];
        let values = if column.iter().all(|v| has_type(v, target)) {
            KeyValues::Sent(column)
        } else {
            let mut values = Vec::with_capacity(column.len());
            for (row, v) in column.iter().enumerate() {
                match coerce(v, target) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        return Err(Error::InvalidRequest(format!(
                            "entities.{name}[{row}]: {e}"
                        )));
                    }
                }
            }
            KeyValues::Coerced(Arc::new(values))
        };
        self.coerced
            .borrow_mut()
            .push(((idx, value_type), values.clone()));
        Ok(values)
    }

    /// Unique serialized keys of a view and how request rows map to them.
    pub(super) fn keys_for(
        &self,
        read: &ViewRead,
        rows: usize,
    ) -> Result<(Vec<Vec<u8>>, RowKeys), Error> {
        let view = &read.view;
        if view.is_entityless() {
            let mut key = Vec::new();
            let dummy = Value {
                val: Some(crate::value::Val::StringVal(String::new())),
            };
            view.key_layout
                .serialize(&[&dummy], &mut key)
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            return Ok((
                vec![key],
                RowKeys {
                    key_of_row: vec![0; rows],
                    first_row: vec![0],
                },
            ));
        }
        let cols = read
            .key_columns
            .iter()
            .zip(&view.join_keys)
            .map(|(&idx, jk)| self.coerced(idx, &jk.name, jk.value_type))
            .collect::<Result<Vec<_>, _>>()?;
        // Sized for the common case of a few keys, so neither list grows.
        let few = rows.min(KeySet::LINEAR_MAX);
        let mut keys = KeySet::with_capacity(few);
        let mut row_keys = RowKeys {
            key_of_row: Vec::with_capacity(rows),
            first_row: Vec::with_capacity(few),
        };
        let mut row_values: Vec<&Value> = Vec::with_capacity(cols.len());
        let mut buf = Vec::with_capacity(64);
        let mut first_ints = FirstInts::new();
        let single = match cols.as_slice() {
            [col] => Some(&**col),
            _ => None,
        };
        for row in 0..rows {
            // While keys are few, a row that repeats one is found by its values,
            // without serializing it; values that differ but serialize alike still
            // meet in `keys` below.
            let int = single.and_then(|col| first_ints.key_of(&col[row]));
            if row_keys.first_row.len() <= KeySet::LINEAR_MAX {
                let found = match int {
                    Some(x) => first_ints.position(x),
                    None => {
                        let same_values = |&first: &u32| {
                            cols.iter().all(|c| same_value(&c[first as usize], &c[row]))
                        };
                        row_keys.first_row.iter().position(same_values)
                    }
                };
                if let Some(k) = found {
                    row_keys.key_of_row.push(k as u32);
                    continue;
                }
            }
            row_values.clear();
            row_values.extend(cols.iter().map(|c| &c[row]));
            buf.clear();
            view.key_layout
                .serialize(&row_values, &mut buf)
                .map_err(|e| {
                    Error::InvalidRequest(format!(
                        "entity row {row} for feature view {}: {e}",
                        view.name
                    ))
                })?;
            let (k, new) = keys.insert(&buf);
            if new {
                row_keys.first_row.push(row as u32);
                first_ints.push(int);
            }
            row_keys.key_of_row.push(k);
        }
        Ok((keys.into_keys(), row_keys))
    }

    /// An echoed join-key column: the values read with, in the key's declared type;
    /// one per key when its rows repeat keys as `repeats` says.
    pub(super) fn join_key_column(
        &self,
        idx: usize,
        jk: &PlanJoinKey,
        repeats: Option<&Arc<RowKeys>>,
    ) -> Result<FeatureColumn, Error> {
        let values = self.coerced(idx, &jk.name, jk.value_type)?;
        // The keys are made by now: a coerced column moves into the response when
        // nothing else holds it.
        self.coerced
            .borrow_mut()
            .retain(|(k, _)| *k != (idx, jk.value_type));
        if let Some(keys) = repeats {
            let by_key = keys
                .first_row
                .iter()
                .map(|&row| copy_value(&values[row as usize]))
                .collect();
            return Ok(FeatureColumn::supplied_repeating(by_key, keys.clone()));
        }
        Ok(FeatureColumn::supplied(match values {
            KeyValues::Sent(values) => values.to_vec(),
            KeyValues::Coerced(values) => Arc::unwrap_or_clone(values),
        }))
    }
}

/// The integers of the first rows with each key, in step with [`RowKeys::first_row`],
/// for a view keyed by one INT64 join key (the most common key): a row that repeats
/// a key is found by comparing integers. Given up for good once a row holds something
/// else or the keys outgrow the linear scan.
struct FirstInts {
    ints: [i64; KeySet::LINEAR_MAX + 1],
    len: usize,
    on: bool,
}

impl FirstInts {
    fn new() -> Self {
        FirstInts {
            ints: [0; KeySet::LINEAR_MAX + 1],
            len: 0,
            on: true,
        }
    }

    /// The integer a row is matched by, while the integers are in use.
    fn key_of(&mut self, v: &Value) -> Option<i64> {
        match (self.on, &v.val) {
            (true, Some(Val::Int64Val(x))) => Some(*x),
            _ => {
                self.on = false;
                None
            }
        }
    }

    /// The key whose first row holds `x`.
    fn position(&self, x: i64) -> Option<usize> {
        self.ints[..self.len].iter().position(|&y| y == x)
    }

    /// Records the integer of a row with a new key (`None`: not matched by one).
    fn push(&mut self, int: Option<i64>) {
        match int {
            Some(x) if self.on && self.len < self.ints.len() => {
                self.ints[self.len] = x;
                self.len += 1;
            }
            _ => self.on = false,
        }
    }
}

/// Whether two join-key values are equal: the common key types compared inline.
fn same_value(a: &Value, b: &Value) -> bool {
    match (&a.val, &b.val) {
        (Some(Val::Int64Val(x)), Some(Val::Int64Val(y))) => x == y,
        (Some(Val::StringVal(x)), Some(Val::StringVal(y))) => x == y,
        _ => a == b,
    }
}

/// Unique entity keys in first-seen order: a linear scan while there are few (the
/// common case), a hash index beyond that.
#[derive(Default)]
pub(super) struct KeySet {
    keys: Vec<Vec<u8>>,
    index: Option<HashMap<Vec<u8>, u32>>,
}

impl KeySet {
    const LINEAR_MAX: usize = 16;

    fn with_capacity(keys: usize) -> Self {
        KeySet {
            keys: Vec::with_capacity(keys),
            index: None,
        }
    }

    /// The index of `key`, and whether it was new.
    fn insert(&mut self, key: &[u8]) -> (u32, bool) {
        let found = match &self.index {
            Some(ix) => ix.get(key).copied(),
            None => self
                .keys
                .iter()
                .position(|k| same_key(k, key))
                .map(|i| i as u32),
        };
        if let Some(i) = found {
            return (i, false);
        }
        let i = self.keys.len() as u32;
        self.keys.push(key.to_vec());
        if let Some(ix) = &mut self.index {
            ix.insert(key.to_vec(), i);
        } else if self.keys.len() > Self::LINEAR_MAX {
            self.index = Some(
                self.keys
                    .iter()
                    .enumerate()
                    .map(|(j, k)| (k.clone(), j as u32))
                    .collect(),
            );
        }
        (i, true)
    }

    fn into_keys(self) -> Vec<Vec<u8>> {
        self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_and_empty_entities_are_rejected() {
        let v = |n: usize| vec![Value::default(); n];
        let req = OnlineFeaturesRequest {
            entities: vec![("a".into(), v(2)), ("b".into(), v(1))],
            ..Default::default()
        };
        assert!(
            matches!(row_count(&req), Err(Error::InvalidRequest(m)) if m.contains("same columns"))
        );
        let req = OnlineFeaturesRequest {
            entities: vec![("a".into(), v(0))],
            ..Default::default()
        };
        assert!(matches!(row_count(&req), Err(Error::InvalidRequest(_))));
        let req = OnlineFeaturesRequest::default();
        assert!(matches!(row_count(&req), Err(Error::InvalidRequest(_))));
        let req = OnlineFeaturesRequest {
            entities: vec![("a".into(), v(3))],
            request_context: vec![("r".into(), v(3))],
            ..Default::default()
        };
        assert_eq!(row_count(&req).ok(), Some(3));
    }

    /// The unique keys and row mapping of `ids` as `keys_for` makes them, checked
    /// against each row's key serialized and deduplicated in first-seen order.
    fn check_keys(ids: &[Value]) {
        let registry = crate::registry::demo_registry();
        let refs = ["driver_hourly_stats:conv_rate".to_string()];
        let plan = super::super::plan::PlanCache::default()
            .get(
                &registry,
                &crate::online_store::demo_sqlite(),
                super::super::plan::Selection::Refs(&refs),
                false,
            )
            .expect("a plan");
        let req = OnlineFeaturesRequest {
            entities: vec![("driver_id".into(), ids.to_vec())],
            ..Default::default()
        };
        let read = &plan.reads[0];
        let (keys, rows) = EntityInputs::resolve(&plan, &req)
            .expect("join keys")
            .keys_for(read, ids.len())
            .expect("keys");
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for (row, id) in ids.iter().enumerate() {
            let coerced = coerce(id, ValueType::Int64).expect("an integer id");
            let mut key = Vec::new();
            read.view
                .key_layout
                .serialize(&[&coerced], &mut key)
                .expect("a key");
            let k = match expected.iter().position(|e| *e == key) {
                Some(k) => k,
                None => {
                    expected.push(key);
                    assert_eq!(rows.first_row[expected.len() - 1] as usize, row);
                    expected.len() - 1
                }
            };
            assert_eq!(rows.key_of_row[row] as usize, k, "row {row}");
        }
        assert_eq!(keys, expected);
        assert_eq!(rows.first_row.len(), keys.len());
    }

    #[test]
    fn repeated_rows_share_their_key() {
        let int64 = |i: i64| Value {
            val: Some(Val::Int64Val(i)),
        };
        let int32 = |i: i32| Value {
            val: Some(Val::Int32Val(i)),
        };
        // Five keys repeated; then 20 distinct keys, past the keys found by value,
        // repeated; then values of another type that coerce to keys already seen.
        let periodic: Vec<Value> = (0..40).map(|i| int64(1001 + i % 5)).collect();
        check_keys(&periodic);
        let many: Vec<Value> = (0..60).map(|i| int64(1 + (i * 7) % 20)).collect();
        check_keys(&many);
        let mixed: Vec<Value> = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    int64(5 + i % 3)
                } else {
                    int32(5 + (i % 3) as i32)
                }
            })
            .collect();
        check_keys(&mixed);
        // Exactly as many keys as the integers hold, then one more.
        let full: Vec<Value> = (0..40).map(|i| int64(i % 17)).collect();
        check_keys(&full);
        let past: Vec<Value> = (0..40).map(|i| int64(i % 18)).collect();
        check_keys(&past);
    }

    #[test]
    fn first_ints_are_given_up_for_anything_but_integers_in_step() {
        let int64 = |i: i64| Value {
            val: Some(Val::Int64Val(i)),
        };
        let mut ints = FirstInts::new();
        assert_eq!(ints.key_of(&int64(7)), Some(7));
        ints.push(Some(7));
        assert_eq!(ints.position(7), Some(0));
        assert_eq!(ints.position(8), None);
        let text = Value {
            val: Some(Val::StringVal("7".into())),
        };
        assert_eq!(ints.key_of(&text), None);
        assert_eq!(ints.key_of(&int64(7)), None, "off for good");
        let mut full = FirstInts::new();
        for i in 0..=KeySet::LINEAR_MAX as i64 {
            full.push(Some(i));
        }
        full.push(Some(99));
        assert_eq!(full.key_of(&int64(1)), None, "off past the linear scan");
    }
}
