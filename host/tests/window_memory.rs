//! The memory cost of the operator page's window (`brewblox_host::window`), measured with a
//! counting allocator rather than computed: bytes per series at full capacity (300 samples),
//! and for the whole window at its bound of series.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
};

use brewblox_host::window::{Ring, CAPACITY, MAX_SERIES};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A key as long as a device gauge's (`gauge:plugin_device_plugin_temperature_celsius{…}`).
fn key(n: usize) -> String {
    format!("gauge:plugin_device_plugin_temperature_celsius{{device=\"fermenter-{n:03}\"}}")
}

/// The live bytes of a full ring with `series` series (the sample input freed).
fn full_ring_bytes(series: usize) -> (isize, Ring) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut ring = Ring::new(CAPACITY, MAX_SERIES);
    // Twice round: the ring is full and has evicted, as in a long-running service.
    for t in 0..(2 * CAPACITY as u64) {
        let values: Vec<(String, f64)> = (0..series).map(|n| (key(n), t as f64)).collect();
        ring.record(t, values);
    }
    (LIVE.load(Ordering::Relaxed) - before, ring)
}

#[test]
fn bytes_per_series_at_full_capacity() {
    let (empty, ring0) = full_ring_bytes(0);
    let (one, ring1) = full_ring_bytes(1);
    let (all, ring_all) = full_ring_bytes(MAX_SERIES);
    assert_eq!(ring_all.keys().count(), MAX_SERIES);
    assert_eq!(ring_all.len(), CAPACITY);
    let per_series = (all - empty) as f64 / MAX_SERIES as f64;
    println!(
        "window: {CAPACITY} samples; time axis {empty} bytes; one series {} bytes; \
         {per_series:.0} bytes per series at {MAX_SERIES} series; whole window at its bound \
         {all} bytes",
        one - empty
    );
    // The values alone are CAPACITY × 8 bytes; the key and the map's node come on top.
    let values = (CAPACITY * 8) as f64;
    assert!(per_series >= values, "{per_series}");
    assert!(
        per_series <= values + 256.0,
        "{per_series} bytes per series"
    );
    assert!(all < 200 * 1024, "the whole window: {all} bytes");
    drop((ring0, ring1));
}
