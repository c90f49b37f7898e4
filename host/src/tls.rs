//! TLS for the HTTP and gRPC servers: a PEM certificate chain and private key, as
//! `feast serve --key/--cert` take them; rustls with the ring crypto provider.

use std::path::{Path, PathBuf};

/// The certificate and key files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A TLS set-up problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two files was given.
    #[error("TLS needs both --key and --cert")]
    Incomplete,
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The files are not a usable certificate and key.
    #[error("invalid TLS certificate or key: {0}")]
    Invalid(String),
}

/// Makes ring the process-wide rustls crypto provider (once; later calls are no-ops).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TlsFiles {
    /// The files from `--key`/`--cert`, if TLS was asked for.
    pub fn from_args(key: Option<&Path>, cert: Option<&Path>) -> Result<Option<Self>, TlsError> {
        match (key, cert) {
            (None, None) => Ok(None),
            (Some(key), Some(cert)) => Ok(Some(TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// Reads both files: (certificate PEM, key PEM).
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }
}
