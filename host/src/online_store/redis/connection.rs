//! Connections to a standalone server, a cluster or a sentinel-managed master, all
//! created lazily so the server starts (and reports itself unavailable) while Redis
//! is down, and recovers by itself when Redis returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, RedisResult, TlsCertificates,
    TlsMode,
};
use tokio::sync::Mutex;

use super::options::{RedisOptions, Topology};

/// A way to run pipelines against the configured deployment.
pub(super) enum Connection {
    Standalone(ConnectionManager),
    Cluster(Lazy<ClusterClient, ClusterConnection>),
    Sentinel(Lazy<Mutex<SentinelClient>, MultiplexedConnection>),
}

/// How long a connection is kept, at least, before a failure makes it be made again:
/// while a cluster fails over, every request fails, and starting over from the seed
/// nodes for each of them would flood the nodes that are still up with connections.
const MIN_CONNECTION_AGE: Duration = Duration::from_secs(1);

/// A connection made on first use and made again after it failed.
pub(super) struct Lazy<S, C> {
    source: S,
    current: ArcSwapOption<Made<C>>,
    connecting: Mutex<()>,
    opts: Arc<RedisOptions>,
}

/// A connection and when it was made.
struct Made<C> {
    conn: C,
    at: Instant,
}

impl<S, C: Clone> Lazy<S, C> {
    fn new(source: S, opts: Arc<RedisOptions>) -> Self {
        Lazy {
            source,
            current: ArcSwapOption::empty(),
            connecting: Mutex::new(()),
            opts,
        }
    }

    /// The current connection, made with `connect` when there is none (one
    /// connection attempt at a time).
    async fn get<F, Fut>(&self, connect: F) -> RedisResult<C>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RedisResult<C>>,
    {
        if let Some(made) = self.current.load_full() {
            return Ok(made.conn.clone());
        }
        let _guard = self.connecting.lock().await;
        if let Some(made) = self.current.load_full() {
            return Ok(made.conn.clone());
        }
        let conn = crate::timeout::within_running_time(self.opts.connect_timeout, connect())
            .await
            .map_err(|_| timeout_error("connect"))??;
        self.current.store(Some(Arc::new(Made {
            conn: conn.clone(),
            at: Instant::now(),
        })));
        Ok(conn)
    }

    /// Drops the current connection so the next request makes a new one, unless it
    /// was made less than [`MIN_CONNECTION_AGE`] ago.
    fn reset(&self) {
        let current = self.current.load();
        if let Some(made) = current.as_ref()
            && made.at.elapsed() >= MIN_CONNECTION_AGE
        {
            // Only this connection: one made meanwhile by another request stays.
            self.current.compare_and_swap(&*current, None);
        }
    }
}

/// `work`'s result, or a timeout error once `budget` of this thread's running time is
/// spent.
async fn within_budget<T>(
    budget: Duration,
    work: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    crate::timeout::within_running_time(budget, work)
        .await
        .unwrap_or_else(|_| Err(timeout_error("reply")))
}

fn timeout_error(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

fn connection_info(opts: &RedisOptions, host: &str, port: u16) -> RedisResult<ConnectionInfo> {
    let addr = if opts.tls {
        ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: opts.tls_insecure,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    };
    // Built from the address, not a URL: an IPv6 host needs no brackets here.
    Ok(addr
        .into_connection_info()?
        .set_redis_settings(redis_settings(opts)))
}

/// The CA and client certificates named in the options, read from their files (none
/// without TLS: they apply to TLS connections only).
pub(super) fn tls_certificates(opts: &RedisOptions) -> RedisResult<Option<TlsCertificates>> {
    if !opts.tls || (opts.tls_ca_file.is_none() && opts.tls_client_files.is_none()) {
        return Ok(None);
    }
    let read = |option: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read a certificate file",
                format!("{option} {}: {e}", path.display()),
            ))
        })
    };
    let root_cert = match &opts.tls_ca_file {
        Some(path) => Some(read("ssl_ca_certs", path)?),
        None => None,
    };
    let client_tls = match &opts.tls_client_files {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("ssl_certfile", cert)?,
            client_key: read("ssl_keyfile", key)?,
        }),
        None => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn redis_settings(opts: &RedisOptions) -> RedisConnectionInfo {
    let mut r = RedisConnectionInfo::default().set_db(opts.db);
    if let Some(u) = &opts.username {
        r = r.set_username(u);
    }
    if let Some(p) = &opts.password {
        r = r.set_password(p);
    }
    r
}

impl Connection {
    /// Prepares the connection (no network traffic yet), with the certificates read by
    /// [`tls_certificates`].
    pub(super) fn new(
        opts: Arc<RedisOptions>,
        certs: Option<TlsCertificates>,
    ) -> RedisResult<Self> {
        match &opts.topology {
            Topology::Standalone => {
                let (host, port) = &opts.nodes[0];
                let info = connection_info(&opts, host, *port)?;
                let client = match certs {
                    Some(certs) => Client::build_with_tls(info, certs)?,
                    None => Client::open(info)?,
                };
                // Replies are waited for under `query_slot`'s budget instead, which
                // does not count time this thread was not running.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(opts.connect_timeout))
                    .set_response_timeout(None)
                    .set_number_of_retries(1)
                    .set_max_delay(opts.connect_timeout);
                Ok(Connection::Standalone(
                    ConnectionManager::new_lazy_with_config(client, config)?,
                ))
            }
            Topology::Cluster => {
                let nodes = opts
                    .nodes
                    .iter()
                    .map(|(h, p)| connection_info(&opts, h, *p))
                    .collect::<RedisResult<Vec<_>>>()?;
                let mut builder = ClusterClient::builder(nodes)
                    .connection_timeout(opts.connect_timeout)
                    .response_timeout(opts.response_timeout)
                    .retries(2);
                if let Some(u) = &opts.username {
                    builder = builder.username(u);
                }
                if let Some(p) = &opts.password {
                    builder = builder.password(p);
                }
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Ok(Connection::Cluster(Lazy::new(builder.build()?, opts)))
            }
            Topology::Sentinel { master } => {
                let sentinels = opts
                    .nodes
                    .iter()
                    .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p))
                    .collect::<Vec<_>>();
                // As redis-py's `Sentinel`: `ssl`, the certificates and the password
                // apply to the master's connection; the sentinels are asked in plain text.
                let mut builder =
                    SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)?
                        .set_client_to_redis_db(opts.db);
                if let Some(u) = &opts.username {
                    builder = builder.set_client_to_redis_username(u);
                }
                if let Some(p) = &opts.password {
                    builder = builder.set_client_to_redis_password(p);
                }
                if opts.tls {
                    builder = builder.set_client_to_redis_tls_mode(if opts.tls_insecure {
                        TlsMode::Insecure
                    } else {
                        TlsMode::Secure
                    });
                }
                if let Some(certs) = certs {
                    builder = builder.set_client_to_redis_certificates(certs);
                }
                let client = builder.build()?;
                Ok(Connection::Sentinel(Lazy::new(Mutex::new(client), opts)))
            }
        }
    }

    /// Runs one pipeline of commands that all touch the same hash slot (so a cluster
    /// can route it to one node); replies in command order. The replies must come
    /// within `budget` of this thread's running time (see [`crate::timeout`]; a
    /// cluster client times each node's reply itself, on wall time).
    pub(super) async fn query_slot(
        &self,
        pipe: &Pipeline,
        budget: Duration,
    ) -> RedisResult<Vec<redis::Value>> {
        match self {
            Connection::Standalone(cm) => {
                let mut cm = cm.clone();
                within_budget(budget, pipe.query_async(&mut cm)).await
            }
            Connection::Cluster(lazy) => {
                let mut conn = lazy.get(|| lazy.source.get_async_connection()).await?;
                let result = pipe.query_async(&mut conn).await;
                if let Err(e) = &result
                    && is_connection_error(e)
                {
                    // A node went away: the client keeps reconnecting to its address
                    // until a redirection tells it otherwise. Start again from the seed
                    // nodes so a promoted replica is found within a second.
                    lazy.reset();
                }
                result
            }
            Connection::Sentinel(lazy) => {
                let mut conn = sentinel_master(lazy).await?;
                let result = within_budget(budget, pipe.query_async(&mut conn)).await;
                if let Err(e) = &result
                    && is_connection_error(e)
                {
                    // The master may have moved: ask the sentinels again next time.
                    lazy.reset();
                }
                result
            }
        }
    }

    /// Every key matching the `SCAN` pattern `pattern` (on a cluster: on every
    /// primary), in the order the server(s) returned them; may hold a key twice. Each
    /// page must come within `budget` (as in [`Connection::query_slot`]).
    pub(super) async fn scan(&self, pattern: &[u8], budget: Duration) -> RedisResult<Vec<Vec<u8>>> {
        match self {
            Connection::Standalone(cm) => scan_node(&mut cm.clone(), pattern, None, budget).await,
            Connection::Cluster(lazy) => {
                let mut conn = lazy.get(|| lazy.source.get_async_connection()).await?;
                let slots = conn
                    .route_command(
                        redis::cmd("CLUSTER").arg("SLOTS").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                    )
                    .await?;
                let mut keys = Vec::new();
                for (host, port) in primaries(&slots) {
                    let node =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    keys.extend(scan_node(&mut conn, pattern, Some(node), budget).await?);
                }
                Ok(keys)
            }
            Connection::Sentinel(lazy) => {
                let mut conn = sentinel_master(lazy).await?;
                scan_node(&mut conn, pattern, None, budget).await
            }
        }
    }

    /// Whether commands for different hash slots must go in different pipelines.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

/// The master's connection of a sentinel-managed deployment (asking the sentinels
/// where it is when there is none).
async fn sentinel_master(
    lazy: &Lazy<Mutex<SentinelClient>, MultiplexedConnection>,
) -> RedisResult<MultiplexedConnection> {
    let opts = lazy.opts.clone();
    lazy.get(|| async move {
        let master = lazy.source.lock().await.async_get_client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(None);
        master
            .get_multiplexed_async_connection_with_config(&config)
            .await
    })
    .await
}

/// Keys per `SCAN` page asked for.
const SCAN_COUNT: usize = 1_000;

/// Every key of one server matching `pattern`, page by page (each page one command,
/// within `budget`); `node` routes the pages on a cluster.
async fn scan_node<C: redis::aio::ConnectionLike + RouteCommand>(
    conn: &mut C,
    pattern: &[u8],
    node: Option<RoutingInfo>,
    budget: Duration,
) -> RedisResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let reply = match &node {
            Some(routing) => within_budget(budget, conn.route(cmd, routing.clone())).await?,
            None => within_budget(budget, cmd.query_async(conn)).await?,
        };
        let (next, page): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Sending a command to a chosen cluster node.
trait RouteCommand {
    async fn route(&mut self, cmd: redis::Cmd, routing: RoutingInfo) -> RedisResult<redis::Value>;
}

impl RouteCommand for ClusterConnection {
    async fn route(&mut self, cmd: redis::Cmd, routing: RoutingInfo) -> RedisResult<redis::Value> {
        self.route_command(cmd, routing).await
    }
}

/// A single server has no nodes to choose among.
macro_rules! single_node {
    ($($t:ty),*) => {$(
        impl RouteCommand for $t {
            async fn route(&mut self, cmd: redis::Cmd, _: RoutingInfo) -> RedisResult<redis::Value> {
                cmd.query_async(self).await
            }
        }
    )*};
}
single_node!(ConnectionManager, MultiplexedConnection);

/// The primaries' addresses in a `CLUSTER SLOTS` reply (each once).
fn primaries(slots: &redis::Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let redis::Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        let Some(redis::Value::Array(primary)) = parts.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(redis::Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else {
            continue;
        };
        if !out.iter().any(|(h, p)| *h == host && *p == port) {
            out.push((host, port));
        }
    }
    out
}

/// The hash slot of a key (cluster routing).
pub(super) fn slot_of(key: &[u8]) -> Slot {
    Slot::for_key(key)
}

/// Whether an error means Redis could not be reached or did not answer.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::ClusterDown
                    | redis::ServerErrorKind::TryAgain
                    | redis::ServerErrorKind::MasterDown
                    | redis::ServerErrorKind::BusyLoading
            )
        )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::super::options::RedisConfig;
    use super::*;

    /// A `redis-server` of its own on a free port, stopped when dropped. (The tests
    /// crate's `RedisServer` is out of reach here: that crate depends on this one, and
    /// this test needs the crate-private `Connection`.)
    struct OwnRedis {
        child: std::process::Child,
        port: u16,
    }

    impl OwnRedis {
        fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (tests/prereqs.sh installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            OwnRedis { child, port }
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The serving thread is not scheduled for longer than the reply timeout right
    /// after it queued a command, before the connection wrote it: Redis answers in
    /// time it could run, so the command succeeds (with redis-rs's own wall-clock
    /// response timeout it failed with "timed out").
    #[test]
    fn a_stalled_thread_still_gets_the_reply_redis_sent_in_time() {
        let redis = OwnRedis::start();
        let cfg: RedisConfig = serde_yaml::from_str(&format!(
            "type: redis\nconnection_string: 127.0.0.1:{},socket_timeout=0.2",
            redis.port
        ))
        .expect("config");
        let opts = Arc::new(RedisOptions::from_config(&cfg).expect("options"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut ping = redis::pipe();
        ping.cmd("PING");
        rt.block_on(async {
            let conn = Connection::new(opts.clone(), None).expect("connection");
            let budget = opts.response_timeout;
            conn.query_slot(&ping, budget).await.expect("connected");
            for _ in 0..3 {
                let (reply, ()) = tokio::join!(conn.query_slot(&ping, budget), async {
                    std::thread::sleep(Duration::from_millis(600));
                });
                assert_eq!(
                    reply.expect("replied"),
                    vec![redis::Value::SimpleString("PONG".into())]
                );
            }
        });
    }

    #[tokio::test]
    async fn a_failing_connection_is_made_again_at_most_once_per_min_age() {
        let cfg: RedisConfig =
            serde_yaml::from_str("type: redis\nconnection_string: 127.0.0.1:1").expect("config");
        let opts = Arc::new(RedisOptions::from_config(&cfg).expect("options"));
        let lazy: Lazy<(), u32> = Lazy::new((), opts);
        let made = AtomicU32::new(0);
        let get = || lazy.get(|| async { Ok(made.fetch_add(1, Ordering::SeqCst)) });
        assert_eq!(get().await.expect("made"), 0);
        // Failures right after it was made keep the connection.
        for _ in 0..100 {
            lazy.reset();
            assert_eq!(get().await.expect("kept"), 0);
        }
        tokio::time::sleep(MIN_CONNECTION_AGE).await;
        lazy.reset();
        assert_eq!(get().await.expect("made again"), 1);
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }
}
