//! Locks that ignore poisoning.
//!
//! A poisoned lock means a thread panicked while holding it. Every lock in the host guards
//! data a panic cannot leave half-updated (each critical section is one assignment, push,
//! removal or lookup), and the host must go on serving after any panic: so a poisoned lock
//! is used as it is, never turned into a second panic.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `lock`, `read` and `write` that never fail.
pub trait Unpoisoned<T> {
    type Guard<'a>
    where
        Self: 'a;
    fn locked(&self) -> Self::Guard<'_>;
}

impl<T> Unpoisoned<T> for Mutex<T> {
    type Guard<'a>
        = MutexGuard<'a, T>
    where
        T: 'a;

    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Read and write access to an `RwLock`, ignoring poisoning.
pub trait UnpoisonedRw<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> UnpoisonedRw<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
