//! The serving threads' count and each one's index: a leaf the request
//! path (one upstream pool per thread) and the server (which starts the
//! threads) both read, so neither imports the other for it.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The number of serving threads for `server.workers` (0: one per core).
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The serving thread this code runs on (0 on any other thread), for
/// choosing per-thread resources such as upstream pools.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Marks the current thread as serving thread `index` (the server calls it
/// once, as the thread starts).
pub fn set_index(index: usize) {
    INDEX.with(|i| i.set(index));
}
