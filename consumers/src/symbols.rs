//! The deployment's symbols as the sinks need them: by id to write a row, by name to read
//! one back. Built once per sink; a record naming a symbol the deployment does not have
//! cannot be stored, for good.

use std::collections::HashMap;

use tachyon_proto::{SymbolId, SymbolSpec};

use tachyon_runtime::consumer::SinkError;

#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    by_id: HashMap<SymbolId, SymbolSpec>,
    by_name: HashMap<String, SymbolId>,
}

impl SymbolTable {
    pub fn new(symbols: &[SymbolSpec]) -> Self {
        Self {
            by_id: symbols.iter().map(|s| (s.id, s.clone())).collect(),
            by_name: symbols.iter().map(|s| (s.name.clone(), s.id)).collect(),
        }
    }

    /// The symbol's spec.
    ///
    /// # Errors
    /// Permanent for a symbol the deployment does not have.
    pub fn spec(&self, id: SymbolId) -> Result<&SymbolSpec, SinkError> {
        self.by_id.get(&id).ok_or_else(|| SinkError::Permanent(format!("unknown symbol id {}", id.0)))
    }

    /// The symbol's name, as stored.
    ///
    /// # Errors
    /// As [`SymbolTable::spec`].
    pub fn name(&self, id: SymbolId) -> Result<&str, SinkError> {
        self.spec(id).map(|s| s.name.as_str())
    }

    /// The id of a stored name.
    pub fn id(&self, name: &str) -> Option<SymbolId> {
        self.by_name.get(name).copied()
    }

    /// Every symbol, by id.
    pub fn all(&self) -> Vec<SymbolSpec> {
        let mut all: Vec<SymbolSpec> = self.by_id.values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }
}
