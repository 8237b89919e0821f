//! The binary's global allocator: glibc's malloc, or mimalloc for the processes where it
//! was measured to pay (`meseta master` and `meseta sim`).
//!
//! In the placements benchmark (10,000 hollow agents, 100,000 tasks) glibc's allocation
//! and consolidation took a fifth of every process's CPU; with mimalloc the master used
//! 15% less CPU and 38% less resident memory. The processes on a container's launch path
//! (the agent, its zygote, supervisors, executors) keep glibc's: container launches
//! measured slower with mimalloc in every process, though the cause is not established
//! (bench/README.md, placements).
//!
//! The choice is made once, early in `main`; what was allocated before it (by the
//! runtime, the flag parser) stays with glibc's malloc. So a block is always freed or
//! resized by the allocator that made it, told by whether mimalloc's heap holds it.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

#[global_allocator]
static GLOBAL: Chosen = Chosen;

/// Whether new blocks come from mimalloc.
static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// Makes mimalloc allocate this process's new blocks from now on.
pub fn use_mimalloc() {
    MIMALLOC.store(true, Ordering::Relaxed);
}

struct Chosen;

/// Whether `ptr` was allocated by mimalloc.
fn from_mimalloc(ptr: *mut u8) -> bool {
    // SAFETY: only inspects which of mimalloc's regions, if any, holds the address.
    unsafe { mi::mi_is_in_heap_region(ptr as *const c_void) }
}

// SAFETY: each block is allocated by one of two sound allocators and always returned to
// the one that allocated it (`from_mimalloc`); mimalloc's functions get the alignment.
unsafe impl GlobalAlloc for Chosen {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MIMALLOC.load(Ordering::Relaxed) {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if MIMALLOC.load(Ordering::Relaxed) {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if from_mimalloc(ptr) {
            unsafe { mi::mi_free(ptr as *mut c_void) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if from_mimalloc(ptr) {
            unsafe {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_go_back_to_the_allocator_that_made_them() {
        // Blocks from glibc's malloc made before the switch, resized and freed after it.
        let before: Vec<Vec<u64>> = (1..200).map(|n| vec![n; n as usize]).collect();
        let mut text = String::from("grown across the switch");
        use_mimalloc();
        let after: Vec<Vec<u64>> = (1..200).map(|n| vec![n; n as usize]).collect();
        assert!(after.iter().all(|v| from_mimalloc(v.as_ptr() as *mut u8)));
        assert!(before.iter().all(|v| !from_mimalloc(v.as_ptr() as *mut u8)));
        for _ in 0..10 {
            text.push_str(&text.clone());
        }
        let aligned = Layout::from_size_align(100, 4096).unwrap();
        // SAFETY: a non-zero size; freed with the same layout.
        unsafe {
            let p = GLOBAL.alloc_zeroed(aligned);
            assert_eq!(p as usize % 4096, 0);
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|b| *b == 0));
            GLOBAL.dealloc(p, aligned);
        }
        assert_eq!(before[198].len() + after[198].len(), 2 * 199);
        drop((before, after));
        assert_eq!(text.len(), 23 << 10);
    }
}
