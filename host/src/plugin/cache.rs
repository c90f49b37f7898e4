//! The on-disk cache of compiled components.
//!
//! Wasmtime loads cached machine code without checking it: whoever can write a cache
//! entry can run code in this server. So a cache directory is used only when it is
//! owned by the server's user and writable by no one else, and every directory above
//! it is owned by that user or root and writable by no one else (or sticky, as
//! `/tmp`, where others cannot move entries); otherwise the server says why and
//! compiles in memory. Each entry is checked the same way before it is loaded, and
//! written with mode 0600 (the directory is created 0700).
//!
//! Entries are named `<SHA-256 of the component>-<engine key>.cwasm`: the engine key
//! is a SHA-256 of wasmtime's compatibility hash, which covers wasmtime's own
//! version, the target and CPU features, and every setting that changes the code,
//! so a file is only read by an engine that could have written it, for the bytes it
//! was compiled from.

use std::fs::Metadata;
use std::hash::Hash;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A cache directory found trustworthy, for one engine.
#[derive(Clone, Debug)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// The cache in `dir` (created if missing) for `engine`, or `None` (with a
    /// warning saying why) when the directory cannot be trusted.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> Option<Self> {
        if !dir.exists()
            && let Err(e) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "the plugin compile cache directory cannot be created; plugins are compiled in memory");
            return None;
        }
        if let Err(why) = trusted_dir(&dir) {
            tracing::warn!(dir = %dir.display(), reason = %why, "the plugin compile cache directory is not trusted (cached machine code is loaded unchecked); plugins are compiled in memory");
            return None;
        }
        Some(CompileCache {
            dir,
            engine_key: engine_key(engine),
        })
    }

    /// Where the entry for a component's bytes is.
    pub(crate) fn path(&self, bytes: &[u8]) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", content_hash(bytes), self.engine_key))
    }

    /// The component of a cache entry, `None` when there is none.
    pub(crate) fn load(&self, engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        owned_and_private(&meta)?;
        load_unchecked(engine, path)
            .map(Some)
            .map_err(|e| format!("{e:#}"))
    }
}

/// Writes a compiled component where `path` says, atomically (a private temporary
/// file renamed into place), readable and writable by this user only.
pub(crate) fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads a compiled component from a checked cache entry.
#[expect(
    unsafe_code,
    reason = "wasmtime loads precompiled machine code only through an unsafe call"
)]
fn load_unchecked(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize_file` trusts its input to be wasmtime's own
    // output. The entry is in a directory only this user can write (checked when the
    // cache was opened), it is a regular file owned by this user and writable by no
    // one else (checked by the caller), it was written from `Component::serialize`
    // (`store`), and its name carries the source's SHA-256 and this engine's key,
    // so it is only read by an engine that could have written it.
    unsafe { Component::deserialize_file(engine, path) }
}

/// A stable digest of the engine's compatibility hash (which covers wasmtime's
/// version): the same for every process built alike, unlike `DefaultHasher`.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..8])
}

/// A `Hasher` that feeds what it is given into SHA-256.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only the digest is used.
        0
    }
}

/// The cache directory and its ancestors can be written only by this user (or
/// root, for ancestors; sticky ancestors are fine).
fn trusted_dir(dir: &Path) -> Result<(), String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    owned_and_private(&meta).map_err(|why| format!("{}: {why}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        let owner_ok = meta.uid() == me || meta.uid() == 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if !owner_ok {
            return Err(format!(
                "{} is owned by uid {}, not by this user ({me}) or root",
                ancestor.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(format!(
                "{} is writable by its group or others (mode {:o})",
                ancestor.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// Owned by this user and writable by no one else.
fn owned_and_private(meta: &Metadata) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "owned by uid {}, not by this user ({me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by its group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// SHA-256 of bytes, as hex.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn only_private_directories_and_entries_are_trusted() {
        let root = tempfile::tempdir().expect("temp dir");
        set_mode(root.path(), 0o700);
        let engine = Engine::default();
        let dir = root.path().join("cache");
        let cache = CompileCache::open(dir.clone(), &engine).expect("a new private directory");
        assert_eq!(
            std::fs::metadata(&dir).expect("created").mode() & 0o777,
            0o700
        );
        set_mode(&dir, 0o777);
        assert!(CompileCache::open(dir.clone(), &engine).is_none());
        set_mode(&dir, 0o750);
        assert!(CompileCache::open(dir.clone(), &engine).is_some());
        // A group-writable parent makes the whole path untrusted; a sticky one does not.
        set_mode(root.path(), 0o770);
        assert!(CompileCache::open(dir.clone(), &engine).is_none());
        set_mode(root.path(), 0o1777);
        assert!(CompileCache::open(dir.clone(), &engine).is_some());
        set_mode(root.path(), 0o700);

        // The smallest component: the preamble of the component binary format.
        let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let component = Component::new(&engine, empty).expect("component");
        let path = cache.path(&empty);
        store(&component, &path).expect("stored");
        assert_eq!(
            std::fs::metadata(&path).expect("entry").mode() & 0o777,
            0o600
        );
        assert!(matches!(cache.load(&engine, &path), Ok(Some(_))));
        set_mode(&path, 0o666);
        assert!(
            cache.load(&engine, &path).is_err(),
            "others could have written it"
        );
        assert!(matches!(
            cache.load(&engine, &dir.join("missing.cwasm")),
            Ok(None)
        ));
    }

    #[test]
    fn the_engine_key_is_stable_and_follows_the_settings() {
        let a = engine_key(&Engine::default());
        assert_eq!(a, engine_key(&Engine::default()));
        let mut other = wasmtime::Config::new();
        other.cranelift_opt_level(wasmtime::OptLevel::None);
        assert_ne!(a, engine_key(&Engine::new(&other).expect("engine")));
    }
}
