//! A test-only online store component that misbehaves when a read asks for one of
//! the entity ids below (the last 8 bytes of a serialized INT64 entity key); any
//! other key is "not found", and every write is acknowledged without being kept.
//! It implements the `online-store` world directly (not through the SDK's
//! `export_store!`), so it can also answer bytes the SDK would never encode.
//!
//! | entity id | misbehaviour | what the server must do |
//! |---|---|---|
//! | 1666 | loops forever | 503 within the deadline |
//! | 1667 | panics | 500 naming the panic |
//! | 1668 | connects to `config.forbidden` (not on the allow list) | the connect fails inside the component (500), logged |
//! | 1669 | answers one row less than asked | 500: the contract is broken |
//! | 1670 | connects to `config.silent` (allowed, never answers) and waits | 503 within the deadline |
//! | 1671 | allocates 1 GiB | 500: memory limit |
//! | 1672 | answers bytes that are not Arrow IPC | 500: the contract is broken |

/// Entity ids that trigger a misbehaviour.
pub const MAGIC: [i64; 7] = [1666, 1667, 1668, 1669, 1670, 1671, 1672];

/// The entity id at the end of a serialized INT64 entity key.
pub fn entity_id(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(i64::from_le_bytes(tail))
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::cell::RefCell;
    use std::io::Read;

    use feast_plugin_sdk::store::{StoreConfig, StoredRow, codec};
    use feast_plugin_sdk::store_bindings::exports::feast::plugin::store::{self as wit, Guest};

    thread_local! {
        static CONFIG: RefCell<StoreConfig> = RefCell::new(StoreConfig::default());
    }

    struct Evil;

    fn failed(m: String) -> wit::StoreError {
        wit::StoreError::Failed(m)
    }

    fn address(key: &str) -> Result<std::net::SocketAddr, wit::StoreError> {
        CONFIG.with_borrow(|c| {
            c.str(key)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| failed(format!("config.{key} is not ip:port")))
        })
    }

    impl Guest for Evil {
        fn open(config: String) -> Result<wit::StoreInfo, wit::StoreError> {
            feast_plugin_sdk::export::install_panic_hook();
            let parsed = StoreConfig::parse(&config).map_err(|e| failed(e.to_string()))?;
            CONFIG.with_borrow_mut(|c| *c = parsed);
            Ok(wit::StoreInfo {
                name: "evil-store".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            })
        }

        fn read(views: Vec<wit::ViewRead>) -> Result<Vec<Vec<u8>>, wit::StoreError> {
            let mut answers = Vec::with_capacity(views.len());
            for v in &views {
                let keys = codec::decode_keys(&v.keys).map_err(|e| failed(e.to_string()))?;
                let mut rows = keys.len();
                for id in keys.iter().filter_map(|k| super::entity_id(k)) {
                    match id {
                        1666 => loop {
                            std::hint::black_box(rows);
                        },
                        1667 => panic!("the evil store panics on purpose"),
                        1668 => {
                            let to = address("forbidden")?;
                            return match std::net::TcpStream::connect(to) {
                                Ok(_) => {
                                    Err(failed(format!("connected to {to}: the sandbox let it")))
                                }
                                Err(e) => Err(failed(format!("cannot connect to {to}: {e}"))),
                            };
                        }
                        1669 => rows = rows.saturating_sub(1),
                        1670 => {
                            let mut s = std::net::TcpStream::connect(address("silent")?)
                                .map_err(|e| wit::StoreError::Unavailable(e.to_string()))?;
                            let mut buf = [0u8; 1];
                            let _ = s.read(&mut buf);
                            return Err(failed("the silent backend answered".into()));
                        }
                        1671 => {
                            let big = vec![1u8; 1 << 30];
                            std::hint::black_box(&big);
                        }
                        1672 => return Ok(vec![b"not arrow ipc".to_vec(); views.len()]),
                        _ => {}
                    }
                }
                let answer = vec![StoredRow::default(); rows];
                answers.push(
                    codec::encode_rows(&v.features, &answer).map_err(|e| failed(e.to_string()))?,
                );
            }
            Ok(answers)
        }

        fn write(views: Vec<wit::ViewWrite>) -> Result<wit::WriteOutcome, wit::StoreError> {
            let mut written = 0;
            for v in &views {
                written += codec::decode_writes(&v.rows, &v.features)
                    .map_err(|e| failed(e.to_string()))?
                    .len() as u64;
            }
            Ok(wit::WriteOutcome {
                written,
                skipped: 0,
            })
        }

        fn ping() -> Result<(), wit::StoreError> {
            Ok(())
        }
    }

    feast_plugin_sdk::store_bindings::export!(Evil with_types_in feast_plugin_sdk::store_bindings);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entity_id_is_the_keys_last_eight_bytes() {
        let mut key = vec![1, 0, 0, 0];
        key.extend_from_slice(&1667i64.to_le_bytes());
        assert_eq!(entity_id(&key), Some(1667));
        assert_eq!(entity_id(&[1, 2]), None);
        assert!(MAGIC.contains(&1667));
    }
}
