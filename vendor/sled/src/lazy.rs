//! This module exists because `lazy_static` causes TSAN to
//! be very unhappy. We rely heavily on TSAN for finding
//! races, so we don't use `lazy_static`.
//!
//! Amber's patch: the value lives in a `std::sync::OnceLock`, so a thread that finds
//! the value being initialised blocks until it is ready. Upstream spun on an
//! `AtomicBool`; the threadpool's queue is initialised by spawning the IO threads,
//! which deref the queue at once and spun until the spawning ended. Under a real-time
//! scheduler (`chrt -r`, how Amber's benchmarks run) the spinners, of the same
//! priority, kept the spawning thread off the CPUs for ~2 s (see BENCHMARKS.md,
//! "Restoring a backup").

use std::sync::OnceLock;

/// A lazily initialized value
pub struct Lazy<T, F> {
    value: OnceLock<T>,
    init: F,
}

impl<T, F> Lazy<T, F> {
    /// Create a new Lazy
    pub const fn new(init: F) -> Self
    where
        F: Sized,
    {
        Self { value: OnceLock::new(), init }
    }
}

impl<T, F> std::ops::Deref for Lazy<T, F>
where
    F: Fn() -> T,
{
    type Target = T;

    fn deref(&self) -> &T {
        self.value.get_or_init(|| (self.init)())
    }
}
