//! Serving threads: one single-threaded tokio runtime per core, each owning the
//! connections handed to it.
//!
//! A small request (one SQLite query or one Redis round trip) costs a few tens of
//! microseconds; on a work-stealing runtime a comparable share goes to waking and
//! stealing between worker threads. Here the accept loop hands each new connection to
//! the serving thread with the fewest open connections, and the connection is served
//! there until it closes: its requests, store reads and plugin calls never change
//! thread. Per-thread resources (a Redis connection per serving thread) use
//! [`PerThread`] to find their own.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The slot, among `count`, of resources kept per serving thread: slot 0 for any
/// other thread, slot `i + 1` (wrapping) for serving thread `i`.
fn slot(count: usize) -> usize {
    match INDEX.with(Cell::get) {
        Some(i) if count > 1 => 1 + i % (count - 1),
        _ => 0,
    }
}

/// Resources kept per serving thread, one per [`slot`]. Each sits in cache lines of its
/// own: a thread using its resource (a lock, a connection's state) never invalidates
/// the lines another serving thread is using for its own.
#[derive(Debug)]
pub(crate) struct PerThread<T>(Box<[Padded<T>]>);

/// A value alone in its cache lines (two lines: the adjacent-line prefetcher pulls in
/// pairs).
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> PerThread<T> {
    /// `slots` resources (at least one), each made by `make`.
    pub(crate) fn new(slots: usize, mut make: impl FnMut() -> T) -> Self {
        PerThread((0..slots.max(1)).map(|_| Padded(make())).collect())
    }

    /// Like [`PerThread::new`], for resources whose making may fail.
    pub(crate) fn try_new<E>(
        slots: usize,
        mut make: impl FnMut() -> Result<T, E>,
    ) -> Result<Self, E> {
        (0..slots.max(1))
            .map(|_| make().map(Padded))
            .collect::<Result<_, _>>()
            .map(PerThread)
    }

    /// The calling thread's resource, and its slot.
    pub(crate) fn mine(&self) -> (usize, &T) {
        let i = slot(self.0.len());
        (i, &self.0[i].0)
    }

    /// The resource of slot `i` (one [`PerThread::mine`] returned).
    pub(crate) fn at(&self, i: usize) -> Option<&T> {
        self.0.get(i).map(|p| &p.0)
    }
}

/// The number of serving threads for a `--workers` value: `count`, or one per core
/// for 0.
pub(crate) fn resolve_count(count: usize) -> usize {
    match count {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    }
}

/// Resolves when the server stops: the connection should finish its in-flight
/// request and close. A connection polls it each time it is woken, so it costs a
/// flag and its own waker (a channel's receiver takes a lock on each poll).
pub(crate) struct Stopping(Arc<StopSignal>);

/// One connection's stop: set, then its waker woken, by its thread's loop.
#[derive(Default)]
struct StopSignal {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

impl StopSignal {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl Stopping {
    /// Waits for the stop.
    pub(crate) fn wait(self) -> impl Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            // Registered first, so a stop between the two is not missed.
            self.0.waker.register(cx.waker());
            if self.0.stopped.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

struct Thread {
    queue: mpsc::UnboundedSender<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
    handle: std::thread::JoinHandle<()>,
}

/// The serving threads of one listener.
pub(crate) struct ServingThreads {
    threads: Vec<Thread>,
    next: AtomicUsize,
}

impl std::fmt::Debug for ServingThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingThreads")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl ServingThreads {
    /// Starts `count` threads (0: one per core) named `<name>-<i>`. Each runs
    /// `serve(stream, stopping)` for every connection it is given.
    pub(crate) fn start<F, Fut>(count: usize, name: &str, serve: F) -> std::io::Result<Self>
    where
        F: Fn(TcpStream, Stopping) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let count = resolve_count(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (queue, incoming) = mpsc::unbounded_channel();
            let open = Arc::new(AtomicUsize::new(0));
            let serve = serve.clone();
            let counter = open.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(Some(index)));
                    runtime.block_on(run(incoming, counter, serve));
                })?;
            threads.push(Thread {
                queue,
                open,
                handle,
            });
        }
        Ok(ServingThreads {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a new connection to the thread with the fewest open connections.
    pub(crate) fn dispatch(&self, stream: TcpStream) -> std::io::Result<()> {
        let n = self.threads.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let (_, thread) = (0..n)
            .map(|k| &self.threads[(start + k) % n])
            .map(|t| (t.open.load(Ordering::Relaxed), t))
            .min_by_key(|(open, _)| *open)
            .ok_or_else(|| std::io::Error::other("no serving thread"))?;
        thread.open.fetch_add(1, Ordering::Relaxed);
        if thread.queue.send(stream.into_std()?).is_err() {
            thread.open.fetch_sub(1, Ordering::Relaxed);
            return Err(std::io::Error::other("serving thread stopped"));
        }
        Ok(())
    }

    /// Stops taking connections, lets every open connection finish its in-flight
    /// request, and waits for the threads to end.
    pub(crate) async fn shutdown(self) {
        let handles: Vec<_> = self
            .threads
            .into_iter()
            .map(|t| {
                drop(t.queue);
                t.handle
            })
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for h in handles {
                if h.join().is_err() {
                    tracing::error!("a serving thread panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "waiting for the serving threads failed");
        }
    }
}

/// How far ahead a serving thread always has a timer pending.
///
/// Tokio wakes a runtime's driver (an `eventfd` write, then one more pass through
/// `epoll_wait`) whenever a timer is set to expire before the earliest timer the
/// driver last parked with, so for every timer set while none was pending: on a
/// thread serving one request at a time, each of a request's timeouts (the request
/// timeout, the steps of [`crate::timeout`]) cost that. With a timer always pending
/// at most this far ahead, a timer set for this long or longer never wakes the driver.
const TIMER_ANCHOR: Duration = crate::timeout::STEP;

/// Keeps a timer pending on the thread (see [`TIMER_ANCHOR`]): 20 wake-ups a second.
async fn keep_a_timer_pending() {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

/// One thread's loop: serve connections until the queue closes, then stop them
/// gracefully and wait for them.
async fn run<F, Fut>(
    mut incoming: mpsc::UnboundedReceiver<std::net::TcpStream>,
    open: Arc<AtomicUsize>,
    serve: F,
) where
    F: Fn(TcpStream, Stopping) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(keep_a_timer_pending());
    let mut signals: Vec<Weak<StopSignal>> = Vec::new();
    let (done, all_done) = watch::channel(());
    while let Some(std_stream) = incoming.recv().await {
        let stream = match TcpStream::from_std(std_stream) {
            Ok(s) => s,
            Err(e) => {
                open.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot register an accepted connection");
                continue;
            }
        };
        let signal = Arc::new(StopSignal::default());
        if signals.len() == signals.capacity() {
            // Forget the connections that ended before growing.
            signals.retain(|s| s.strong_count() > 0);
        }
        signals.push(Arc::downgrade(&signal));
        let conn = serve(stream, Stopping(signal));
        let open = open.clone();
        let finished = all_done.clone();
        tokio::spawn(async move {
            conn.await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(finished);
        });
    }
    for signal in signals.iter().filter_map(Weak::upgrade) {
        signal.stop();
    }
    drop(all_done);
    done.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_thread_resources_do_not_share_cache_lines() {
        let res = PerThread::new(3, || 0u8);
        let addrs: Vec<usize> = (0..3)
            .map(|i| std::ptr::from_ref(res.at(i).expect("a slot")) as usize)
            .collect();
        assert!(addrs.windows(2).all(|w| w[1] - w[0] >= 128), "{addrs:?}");
        assert_eq!(res.mine().0, 0, "a thread that is not serving uses slot 0");
        assert!(res.at(3).is_none());
        let none: Result<PerThread<u8>, &str> = PerThread::try_new(2, || Err("refused"));
        assert_eq!(none.err(), Some("refused"));
    }

    #[test]
    fn slots_outside_serving_threads_are_zero() {
        assert_eq!(slot(1), 0);
        assert_eq!(slot(3), 0);
        INDEX.with(|i| i.set(Some(0)));
        assert_eq!(slot(1), 0);
        assert_eq!(slot(3), 1);
        INDEX.with(|i| i.set(Some(3)));
        assert_eq!(slot(3), 2);
        INDEX.with(|i| i.set(None));
    }

    /// Each connection answers with the slot of the thread serving it, then holds
    /// the connection open until the server stops.
    #[tokio::test]
    async fn connections_are_spread_and_drained_on_shutdown() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let threads =
            ServingThreads::start(2, "test-serving", |mut s: TcpStream, stopping| async move {
                let slot = u8::try_from(slot(3)).unwrap_or(u8::MAX);
                let _ = s.write_all(&[slot]).await;
                stopping.wait().await;
                let _ = s.write_all(b"bye").await;
            })
            .expect("threads start");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut clients = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..4 {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (server_side, _) = listener.accept().await.expect("accept");
            threads.dispatch(server_side).expect("dispatch");
            let mut slot = [0u8];
            client.read_exact(&mut slot).await.expect("slot");
            slots.push(slot[0]);
            clients.push(client);
        }
        slots.sort_unstable();
        assert_eq!(slots, [1, 1, 2, 2], "two connections per thread");
        threads.shutdown().await;
        for mut c in clients {
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).await.expect("read");
            assert_eq!(
                rest, b"bye",
                "each connection finished before shutdown returned"
            );
        }
    }
}
