//! The symbol table every gateway part shares: lookups by name (the API) and id (events).

use std::collections::HashMap;

use tachyon_proto::{partition_for, SymbolId, SymbolSpec};

/// Symbols with their partition.
#[derive(Clone, Debug)]
pub struct Symbols {
    specs: Vec<SymbolSpec>,
    partitions: Vec<u32>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<SymbolId, usize>,
}

impl Symbols {
    /// The table for `specs` spread over `partitions`.
    pub fn new(specs: Vec<SymbolSpec>, partitions: u32) -> Self {
        let by_name = specs.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
        let by_id = specs.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        let partitions = specs.iter().map(|s| partition_for(&s.name, partitions)).collect();
        Self { specs, partitions, by_name, by_id }
    }

    pub fn all(&self) -> &[SymbolSpec] {
        &self.specs
    }

    pub fn by_name(&self, name: &str) -> Option<&SymbolSpec> {
        self.by_name.get(name).map(|&i| &self.specs[i])
    }

    pub fn by_id(&self, id: SymbolId) -> Option<&SymbolSpec> {
        self.by_id.get(&id).map(|&i| &self.specs[i])
    }

    /// The partition (engine shard) that trades `id`.
    pub fn partition(&self, id: SymbolId) -> Option<u32> {
        self.by_id.get(&id).map(|&i| self.partitions[i])
    }
}
