//! A minimal Redis client: RESP2 commands written and replies read over one TCP
//! connection, pipelined (every command of a call written at once, then every reply
//! read).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use feast_plugin_sdk::store::FittedReads;

/// A reply.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nabc`; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`; `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Why a call failed: the connection broke (it is dropped), or the reply stream is
/// not RESP.
#[derive(Debug)]
pub(crate) enum RespError {
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// The server sent something that is not RESP.
    Protocol(String),
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "{e}"),
            RespError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl From<std::io::Error> for RespError {
    fn from(e: std::io::Error) -> Self {
        RespError::Io(e)
    }
}

/// A command: its arguments, already encoded as RESP bulk strings.
#[derive(Default)]
pub(crate) struct Command {
    args: usize,
    encoded: Vec<u8>,
}

impl Command {
    /// A command named `name`.
    pub(crate) fn new(name: &str) -> Self {
        let mut c = Command {
            args: 0,
            encoded: Vec::with_capacity(64),
        };
        c.push(name);
        c
    }

    /// Adds an argument.
    pub(crate) fn arg(mut self, a: impl AsRef<[u8]>) -> Self {
        self.push(a);
        self
    }

    /// Adds an argument in place.
    pub(crate) fn push(&mut self, a: impl AsRef<[u8]>) {
        bulk_string(&[a.as_ref()], &mut self.encoded);
        self.args += 1;
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        header(b'*', self.args, out);
        out.extend_from_slice(&self.encoded);
    }
}

/// Commands encoded into one buffer, sent together by [`Connection::send`] (the buffer
/// is kept and reused).
#[derive(Default)]
pub(crate) struct Pipeline {
    encoded: Vec<u8>,
}

impl Pipeline {
    /// Empties the pipeline.
    pub(crate) fn clear(&mut self) {
        self.encoded.clear();
    }

    /// Starts a command of `args` arguments (its name included), given next.
    pub(crate) fn command(&mut self, args: usize) {
        header(b'*', args, &mut self.encoded);
    }

    /// An argument.
    pub(crate) fn arg(&mut self, a: &[u8]) {
        self.arg_of(&[a]);
    }

    /// An argument made of `parts`, concatenated.
    pub(crate) fn arg_of(&mut self, parts: &[&[u8]]) {
        bulk_string(parts, &mut self.encoded);
    }

    /// A whole command.
    pub(crate) fn push(&mut self, command: &Command) {
        command.write_to(&mut self.encoded);
    }

    /// The encoded commands.
    #[cfg(test)]
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// Writes `parts`, concatenated, as one RESP bulk string.
fn bulk_string(parts: &[&[u8]], out: &mut Vec<u8>) {
    header(b'$', parts.iter().map(|p| p.len()).sum(), out);
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `<kind><n>\r\n`.
fn header(kind: u8, n: usize, out: &mut Vec<u8>) {
    out.push(kind);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The read buffer (socket reads ask for what recent replies needed, see
/// [`FittedReads`]).
const READ_BUFFER: usize = 64 << 10;

/// One connection.
pub(crate) struct Connection {
    reader: BufReader<FittedReads<TcpStream>>,
    /// The line being read (kept between replies).
    line: Vec<u8>,
    /// A bulk string longer than what the read buffer holds (kept between replies).
    bulk: Vec<u8>,
}

impl Connection {
    /// Connects to the first address of `addrs` that accepts.
    pub(crate) fn connect(addrs: &[SocketAddr]) -> Result<Self, RespError> {
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a) {
                Ok(stream) => {
                    // Small pipelines: do not wait to fill a segment.
                    let _ = stream.set_nodelay(true);
                    return Ok(Connection {
                        reader: BufReader::with_capacity(READ_BUFFER, FittedReads::new(stream)),
                        line: Vec::with_capacity(64),
                        bulk: Vec::new(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(RespError::Io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to connect to")
        })))
    }

    /// Sends every command, then reads one reply per command.
    pub(crate) fn pipeline(&mut self, commands: &[Command]) -> Result<Vec<Reply>, RespError> {
        let mut pipeline = Pipeline::default();
        for c in commands {
            pipeline.push(c);
        }
        self.send(&pipeline)?;
        (0..commands.len()).map(|_| self.read_reply()).collect()
    }

    /// Sends every command of `pipeline`; their replies are read next, in order.
    pub(crate) fn send(&mut self, pipeline: &Pipeline) -> Result<(), RespError> {
        self.reader.get_mut().write_all(&pipeline.encoded)?;
        Ok(())
    }

    /// Reads the head of a reply expected to be an array: `Ok(n)` for an array of `n`
    /// items (read next, e.g. with [`Connection::bulk`]), `Err(reply)` for any other
    /// reply (read whole).
    pub(crate) fn array(&mut self) -> Result<Result<usize, Reply>, RespError> {
        self.read_line()?;
        if self.line.first() == Some(&b'*')
            && let Ok(n) = usize::try_from(self.line_number()?)
        {
            return Ok(Ok(n));
        }
        Ok(Err(self.reply_from_line()?))
    }

    /// Reads one reply expected to be a bulk string and hands `f` its bytes (`None`
    /// for a nil or any other reply), borrowed from the read buffer when it is there.
    pub(crate) fn bulk<R>(&mut self, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, RespError> {
        self.read_line()?;
        if self.line.first() != Some(&b'$') {
            self.reply_from_line()?;
            return Ok(f(None));
        }
        let Ok(n) = usize::try_from(self.line_number()?) else {
            return Ok(f(None));
        };
        self.bulk_body(n, |b| f(Some(b)))
    }

    /// Reads the `n` bytes (and CRLF) of a bulk string whose header was read, handing
    /// them to `f` from the read buffer when they are there.
    fn bulk_body<R>(&mut self, n: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, RespError> {
        if self.reader.buffer().len() >= n + 2 {
            let r = f(&self.reader.buffer()[..n]);
            self.reader.consume(n + 2);
            return Ok(r);
        }
        self.bulk.resize(n + 2, 0);
        self.reader.read_exact(&mut self.bulk)?;
        Ok(f(&self.bulk[..n]))
    }

    /// The number after the type byte of `self.line`.
    fn line_number(&self) -> Result<i64, RespError> {
        let rest = self.line.get(1..).unwrap_or_default();
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                RespError::Protocol(format!("not a number: {}", String::from_utf8_lossy(rest)))
            })
    }

    /// Reads a line into `self.line` (without its CRLF).
    fn read_line(&mut self) -> Result<(), RespError> {
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line)?;
        if self.line.is_empty() {
            return Err(RespError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        if !self.line.ends_with(b"\r\n") {
            return Err(RespError::Protocol("a line without CRLF".into()));
        }
        self.line.truncate(self.line.len() - 2);
        Ok(())
    }

    fn read_reply(&mut self) -> Result<Reply, RespError> {
        self.read_line()?;
        self.reply_from_line()
    }

    /// The reply whose first line is `self.line` (its remaining lines read).
    fn reply_from_line(&mut self) -> Result<Reply, RespError> {
        let (&kind, rest) = self
            .line
            .split_first()
            .ok_or_else(|| RespError::Protocol("an empty line".into()))?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        let number = || self.line_number();
        match kind {
            b'+' => Ok(Reply::Simple(text())),
            b'-' => Ok(Reply::Error(text())),
            b':' => Ok(Reply::Int(number()?)),
            b'$' => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n)
                    .map_err(|_| RespError::Protocol("a bulk length out of range".into()))?;
                Ok(Reply::Bulk(Some(self.bulk_body(n, <[u8]>::to_vec)?)))
            }
            b'*' => {
                let n = number()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let n = usize::try_from(n)
                    .map_err(|_| RespError::Protocol("an array length out of range".into()))?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.read_reply()?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(RespError::Protocol(format!(
                "unknown reply type {:?}",
                char::from(other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_encoded_as_resp_arrays() {
        let mut out = Vec::new();
        Command::new("HMGET")
            .arg(b"k\x00")
            .arg("f")
            .write_to(&mut out);
        assert_eq!(out, b"*3\r\n$5\r\nHMGET\r\n$2\r\nk\x00\r\n$1\r\nf\r\n");
    }
}
