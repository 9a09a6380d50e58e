//! Cache prefetch hints.
//!
//! The only `unsafe` in the engine. A prefetch asks the CPU to start loading a cache
//! line early; it has no architectural effect (it cannot fault, change memory or alter
//! program semantics), so it is sound for any address, and here it is only ever given a
//! pointer derived from a live reference.
#![allow(unsafe_code)]

/// Starts loading the cache line holding `value` into all cache levels.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache; `sse` is part of the x86_64 baseline,
    // and the pointer comes from a reference, so it is valid and aligned anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(value).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
