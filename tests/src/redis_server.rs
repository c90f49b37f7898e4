//! Real `redis-server` processes for tests: a standalone server or a cluster on free
//! loopback ports, each in its own temporary directory, killed on drop; and the exact
//! bytes `feast materialize` wrote into Redis (`tests/fixtures/redis_dump.json`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::workspace_root;

/// A `redis-server` process on 127.0.0.1.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    /// Its TLS port, when it takes TLS connections too.
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    cluster: bool,
    /// More `redis-server` arguments.
    extra_args: Vec<String>,
}

/// A port that is free, and (for cluster nodes) whose bus port (+10000) is free too.
pub fn free_port(with_bus: bool) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

impl RedisServer {
    /// Starts a standalone server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port(false), false)
    }

    /// Starts a server on `port` (a cluster node when `cluster`).
    pub fn start_on(port: u16, cluster: bool) -> Self {
        Self::start_node(port, cluster, None)
    }

    /// Starts a standalone server that also takes TLS connections on its `tls_port`,
    /// with the certificate and key in `cert` (plain connections stay on `port`); with
    /// `client_auth`, TLS clients must show a certificate `cert` signed (itself).
    pub fn start_with_tls(cert: &crate::SelfSigned, client_auth: bool) -> Self {
        Self::start_node(free_port(false), false, Some((cert, client_auth)))
    }

    fn start_node(port: u16, cluster: bool, tls: Option<(&crate::SelfSigned, bool)>) -> Self {
        let mut s = RedisServer {
            port,
            tls_port: None,
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            cluster,
            extra_args: Vec::new(),
        };
        if let Some((cert, client_auth)) = tls {
            // A cluster node's TLS port needs a free bus port (+10000) too.
            let tls_port = free_port(cluster);
            let path = |p: &Path| p.display().to_string();
            s.tls_port = Some(tls_port);
            s.extra_args = vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                path(&cert.files.cert),
                "--tls-key-file".into(),
                path(&cert.files.key),
                "--tls-ca-cert-file".into(),
                path(&cert.files.cert),
                "--tls-auth-clients".into(),
                if client_auth { "yes" } else { "no" }.into(),
            ];
            if cluster {
                // Cluster nodes talk TLS to each other and name their TLS ports to
                // TLS clients.
                s.extra_args.extend(["--tls-cluster".into(), "yes".into()]);
                s.extra_args
                    .extend(["--tls-replication".into(), "yes".into()]);
            }
        }
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .args(&self.extra_args);
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (tests/prereqs.sh installs it)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A synchronous connection.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connection")
    }

    /// Starts a sentinel on a free port monitoring the master on `master_port` as
    /// `mymaster` (over TLS with `tls`, trusting and showing that certificate; clients
    /// still talk to the sentinel in plain text).
    pub fn start_sentinel(master_port: u16, tls: Option<&crate::SelfSigned>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port(false);
        let conf = dir.path().join("sentinel.conf");
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n",
            dir.path().display()
        );
        if let Some(cert) = tls {
            let (c, k) = (cert.files.cert.display(), cert.files.key.display());
            text += &format!(
                "tls-cert-file {c}\ntls-key-file {k}\ntls-ca-cert-file {c}\ntls-replication yes\n"
            );
        }
        text += &format!(
            "sentinel monitor mymaster 127.0.0.1 {master_port} 1\nsentinel down-after-milliseconds mymaster 1000\n"
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let s = RedisServer {
            port,
            tls_port: None,
            child: Some(child),
            dir,
            cluster: false,
            extra_args: Vec::new(),
        };
        s.wait_ready();
        s
    }

    /// Kills the server (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}

/// A Redis Cluster of `masters` masters (and `replicas` replicas each).
pub struct RedisCluster {
    /// Every node, masters first as `redis-cli --cluster create` assigns them.
    pub nodes: Vec<RedisServer>,
    replicas: usize,
}

impl RedisCluster {
    /// Starts the nodes and joins them with `redis-cli --cluster create`.
    pub fn start(masters: usize, replicas: usize) -> Self {
        Self::start_nodes(masters, replicas, None)
    }

    /// A cluster of `masters` masters whose nodes also take TLS connections with
    /// `cert` (see [`RedisServer::start_with_tls`]) and talk TLS to each other.
    pub fn start_with_tls(masters: usize, cert: &crate::SelfSigned) -> Self {
        Self::start_nodes(masters, 0, Some(cert))
    }

    fn start_nodes(masters: usize, replicas: usize, tls: Option<&crate::SelfSigned>) -> Self {
        let total = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..total)
            .map(|_| RedisServer::start_node(free_port(true), true, tls.map(|c| (c, false))))
            .collect();
        let mut create = Command::new("redis-cli");
        let addrs: Vec<String> = match tls {
            None => nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port))
                .collect(),
            Some(cert) => {
                // Nodes meet over TLS, so they are introduced by their TLS ports.
                create.arg("--tls").arg("--cacert").arg(&cert.files.cert);
                nodes
                    .iter()
                    .filter_map(|n| n.tls_port)
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect()
            }
        };
        let out = create
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli is installed (tests/prereqs.sh installs it)");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes, replicas };
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    }

    /// Waits until every live node reports `cluster_state:ok`.
    pub fn wait_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut n.connection())
                    .map(|s| s.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cluster did not become ok");
    }

    /// Waits until every replica is online and has applied everything its master
    /// wrote (a replica that never synced refuses to take over, and one that lags
    /// would lose data on failover).
    pub fn wait_replicas_synced(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let synced = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                let Ok(info) = redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut n.connection())
                else {
                    return false;
                };
                if !info.contains("role:master") {
                    return true;
                }
                let field = |line: &str, key: &str| {
                    line.split([',', ':'])
                        .find_map(|kv| kv.strip_prefix(key).map(str::to_string))
                };
                let offset = info
                    .lines()
                    .find_map(|l| l.strip_prefix("master_repl_offset:"))
                    .map(str::trim)
                    .map(str::to_string);
                let replicas: Vec<&str> = info.lines().filter(|l| l.starts_with("slave")).collect();
                let expected = info
                    .lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                replicas.len() == expected
                    && expected >= self.replicas
                    && replicas.iter().all(|l| {
                        field(l, "state=").as_deref() == Some("online")
                            && field(l, "offset=") == offset
                    })
            });
            if synced {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("replicas did not sync");
    }

    /// Waits until `port` no longer serves the slot of `key` and another master does.
    pub fn wait_failover(&self, key: &[u8], old_port: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(p) = self.master_port_for(key)
                && p != old_port
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no replica took over from {old_port}");
    }

    /// `host:port,host:port,...` of the nodes.
    pub fn connection_string(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes' TLS ports as Feast's `connection_string` node list.
    pub fn tls_connection_string(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.tls_port)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cluster-aware synchronous connection.
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.nodes.iter().map(|n| n.url()).collect::<Vec<_>>())
            .expect("cluster client")
            .get_connection()
            .expect("cluster connection")
    }

    /// The port of the master currently serving a key (from `CLUSTER NODES`).
    pub fn master_port_for(&self, key: &[u8]) -> Option<u16> {
        let slot = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query::<i64>(&mut self.live_node().connection())
            .ok()?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut self.live_node().connection())
            .ok()?;
        for line in nodes.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 9 || !parts[2].contains("master") || parts[2].contains("fail") {
                continue;
            }
            let port: u16 = parts[1].split(['@', ':']).nth(1)?.parse().ok()?;
            for range in &parts[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>())
                    && (a..=b).contains(&slot)
                {
                    return Some(port);
                }
            }
        }
        None
    }

    fn live_node(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node")
    }

    /// The node on `port`.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("node")
    }
}

/// One hash as Feast wrote it: key and (field, value) pairs.
pub struct DumpedHash {
    /// Hash key (entity key + project).
    pub key: Vec<u8>,
    /// Fields and values.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every key and field `feast materialize` wrote for the demo (tests/fixtures/redis_dump.json).
pub fn feast_redis_dump() -> Vec<DumpedHash> {
    let path: PathBuf = workspace_root().join("tests/fixtures/redis_dump.json");
    let dump: Json =
        serde_json::from_slice(&std::fs::read(&path).expect("read dump")).expect("json");
    dump["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| DumpedHash {
            key: unhex(k["key_hex"].as_str().expect("key_hex")),
            fields: k["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .map(|f| {
                    (
                        unhex(f["field_hex"].as_str().expect("field_hex")),
                        unhex(f["value_hex"].as_str().expect("value_hex")),
                    )
                })
                .collect(),
        })
        .collect()
}

/// Writes the Feast dump through any connection (standalone or cluster).
pub fn load_feast_dump(conn: &mut impl redis::ConnectionLike) {
    for h in feast_redis_dump() {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&h.key);
        for (f, v) in &h.fields {
            cmd.arg(f).arg(v);
        }
        cmd.query::<i64>(conn).expect("HSET");
    }
}

/// `feature_store.yaml` for the demo registry on a Redis store.
pub fn redis_feature_store_yaml(connection_string: &str, redis_type: &str) -> String {
    format!(
        "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n    type: redis\n    redis_type: {redis_type}\n    connection_string: \"{connection_string}\"\nentity_key_serialization_version: 3\n"
    )
}

/// A `feature_store.yaml` whose online store is the component at `component`, reading
/// Feast's Redis layout on the standalone server at `addr` (`ip:port`), which is also
/// the only address it may connect to; `extra` is appended to the `online_store`
/// section (indented by four spaces).
pub fn wasm_redis_feature_store_yaml(
    component: &std::path::Path,
    addr: &str,
    extra: &str,
) -> String {
    format!(
        "project: repo\nregistry: data/registry.db\nprovider: local\nonline_store:\n    type: wasm\n    component: {}\n    config:\n        connection_string: \"{addr}\"\n    allow: [\"{addr}\"]\n{extra}entity_key_serialization_version: 3\n",
        component.display()
    )
}
