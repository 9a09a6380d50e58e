//! The hot path does not allocate per order in steady state.
//!
//! A counting global allocator wraps the system allocator for this test binary. The engine
//! is warmed up on the `mixed` flow (so its slabs, indexes and ladders reach their
//! high-water marks), then processes a further 200,000 commands of the same flow, which
//! must perform zero allocations. Deterministic: it counts calls, it does not time them.
#![allow(unsafe_code, reason = "a GlobalAlloc implementation is unsafe by definition")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tachyon_benches::flow::{self, FlowSpec};
use tachyon_benches::{run_batches, BatchSink};

struct Counting;

thread_local! {
    // Per thread, so tests running in parallel do not count each other's allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_while(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_state_matching_does_not_allocate() {
    let spec = FlowSpec { prefill_per_symbol: 2_000, ..FlowSpec::mixed() };
    let warmup = 300_000;
    let run = flow::generate(&spec, warmup + 200_000);
    let mut engine = run.engine();
    let mut sink = BatchSink::new();
    let (warm, timed) = run.commands.split_at(warmup);
    run_batches(&mut engine, warm, &mut sink);
    let count = allocations_while(|| run_batches(&mut engine, timed, &mut sink));
    assert_eq!(count, 0, "allocations during 200,000 steady-state commands");
    engine.check_invariants().expect("the book is consistent");
}

#[test]
fn the_counter_sees_allocations() {
    // Guard against a vacuous pass: an allocation inside the window is counted.
    let count = allocations_while(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(count, 1);
}
