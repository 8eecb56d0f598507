//! Locking shared state that plain data lives in.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: the mutexes this is used on guard plain values (a
/// world map, counters, a presented key) that a panicking holder cannot leave in a state
/// worse than the panic itself reports.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
