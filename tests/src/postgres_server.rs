//! A real PostgreSQL server for tests: `initdb` into a temporary directory and
//! `pg_ctl` on a free loopback port (as the `postgres` system user when the tests run
//! as root, since PostgreSQL refuses to run as root), password authentication with
//! SCRAM-SHA-256 on TCP, stopped on drop; and the tables `feast materialize` wrote
//! (`tests/fixtures/postgres_dump.sql`, made by `demo/regenerate.sh`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::redis_server::free_port;
use crate::workspace_root;

/// The superuser's password.
const SUPERUSER_PASSWORD: &str = "postgres-test";

/// A PostgreSQL server on 127.0.0.1.
pub struct PostgresServer {
    /// Its port.
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The system user the server runs as (uid, gid), when the tests run as root.
    run_as: Option<(u32, u32)>,
    running: bool,
}

/// The directory of PostgreSQL's programs: the newest `/usr/lib/postgresql/<version>/bin`
/// (where Debian's packages put them), else the directory on `PATH` with `pg_ctl`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("pg_ctl").is_file() && d.join("initdb").is_file())
        .expect("PostgreSQL is not installed (tests/prereqs.sh installs the postgresql package)")
}

/// The uid and gid of the `postgres` system user (from /etc/passwd).
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres"))
                .then(|| (f[2].parse().expect("uid"), f[3].parse().expect("gid")))
        })
        .expect("no `postgres` system user to run PostgreSQL as (the tests run as root)")
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PostgresServer {
    /// Creates a cluster and starts it on a free port.
    pub fn start() -> Self {
        let bin = bin_dir();
        // Running as root: /proc/self belongs to uid 0.
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let run_as = root.then(postgres_user);
        // The server's user must reach its directory: as root, under /tmp (a private
        // TMPDIR of root's would not let it in).
        let dir = if root {
            tempfile::Builder::new()
                .prefix("feast-pg-")
                .tempdir_in("/tmp")
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let server = PostgresServer {
            port: free_port(false),
            bin,
            dir,
            run_as,
            running: false,
        };
        let pwfile = server.dir.path().join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).expect("pwfile");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown");
        }
        check(
            "initdb",
            server
                .tool("initdb")
                .arg("-D")
                .arg(server.data())
                .args(["-U", "postgres", "-E", "UTF8", "--no-locale"])
                .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output()
                .expect("run initdb"),
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\ntimezone = 'UTC'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
            server.port,
            server.dir.path().display()
        );
        let conf_path = server.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        let mut server = server;
        server.restart();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server program, run as the server's user.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut cmd = Command::new(if path.is_file() { path } else { name.into() });
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn pg_ctl(&self, action: &str) -> Output {
        self.tool("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "30", "-m", "fast", action])
            .output()
            .expect("run pg_ctl")
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&mut self) {
        if self.running {
            check("pg_ctl stop", self.pg_ctl("stop"));
            self.running = false;
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        if !self.running {
            let out = self.pg_ctl("start");
            if !out.status.success() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                panic!(
                    "pg_ctl start failed: {}{}\n{log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            self.running = true;
        }
    }

    /// Runs SQL (`-c`) or a file (`-f`) with `psql` as the superuser, on `database`,
    /// stopping at the first error; returns the output (unaligned, tuples only).
    pub fn psql(&self, database: &str, args: &[&str]) -> String {
        let out = check(
            "psql",
            self.tool("psql")
                .arg("-h")
                .arg(self.dir.path())
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                ])
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .args(args)
                .output()
                .expect("run psql"),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates the role `user` (password `password`) and a database `name` it owns.
    pub fn create_database(&self, name: &str, user: &str, password: &str) {
        self.psql(
            "postgres",
            &[
                "-c",
                &format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"),
                "-c",
                &format!("CREATE DATABASE \"{name}\" OWNER \"{user}\""),
            ],
        );
    }

    /// Loads the tables Feast wrote (`tests/fixtures/postgres_dump.sql`) into
    /// `database`, owned by `user`.
    pub fn load_feast_dump(&self, database: &str, user: &str) {
        let dump = workspace_root().join("tests/fixtures/postgres_dump.sql");
        // The server's user must be able to read the file: copy it into the directory.
        let copy = self.dir.path().join("dump.sql");
        std::fs::copy(&dump, &copy).expect("copy the dump");
        self.psql(
            database,
            &["-c", &format!("SET ROLE \"{user}\""), "-f", path_str(&copy)],
        );
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl("stop");
        }
    }
}

/// A `feature_store.yaml` whose online store is the PostgreSQL store component
/// `component` on `database` of the server on `port` (Feast's PostgreSQL keys under
/// `config`), with `extra` (indented four spaces) added to the `online_store` block.
pub fn wasm_postgres_feature_store_yaml(
    component: &Path,
    port: u16,
    database: &str,
    user: &str,
    password: &str,
    extra: &str,
) -> String {
    format!(
        "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n    type: wasm\n    component: {}\n    allow: [\"127.0.0.1:{port}\"]\n    config:\n        host: 127.0.0.1\n        port: {port}\n        database: {database}\n        db_schema: public\n        user: {user}\n        password: {password}\n        sslmode: disable\n{extra}entity_key_serialization_version: 3\n",
        component.display()
    )
}
