//! The standard workload files (`shared/bench/WORKLOAD.md`) and their replay.
//!
//! A file is a 64-byte header (eight little-endian `u64`: magic, `n_prefill`, `n_total`,
//! `exp_live`, `exp_bid_qty`, `exp_ask_qty`, `exp_traded`, 0) and `n_total` 32-byte records
//! (`op`, `side`, six zero bytes, `id`, `price`, `qty`). Records become engine commands on
//! one symbol: op 0 a gtc limit, op 1 a cancel, op 2 an IOC limit. Orders belong to 64
//! accounts by id (so a cancel names its owner) with self-trade prevention off, as the
//! workload's model has no accounts. The prefill runs before timing; the replayed end
//! state is checked against the header.

use tachyon_engine::{Engine, Event};
use tachyon_proto::{
    AccountId, Cancel, Command, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side, SymbolId,
    TimeInForce, Timestamp,
};
use thiserror::Error;

use crate::flow::config;
use crate::Prepared;

/// The file magic.
pub const MAGIC: u64 = 0x4d41_5443_4857;
/// Accounts the orders are spread over.
pub const ACCOUNTS: u64 = 64;

/// A workload file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub n_prefill: u64,
    pub n_total: u64,
    pub exp_live: u64,
    pub exp_bid_qty: u64,
    pub exp_ask_qty: u64,
    pub exp_traded: u64,
}

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub op: u8,
    pub side: u8,
    pub id: u64,
    pub price: u64,
    pub qty: u64,
}

/// Why a workload file cannot be used.
#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("file is shorter than its 64-byte header")]
    TooShort,
    #[error("bad magic {0:#x}: not a workload file")]
    BadMagic(u64),
    #[error("header announces {expected} records but the file holds {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("record {index}: unknown op {op}")]
    BadOp { index: usize, op: u8 },
    #[error("record {index}: unknown side {side}")]
    BadSide { index: usize, side: u8 },
    #[error("record {index}: price or quantity out of range")]
    OutOfRange { index: usize },
    #[error("prefill record {index} is not an add")]
    BadPrefill { index: usize },
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Parses a workload file.
///
/// # Errors
/// [`WorkloadError`] for a short, foreign or truncated file or an unknown op or side.
pub fn parse(bytes: &[u8]) -> Result<(Header, Vec<Record>), WorkloadError> {
    if bytes.len() < 64 {
        return Err(WorkloadError::TooShort);
    }
    let magic = u64_at(bytes, 0);
    if magic != MAGIC {
        return Err(WorkloadError::BadMagic(magic));
    }
    let h = Header {
        n_prefill: u64_at(bytes, 8),
        n_total: u64_at(bytes, 16),
        exp_live: u64_at(bytes, 24),
        exp_bid_qty: u64_at(bytes, 32),
        exp_ask_qty: u64_at(bytes, 40),
        exp_traded: u64_at(bytes, 48),
    };
    let found = ((bytes.len() - 64) / 32) as u64;
    if found < h.n_total || h.n_prefill > h.n_total {
        return Err(WorkloadError::Truncated { expected: h.n_total, found });
    }
    let records = (0..h.n_total as usize)
        .map(|index| {
            let at = 64 + index * 32;
            let r = Record {
                op: bytes[at],
                side: bytes[at + 1],
                id: u64_at(bytes, at + 8),
                price: u64_at(bytes, at + 16),
                qty: u64_at(bytes, at + 24),
            };
            if r.op > 2 {
                return Err(WorkloadError::BadOp { index, op: r.op });
            }
            if r.side > 1 {
                return Err(WorkloadError::BadSide { index, side: r.side });
            }
            if r.op != 1 && (r.price == 0 || r.price > i64::MAX as u64 || r.qty == 0) {
                return Err(WorkloadError::OutOfRange { index });
            }
            if (index as u64) < h.n_prefill && r.op != 0 {
                return Err(WorkloadError::BadPrefill { index });
            }
            Ok(r)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((h, records))
}

/// Serialises a workload (for tests and custom workloads).
pub fn write(h: &Header, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 32);
    for v in [MAGIC, h.n_prefill, h.n_total, h.exp_live, h.exp_bid_qty, h.exp_ask_qty, h.exp_traded, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for r in records {
        let mut b = [0u8; 32];
        b[0] = r.op;
        b[1] = r.side;
        b[8..16].copy_from_slice(&r.id.to_le_bytes());
        b[16..24].copy_from_slice(&r.price.to_le_bytes());
        b[24..32].copy_from_slice(&r.qty.to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

fn account(id: u64) -> AccountId {
    // 64 fixed names; parse cannot fail for them.
    AccountId::parse(&format!("w{}", id % ACCOUNTS)).expect("w0..w63 are valid account names")
}

/// The engine command for one record.
pub fn command(r: &Record) -> Command {
    let side = if r.side == 0 { Side::Buy } else { Side::Sell };
    match r.op {
        1 => Command::Cancel(Cancel { order_id: OrderId(r.id), account: account(r.id), timestamp: Timestamp(0) }),
        op => Command::New(NewOrder {
            order_id: OrderId(r.id),
            account: account(r.id),
            symbol: SymbolId(1),
            side,
            order_type: OrderType::Limit,
            time_in_force: if op == 0 { TimeInForce::Gtc } else { TimeInForce::Ioc },
            post_only: false,
            stp: SelfTradePrevention::None,
            price: Some(Price(r.price as i64)),
            qty: Qty(r.qty),
            client_order_id: None,
            timestamp: Timestamp(r.id as i64),
        }),
    }
}

/// A prepared replay: the book after the prefill, the timed commands, and the lots the
/// prefill already traded.
#[derive(Debug)]
pub struct Replay {
    pub header: Header,
    pub run: Prepared,
    pub prefill_traded: u64,
}

/// Builds the starting book from the prefill and translates the rest.
pub fn prepare(h: &Header, records: &[Record]) -> Replay {
    let config = config(1);
    let mut engine = Engine::new(config.clone());
    let mut events = Vec::new();
    let (prefill, timed) = records.split_at(h.n_prefill as usize);
    for r in prefill {
        engine.process(&command(r), &mut events);
    }
    let prefill_traded = traded(&events);
    Replay {
        header: *h,
        run: Prepared { config, start: engine.snapshot(), commands: timed.iter().map(command).collect() },
        prefill_traded,
    }
}

/// Lots traded in a list of events.
pub fn traded(events: &[Event]) -> u64 {
    events.iter().map(|e| if let Event::Trade(t) = e { t.qty.0 } else { 0 }).sum()
}

/// The end state of a replay, as the header states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndState {
    pub live: u64,
    pub bid_qty: u64,
    pub ask_qty: u64,
    pub traded: u64,
}

impl EndState {
    pub fn expected(h: &Header) -> Self {
        Self { live: h.exp_live, bid_qty: h.exp_bid_qty, ask_qty: h.exp_ask_qty, traded: h.exp_traded }
    }

    /// Reads the engine's book after a replay; `traded` comes from its events.
    pub fn of(engine: &Engine, traded: u64) -> Self {
        let sum = |side| engine.depth(SymbolId(1), side, usize::MAX).iter().map(|(_, q)| q.0).sum();
        Self { live: engine.open_orders() as u64, bid_qty: sum(Side::Buy), ask_qty: sum(Side::Sell), traded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchSink;

    /// A tiny workload: two bids, two asks, a cancel and an IOC that takes one ask and part
    /// of the next.
    fn tiny() -> (Header, Vec<Record>) {
        let r = |op, side, id, price, qty| Record { op, side, id, price, qty };
        let records = vec![
            r(0, 0, 0, 99, 5),
            r(0, 1, 1, 101, 3),
            r(0, 1, 2, 102, 4),
            r(0, 0, 3, 98, 2),
            r(1, 0, 0, 0, 0),
            r(2, 0, 5, 102, 5),
        ];
        let h = Header { n_prefill: 4, n_total: 6, exp_live: 2, exp_bid_qty: 2, exp_ask_qty: 2, exp_traded: 5 };
        (h, records)
    }

    #[test]
    fn parses_what_it_writes() {
        let (h, records) = tiny();
        let (h2, r2) = parse(&write(&h, &records)).expect("valid");
        assert_eq!((h2, r2), (h, records));
    }

    #[test]
    fn rejects_foreign_and_broken_files() {
        let (h, records) = tiny();
        let bytes = write(&h, &records);
        assert!(matches!(parse(&bytes[..10]), Err(WorkloadError::TooShort)));
        assert!(matches!(parse(&bytes[..bytes.len() - 1]), Err(WorkloadError::Truncated { .. })));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(parse(&bad), Err(WorkloadError::BadMagic(_))));
        let mut bad = bytes.clone();
        bad[64 + 5 * 32] = 7;
        assert!(matches!(parse(&bad), Err(WorkloadError::BadOp { index: 5, op: 7 })));
    }

    #[test]
    fn replay_reaches_the_expected_end_state_and_detects_a_wrong_one() {
        let (h, records) = tiny();
        let replay = prepare(&h, &records);
        let mut engine = replay.run.engine();
        let mut sink = BatchSink::new();
        for cmd in &replay.run.commands {
            engine.process(cmd, &mut sink);
        }
        sink.drain();
        let end = EndState::of(&engine, replay.prefill_traded + sink.traded);
        assert_eq!(end, EndState::expected(&h));
        let wrong = Header { exp_traded: 6, ..h };
        assert_ne!(end, EndState::expected(&wrong));
    }
}
