//! Optional busy polling: after the last connection activity, a core keeps polling its
//! completion queue for a bounded time instead of sleeping in the kernel, so that the next
//! message is picked up without the wake-up latency of an idle CPU (tens of microseconds
//! on a virtual machine). Configured by the worker option `busy_poll_us` (default 0: off);
//! worth it only when the router has CPUs of its own, since a spinning core burns its CPU
//! for up to that long after every burst of traffic.
//!
//! How: one task per core that, while the core was active within the window, waits on a
//! timer whose deadline has already passed. monoio then either fires it at once (the task
//! runs again after a non-blocking submit-and-reap of the ring) or, once per millisecond
//! tick, parks with a zero timeout, which also fires due timers and takes wake-ups from
//! other cores; it never blocks while the window lasts. Simply waking itself would starve
//! timers and cross-core wake-ups, which monoio handles only when it parks. Past the window
//! the task sleeps until the next activity. What it does not do: it changes nothing about
//! what the core computes, and it does not spin while the core is idle for longer than the
//! window. While it spins, wake-ups from other cores (not this core's sockets) wait for the
//! next millisecond tick.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// This core's spin window; zero when busy polling is off.
    static WINDOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// When a connection of this core last had something to do.
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The spinning task, while it sleeps.
    static SLEEPER: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Notes connection activity: the core spins for the window from now. Nearly free when
/// busy polling is off.
pub(super) fn activity() {
    if WINDOW.with(Cell::get).is_zero() {
        return;
    }
    LAST.with(|l| l.set(Some(Instant::now())));
    if let Some(waker) = SLEEPER.with(Cell::take) {
        waker.wake();
    }
}

/// Whether the core was active within the window at `now`.
fn within(window: Duration, last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|at| now.saturating_duration_since(at) < window)
}

/// The spinning task of one core; runs forever (the runtime drops it at shutdown). Does
/// nothing when `window` is zero. Needs the runtime's timer.
pub(super) async fn run(window: Duration) {
    if window.is_zero() {
        return;
    }
    WINDOW.with(|w| w.set(window));
    loop {
        if within(window, LAST.with(Cell::get), Instant::now()) {
            // A deadline a millisecond ago: never a wait (see the module's notes).
            let now = Instant::now();
            let past = now.checked_sub(Duration::from_millis(1)).unwrap_or(now);
            monoio::time::sleep_until(monoio::time::Instant::from_std(past)).await;
            continue;
        }
        poll_fn(|cx| {
            if within(window, LAST.with(Cell::get), Instant::now()) {
                return Poll::Ready(());
            }
            SLEEPER.with(|s| s.set(Some(cx.waker().clone())));
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(window_us: u64, since_us: Option<u64>, expect: bool) {
        let now = Instant::now() + Duration::from_secs(1);
        let last = since_us.map(|us| now - Duration::from_micros(us));
        assert_eq!(
            within(Duration::from_micros(window_us), last, now),
            expect,
            "window {window_us} µs, last activity {since_us:?} µs ago"
        );
    }

    #[test]
    fn spins_only_within_the_window_after_activity() {
        check(50, Some(0), true);
        check(50, Some(49), true);
        check(50, Some(50), false);
        check(50, Some(5_000), false);
        check(50, None, false);
        check(0, Some(0), false);
    }

    /// A core with busy polling on, driven by a real runtime: the spinner runs, sleeps once
    /// the window passed, and another task on the core still completes.
    #[test]
    fn the_spinner_does_not_starve_the_core() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        runtime.block_on(async {
            monoio::spawn(run(Duration::from_millis(5)));
            // Timers still fire while the core spins: each sleep ends.
            for _ in 0..20 {
                activity();
                monoio::time::sleep(Duration::from_micros(100)).await;
            }
            assert!(LAST.with(Cell::get).is_some());
        });
    }
}
