//! A minimal PostgreSQL client over one TCP connection: the startup and password
//! authentication (SCRAM-SHA-256, MD5 or clear text, as the server asks), and the
//! extended query protocol with binary parameters and results, pipelined: every
//! statement of a call is sent at once and ended by a single `Sync`, so a call is one
//! round trip and one implicit transaction (all or nothing). Statements are prepared
//! once per connection and reused by name.
//!
//! Messages are encoded and decoded by `postgres-protocol` (the protocol crate of
//! rust-postgres, which has no I/O or async runtime of its own and builds for
//! wasm32-wasip2); this module does only the I/O and the message sequencing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use feast_plugin_sdk::store::FittedReads;
use postgres_protocol::Oid;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{DataRowBody, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum PgError {
    /// Connecting, writing or reading failed; the connection is gone.
    Io(std::io::Error),
    /// The server answered with an error (`code` is the SQLSTATE).
    Server {
        /// SQLSTATE, e.g. `28P01`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server sent something this client does not expect; the connection is gone.
    Protocol(String),
    /// A message could not be encoded (nothing was sent; the connection is kept).
    Encoding(String),
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Io(e) => write!(f, "{e}"),
            PgError::Server { code, message } => write!(f, "{message} (SQLSTATE {code})"),
            PgError::Protocol(m) => write!(f, "protocol error: {m}"),
            PgError::Encoding(m) => write!(f, "cannot encode the statement: {m}"),
        }
    }
}

impl From<std::io::Error> for PgError {
    fn from(e: std::io::Error) -> Self {
        PgError::Io(e)
    }
}

impl PgError {
    /// Whether the connection can no longer be used after this error.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(self, PgError::Io(_) | PgError::Protocol(_))
    }

    /// Whether a kept connection was found closed by the server (restarted, or idle
    /// too long for it, a pooler or a firewall): worth one more try on a new one.
    pub(crate) fn stale_connection(&self) -> bool {
        match self {
            PgError::Io(_) => true,
            PgError::Server { code, .. } => code.starts_with("57P") || code.starts_with("08"),
            PgError::Protocol(_) | PgError::Encoding(_) => false,
        }
    }
}

fn protocol(m: impl std::fmt::Display) -> PgError {
    PgError::Protocol(m.to_string())
}

fn encoding(m: impl std::fmt::Display) -> PgError {
    PgError::Encoding(m.to_string())
}

fn server_error(body: &ErrorResponseBody) -> PgError {
    let (mut code, mut message) = (String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        let value = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    PgError::Server { code, message }
}

/// Who connects to which database, with which session options.
pub(crate) struct Startup<'a> {
    pub(crate) user: &'a str,
    pub(crate) password: &'a str,
    pub(crate) database: &'a str,
    /// The `options` startup parameter (e.g. `-c search_path=...`).
    pub(crate) options: &'a str,
}

/// A statement: its text and the types of its parameters.
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) param_types: Vec<Oid>,
}

/// One execution of a statement: its parameters, each binary-encoded (`None`: NULL).
pub(crate) struct Execution<'a> {
    pub(crate) statement: &'a Statement,
    pub(crate) params: Vec<Option<BytesMut>>,
}

/// An open connection.
pub(crate) struct Connection {
    stream: FittedReads<TcpStream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Statement text -> prepared statement name, on this connection.
    prepared: HashMap<String, String>,
    /// Statements named so far (names are `s0`, `s1`, ...).
    named: u64,
}

impl Connection {
    /// Connects to the first address that answers and authenticates.
    pub(crate) fn connect(addrs: &[SocketAddr], startup: &Startup<'_>) -> Result<Self, PgError> {
        let stream = TcpStream::connect(addrs)?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream: FittedReads::new(stream),
            read_buf: BytesMut::with_capacity(8192),
            write_buf: BytesMut::with_capacity(8192),
            prepared: HashMap::new(),
            named: 0,
        };
        conn.handshake(startup)?;
        Ok(conn)
    }

    fn handshake(&mut self, s: &Startup<'_>) -> Result<(), PgError> {
        let params = [
            ("user", s.user),
            ("database", s.database),
            ("options", s.options),
            ("client_encoding", "UTF8"),
            ("application_name", "feast-server postgres-store"),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.write_buf)?;
        self.flush()?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.next_message()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(s.password.as_bytes(), &mut self.write_buf)?;
                    self.flush()?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(s.user.as_bytes(), s.password.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)?;
                    self.flush()?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = Vec::new();
                    while let Some(m) = mechanisms.next()? {
                        offered.push(m.to_string());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(protocol(format!(
                            "the server offers only the SASL mechanisms {offered:?}; this client speaks {SCRAM_SHA_256}"
                        )));
                    }
                    let sc = ScramSha256::new(s.password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        sc.message(),
                        &mut self.write_buf,
                    )?;
                    self.flush()?;
                    scram = Some(sc);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let sc = scram
                        .as_mut()
                        .ok_or_else(|| protocol("SCRAM continuation before its start"))?;
                    sc.update(body.data())?;
                    frontend::sasl_response(sc.message(), &mut self.write_buf)?;
                    self.flush()?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    scram
                        .as_mut()
                        .ok_or_else(|| protocol("SCRAM final message before its start"))?
                        .finish(body.data())?;
                }
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(_)
                | Message::BackendKeyData(_)
                | Message::NoticeResponse(_) => {}
                _ => return Err(protocol("unexpected message during authentication")),
            }
        }
    }

    fn flush(&mut self) -> Result<(), PgError> {
        self.stream.write_all(&self.write_buf)?;
        self.write_buf.clear();
        Ok(())
    }

    fn next_message(&mut self) -> Result<Message, PgError> {
        loop {
            if let Some(m) = Message::parse(&mut self.read_buf)? {
                return Ok(m);
            }
            let len = self.read_buf.len();
            self.read_buf.resize(len + self.stream.next_read(), 0);
            let read = self.stream.read(&mut self.read_buf[len..]);
            self.read_buf
                .truncate(len + read.as_ref().map_or(0, |n| *n));
            if read? == 0 {
                return Err(PgError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
        }
    }

    /// Runs the executions in one round trip and one transaction; returns each one's
    /// rows (binary columns). The first server error is returned (the server skips
    /// the rest and rolls the transaction back); the connection stays usable after it.
    pub(crate) fn run(
        &mut self,
        executions: &[Execution<'_>],
    ) -> Result<Vec<Vec<DataRowBody>>, PgError> {
        let encoded = self.encode(executions);
        if encoded.is_err() {
            self.write_buf.clear();
        }
        let parsing = encoded?;
        frontend::sync(&mut self.write_buf);
        self.flush()?;
        self.answers(executions.len(), &parsing)
    }

    /// Writes the Parse (for statements not prepared yet), Bind and Execute messages
    /// of `executions`; returns the statements parsed, in order (SQL, name).
    fn encode(&mut self, executions: &[Execution<'_>]) -> Result<Vec<(String, String)>, PgError> {
        let mut parsing: Vec<(String, String)> = Vec::new();
        for e in executions {
            let known = self.prepared.get(&e.statement.sql).or_else(|| {
                parsing
                    .iter()
                    .find(|(sql, _)| *sql == e.statement.sql)
                    .map(|(_, n)| n)
            });
            let name = match known {
                Some(name) => name.clone(),
                None => {
                    let name = format!("s{}", self.named);
                    self.named += 1;
                    frontend::parse(
                        &name,
                        &e.statement.sql,
                        e.statement.param_types.iter().copied(),
                        &mut self.write_buf,
                    )
                    .map_err(encoding)?;
                    parsing.push((e.statement.sql.clone(), name.clone()));
                    name
                }
            };
            frontend::bind(
                "",
                &name,
                std::iter::once(1),
                &e.params,
                |p, buf| match p {
                    Some(bytes) => {
                        buf.extend_from_slice(bytes);
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                },
                std::iter::once(1),
                &mut self.write_buf,
            )
            .map_err(|e| match e {
                frontend::BindError::Conversion(e) => encoding(e),
                frontend::BindError::Serialization(e) => encoding(e),
            })?;
            frontend::execute("", 0, &mut self.write_buf).map_err(encoding)?;
        }
        Ok(parsing)
    }

    /// Reads the answers of `count` executions up to `ReadyForQuery`.
    fn answers(
        &mut self,
        count: usize,
        parsing: &[(String, String)],
    ) -> Result<Vec<Vec<DataRowBody>>, PgError> {
        let mut results: Vec<Vec<DataRowBody>> = Vec::with_capacity(count);
        let mut current: Vec<DataRowBody> = Vec::new();
        let mut error: Option<PgError> = None;
        let mut parsed = 0;
        loop {
            match self.next_message()? {
                Message::ParseComplete => {
                    // Parse messages are answered in order: the n-th ParseComplete is
                    // the n-th statement parsed in this call.
                    if let Some((sql, name)) = parsing.get(parsed) {
                        self.prepared.insert(sql.clone(), name.clone());
                    }
                    parsed += 1;
                }
                Message::BindComplete
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_) => {}
                Message::DataRow(row) => current.push(row),
                Message::CommandComplete(_) | Message::EmptyQueryResponse => {
                    results.push(std::mem::take(&mut current));
                }
                Message::ErrorResponse(body) => {
                    error.get_or_insert(server_error(&body));
                }
                Message::ReadyForQuery(_) => break,
                _ => return Err(protocol("unexpected message in a query's answer")),
            }
        }
        match error {
            Some(e) => {
                // A prepared statement the server no longer has (a pooler that discarded
                // it) or whose result changed (a table recreated otherwise): prepare
                // them again from the next call on.
                if let PgError::Server { code, .. } = &e
                    && (code == "26000" || code == "0A000")
                {
                    self.prepared.clear();
                }
                Err(e)
            }
            None if results.len() == count => Ok(results),
            None => Err(protocol(format!(
                "{} answers to {count} statements",
                results.len()
            ))),
        }
    }

    /// A simple empty query: checks that the server answers.
    pub(crate) fn ping(&mut self) -> Result<(), PgError> {
        frontend::query("", &mut self.write_buf)?;
        self.flush()?;
        let mut error = None;
        loop {
            match self.next_message()? {
                Message::ErrorResponse(body) => error = Some(server_error(&body)),
                Message::ReadyForQuery(_) => return error.map_or(Ok(()), Err),
                _ => {}
            }
        }
    }
}

/// The first `N` columns of a data row (binary format; `None`: NULL).
pub(crate) fn columns<const N: usize>(row: &DataRowBody) -> Result<[Option<&[u8]>; N], PgError> {
    let buf: &[u8] = row.buffer();
    let mut out = [None; N];
    let mut ranges = row.ranges();
    for slot in &mut out {
        *slot = match ranges.next().map_err(protocol)? {
            Some(Some(r)) => Some(
                buf.get(r)
                    .ok_or_else(|| protocol("a column past its row"))?,
            ),
            Some(None) => None,
            None => return Err(protocol(format!("a row of fewer than {N} columns"))),
        };
    }
    Ok(out)
}
