//! A hint to the CPU to bring memory into its caches ahead of its use. A view writes
//! hundreds of thousands of tasks whose records and texts are scattered over the heap, and
//! its writing mostly waits for each one's first load; asked for a few tasks ahead, the
//! loads overlap with the writing.

/// Asks for the cache line at `ptr` (a hint: nothing happens on other architectures, and
/// the pointer is never read or checked).
#[inline(always)]
pub fn prefetch<T: ?Sized>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE, which the instruction needs, is part of every x86_64 CPU, and a
        // prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
