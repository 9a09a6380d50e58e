//! `Engine::process_batch` on a book large enough to take the prefetching path produces
//! exactly the events and state of `Engine::process` called per command.

use tachyon_benches::flow::{self, FlowSpec};

#[test]
fn prefetching_batches_equal_single_commands_on_a_large_book() {
    // 16 × 1,000 resting orders: above the engine's prefetch threshold (4,096).
    let spec = FlowSpec { prefill_per_symbol: 1_000, ..FlowSpec::mixed() };
    let run = flow::generate(&spec, 60_000);

    let mut single = run.engine();
    assert!(single.open_orders() > 4_096, "the book must take the prefetching path");
    let mut expected = Vec::new();
    for cmd in &run.commands {
        single.process(cmd, &mut expected);
    }

    for batch in [1, 7, 64, 256, 4096] {
        let mut batched = run.engine();
        let mut events = Vec::new();
        for chunk in run.commands.chunks(batch) {
            batched.process_batch(chunk, &mut events);
        }
        assert!(events == expected, "batch size {batch}: events differ");
        assert_eq!(batched.state_hash(), single.state_hash(), "batch size {batch}");
    }
}
