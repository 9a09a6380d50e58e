//! The backbone's topics. Every topic has the same number of partitions; a shard's outputs
//! go to the partition of its input, so partition `p` of every topic belongs to shard `p`.

/// A topic of the backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Commands from gateways (key = symbol, partition = [`crate::partition_for`]).
    Orders,
    /// One [`crate::wire::ShardOutput`] per command with its private events.
    Executions,
    /// One [`crate::wire::ShardOutput`] per command that changed public market data.
    MarketData,
    /// Input records that could not be decoded, with the error.
    DeadLetter,
    /// Engine snapshots in chunks (distributed mode: they outlive the engine's machine).
    Snapshots,
    /// Which engine runs each shard (distributed mode): claims, renewals, releases.
    Leases,
    /// API-key events (mints and revocations), keyed by key id, compacted; partition 0
    /// only. Every gateway on Kafka reads it (see `tachyon_gateway::keys`).
    Keys,
}

impl Topic {
    /// Every topic, in a fixed order.
    pub const ALL: [Topic; 7] = [
        Topic::Orders,
        Topic::Executions,
        Topic::MarketData,
        Topic::DeadLetter,
        Topic::Snapshots,
        Topic::Leases,
        Topic::Keys,
    ];

    /// The topic's name on the broker (and its directory in the embedded journal).
    pub fn name(self) -> &'static str {
        match self {
            Topic::Orders => "tachyon.orders",
            Topic::Executions => "tachyon.executions",
            Topic::MarketData => "tachyon.marketdata",
            Topic::DeadLetter => "tachyon.dlq",
            Topic::Snapshots => "tachyon.snapshots",
            Topic::Leases => "tachyon.leases",
            Topic::Keys => "tachyon.keys",
        }
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
