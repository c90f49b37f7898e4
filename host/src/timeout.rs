//! Timeouts that count the time the calling thread could run, not wall time.
//!
//! A serving thread that is not scheduled for a while (a CPU quota throttling the
//! process, an oversubscribed machine, a paused virtual CPU) finds every timer it set
//! expired when it runs again, though the reply it waits for may be in its socket
//! buffer, or may not even have been sent yet: a wall-clock timeout then fails a
//! request that the store would have answered in a millisecond. Here the budget is
//! spent in steps of [`STEP`]; a step whose timer fires late counts as at most two
//! steps, so a stall of any length costs the request at most one extra step.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

/// How often a waiting future's budget is checked.
pub(crate) const STEP: Duration = Duration::from_millis(50);

/// The budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `fut` until it completes, or until `budget` is spent counting only the
/// time this thread could run (see the module documentation). The future is polled
/// before each check and once more at the end, after the runtime looked at its
/// sockets, so a reply that came during a stall is never taken for a timeout.
pub(crate) async fn within_running_time<F: Future>(
    budget: Duration,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    let mut left = budget;
    loop {
        let step = left.min(STEP);
        let due = Instant::now() + step;
        match tokio::time::timeout_at(due, fut.as_mut()).await {
            Ok(out) => return Ok(out),
            Err(_) => {
                let late = Instant::now().saturating_duration_since(due);
                left = left.saturating_sub(step + late.min(step));
                if left.is_zero() {
                    // Once more after the runtime's next look at its sockets: a reply
                    // that arrived while this thread was not running is read first.
                    tokio::task::yield_now().await;
                    let last = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx)));
                    return match last.await {
                        Poll::Ready(out) => Ok(out),
                        Poll::Pending => Err(Elapsed),
                    };
                }
            }
        }
    }
}

/// Runs `fut`, bounding by `limit` only a future that has to wait: one that completes
/// on its first poll (a body already received, a read served on this thread) reads
/// no clock and sets no timer. The limit counts from that first wait.
pub(crate) async fn timeout_if_waiting<F: Future>(
    limit: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Ok(out);
    }
    tokio::time::timeout(limit, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_ready_at_once_sets_no_timer() {
        // A runtime without timers: setting one would panic.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let out = runtime.block_on(timeout_if_waiting(Duration::ZERO, async { 3 }));
        assert_eq!(out.ok(), Some(3));
    }

    #[tokio::test]
    async fn only_a_waiting_future_is_timed() {
        let t0 = Instant::now();
        let waits = timeout_if_waiting(Duration::from_millis(60), std::future::pending::<()>());
        assert!(waits.await.is_err());
        assert!(t0.elapsed() >= Duration::from_millis(60));
        let slow = async {
            tokio::task::yield_now().await;
            5
        };
        assert_eq!(
            timeout_if_waiting(Duration::from_secs(5), slow).await.ok(),
            Some(5)
        );
    }

    #[tokio::test]
    async fn a_future_that_never_completes_runs_out_after_its_budget() {
        let t0 = Instant::now();
        let out = within_running_time(Duration::from_millis(120), std::future::pending::<()>());
        assert_eq!(out.await, Err(Elapsed));
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(120), "{took:?}");
    }

    #[tokio::test]
    async fn a_future_completing_within_its_budget_returns_its_output() {
        let slow = async {
            tokio::time::sleep(Duration::from_millis(70)).await;
            7
        };
        assert_eq!(
            within_running_time(Duration::from_secs(5), slow).await,
            Ok(7)
        );
        assert_eq!(
            within_running_time(Duration::ZERO, async { 8 }).await,
            Ok(8)
        );
    }

    /// Waits with `wait` for a reply sent 10 ms after the thread, blocked for 400 ms
    /// right after the wait began, runs again.
    fn reply_after_a_stall<W, Fut>(wait: W) -> Fut::Output
    where
        W: FnOnce(tokio::sync::oneshot::Receiver<u8>) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let waiter = tokio::spawn(wait(rx));
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(400));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = tx.send(5);
            });
            waiter.await.expect("joined")
        })
    }

    #[test]
    fn a_stall_of_the_thread_longer_than_the_budget_counts_as_one_step() {
        let budget = Duration::from_millis(150);
        let got = reply_after_a_stall(|rx| within_running_time(budget, rx));
        assert_eq!(got.map(Result::ok), Ok(Some(5)));
        // On wall time, the same wait fails.
        assert!(reply_after_a_stall(|rx| tokio::time::timeout(budget, rx)).is_err());
    }
}
