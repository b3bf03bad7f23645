//! The synchronisation primitives the session core's races depend on, from
//! `std` (and `arc-swap`) normally and from [loom](https://docs.rs/loom) when
//! built with `--cfg loom`, so that `scripts/loom.sh` explores every
//! interleaving of the stamp publication and the restart race (see
//! `core::machine::core`). Only the parts those races run through use them.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

use std::sync::Arc;

/// An `Arc<T>` replaced atomically and read without a lock: `arc-swap`, or a
/// loom mutex under loom (its loads are linearisable, as arc-swap's are).
pub(crate) struct ArcCell<T> {
    #[cfg(not(loom))]
    inner: arc_swap::ArcSwap<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<Arc<T>>,
}

impl<T> ArcCell<T> {
    pub(crate) fn new(value: T) -> Self {
        ArcCell {
            #[cfg(not(loom))]
            inner: arc_swap::ArcSwap::from_pointee(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(Arc::new(value)),
        }
    }

    /// Calls `f` with the current value (cheap: no reference count touched
    /// normally).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        #[cfg(not(loom))]
        return f(&self.inner.load());
        #[cfg(loom)]
        return f(&self.load_full());
    }

    /// The current value, owned.
    pub(crate) fn load_full(&self) -> Arc<T> {
        #[cfg(not(loom))]
        return self.inner.load_full();
        #[cfg(loom)]
        return Arc::clone(&self.inner.lock().unwrap());
    }

    pub(crate) fn store(&self, value: Arc<T>) {
        #[cfg(not(loom))]
        self.inner.store(value);
        #[cfg(loom)]
        {
            *self.inner.lock().unwrap() = value;
        }
    }
}

/// Locks `m`, taking over a poisoned lock (a panic elsewhere must not stop
/// session tracking).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    return m.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(loom)]
    return m.lock().unwrap();
}
