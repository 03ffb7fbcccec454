//! Memory given back after a burst of connections: each close records the time on its
//! worker, and the worker asks the allocator to return free pages once its connections
//! have been closed for a moment.

use super::*;

/// One worker thread's closes, for [`give_back_soon`].
#[derive(Default)]
pub(super) struct Closes {
    /// The last close, in milliseconds since [`CLOCK_START`].
    pub(super) last_ms: std::sync::atomic::AtomicU64,
    /// A give-back task is waiting.
    pub(super) pending: std::sync::atomic::AtomicBool,
}

thread_local! {
    static CLOSES: Arc<Closes> = Arc::default();
}

pub(super) static CLOCK_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// How long after the last connection close its thread's allocator is asked to give freed
/// memory back: past mimalloc's purge delay (1 s), so the pages are due.
pub(super) const GIVE_BACK_AFTER: Duration = Duration::from_millis(1500);

/// Memory freed by closed connections goes back to the system. mimalloc returns a free
/// page once it has been unused for its purge delay, but only when the thread that owns
/// it allocates or frees again — and a worker whose burst of connections has ended may do
/// neither for hours, keeping its high-water mark. So a close makes sure one task per
/// thread waits until [`GIVE_BACK_AFTER`] past the thread's last close and then collects
/// the thread's heap: under steady traffic that task just keeps waiting (no work per
/// close but two atomic stores); after a burst, the memory is back about 1.5 s after the
/// last close (BENCHMARKS.md, "Memory per connection"). With `work_stealing: true` the
/// task may run on another thread, which then collects its own heap instead.
pub(super) fn give_back_soon() {
    let Some(&give_back) = GIVE_BACK.get() else {
        return;
    };
    let start = *CLOCK_START.get_or_init(Instant::now);
    let closes = CLOSES.with(Arc::clone);
    let now_ms = start.elapsed().as_millis() as u64;
    closes.last_ms.store(now_ms, Ordering::Relaxed);
    if closes.pending.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        closes.pending.store(false, Ordering::Release);
        return;
    };
    runtime.spawn(async move {
        loop {
            let last = Duration::from_millis(closes.last_ms.load(Ordering::Relaxed));
            let due = start + last + GIVE_BACK_AFTER;
            if Instant::now() >= due {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        closes.pending.store(false, Ordering::Release);
        give_back();
    });
}

/// How the process's allocator gives the calling thread's free memory back (set by the
/// binary, which chooses the allocator: `mi_collect` for mimalloc).
pub(super) static GIVE_BACK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how the calling thread's freed memory is given back to the system after
/// connections close (see [`give_back_soon`]); without it, nothing is done.
pub fn set_memory_give_back(give_back: fn()) {
    let _ = GIVE_BACK.set(give_back);
}
