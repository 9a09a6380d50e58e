//! Matching with balances, as one machine: the risk core in front of the matching core,
//! over every symbol and every account, on one sequenced pipeline (the embedded order
//! path with `--balances`).
//!
//! Each command is applied whole before the next: the risk core holds its funds (or
//! refuses it: `insufficient_funds`, `invalid_funds`, `not_order_owner`), the engine
//! matches it, and the risk core settles what the engine did (fills both sides with their
//! fees, releases for cancels and remainders, re-holds for amends). Deposits and
//! withdrawals are inputs on the same log. One log, one thread: a replay is the same run,
//! and the conservation law holds after every input, crash or not.
//!
//! Outputs are the matching core's (executions and market data), the executions record
//! also carrying the balances the input left, the fees its fills charged, and a
//! transfer's result (format 4 on the wire).

use tachyon_engine::{EngineConfig, EventSink};
use tachyon_proto::balance::{BalanceUpdate, FillFee, TransferError, TransferRecord};
use tachyon_proto::wire::{
    decode_command, decode_transfer, encode_command_into, encode_transfer_into, CommandEnvelope, ShardOutput,
    TransferEnvelope, WireError, FORMAT_TRANSFER_V4,
};
use tachyon_proto::{Command, Event, OrderType, RejectReason, Rejected, Timestamp, Topic};
use tachyon_risk::{
    settlements_for, AmendHold, AssetId, OrderHold, Outcome, Request, Risk, RiskConfig, RiskReject, RiskSnapshot,
    Settlement, Transfer,
};

use crate::machine::{Machine, Outputs};
use crate::matching::{write_records, Matching};

/// One input of the funded pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FundedInput {
    Command(CommandEnvelope),
    Transfer(TransferEnvelope),
}

/// The risk and matching cores as one machine (see the module docs).
#[derive(Debug)]
pub struct Funded {
    matching: Matching,
    risk: Risk,
    /// Engine commands applied: the sequence of their settlement batches.
    settled: u64,
    events: Vec<Event>,
    settlements: Vec<Settlement>,
    balances: Vec<BalanceUpdate>,
    fees: Vec<FillFee>,
}

/// Starts a funded snapshot (then the matching part's length, the matching part, the
/// risk part).
const SNAPSHOT_MAGIC: &[u8; 8] = b"TCHFUN1\0";

impl Funded {
    pub fn new(engine: EngineConfig, risk: RiskConfig, partition: u32) -> Self {
        Self {
            matching: Matching::new(engine, partition),
            risk: Risk::new(risk),
            settled: 0,
            events: Vec::with_capacity(64),
            settlements: Vec::with_capacity(16),
            balances: Vec::with_capacity(8),
            fees: Vec::with_capacity(4),
        }
    }

    pub fn risk(&self) -> &Risk {
        &self.risk
    }

    pub fn matching(&self) -> &Matching {
        &self.matching
    }

    /// Holds funds for `command`; the reason when the risk core refuses it.
    fn hold(&mut self, command: &Command) -> Option<RejectReason> {
        let request = match *command {
            Command::New(o) => Request::Order(OrderHold {
                order_id: o.order_id,
                account: o.account,
                symbol: o.symbol,
                side: o.side,
                price: if o.order_type == OrderType::Market { None } else { o.price },
                qty: o.qty,
                funds: None,
            }),
            Command::Amend(a) => {
                Request::Amend(AmendHold { order_id: a.order_id, account: a.account, price: a.price, qty: a.qty })
            }
            Command::Cancel(_) | Command::CancelAll(_) => return None,
        };
        match self.risk.request(&request) {
            Outcome::Rejected(reason) => Some(match reason {
                RiskReject::InsufficientFunds => RejectReason::InsufficientFunds,
                RiskReject::InvalidFunds => RejectReason::InvalidFunds,
                RiskReject::UnknownSymbol => RejectReason::UnknownSymbol,
                RiskReject::NotOrderOwner => RejectReason::NotOrderOwner,
                RiskReject::DuplicateOrderId => RejectReason::DuplicateOrderId,
                RiskReject::InvalidAmount | RiskReject::UnknownAsset | RiskReject::DuplicateTransferId => {
                    RejectReason::InvalidQuantity
                }
            }),
            _ => None,
        }
    }

    fn command(&mut self, input: &CommandEnvelope, offset: u64, out: &mut Outputs<ShardOutput>) {
        self.events.clear();
        if let Some(reason) = self.hold(&input.command) {
            let (order_id, symbol) = match input.command {
                Command::New(o) => (Some(o.order_id), Some(o.symbol)),
                Command::Amend(a) => (Some(a.order_id), None),
                Command::Cancel(c) => (Some(c.order_id), None),
                Command::CancelAll(c) => (None, c.symbol),
            };
            let account = input.command.account();
            let timestamp = input.command.timestamp();
            self.events.push(Event::Rejected(Rejected { order_id, account, symbol, reason, timestamp }));
        } else {
            let mut sink = Collect(&mut self.events);
            self.matching.engine_mut().process(&input.command, &mut sink);
            self.settlements.clear();
            settlements_for(&self.events, 0, 1, &mut self.settlements);
            self.settled += 1;
            self.risk.settle(0, self.settled, &self.settlements);
        }
        self.risk.drain_changes(&mut self.balances, &mut self.fees);
        let (balances, fees) = (&mut self.balances, &mut self.fees);
        write_records(out, self.matching.partition(), offset, input, &self.events, |record| {
            record.balances.append(balances);
            record.fees.append(fees);
        });
    }

    fn transfer(&mut self, t: &TransferEnvelope, offset: u64, out: &mut Outputs<ShardOutput>) {
        let transfer = Transfer {
            kind: t.kind,
            transfer_id: t.transfer_id,
            account: t.account,
            asset: AssetId(t.asset),
            amount: t.amount,
        };
        let outcome = self.risk.request(&Request::Transfer(transfer));
        let current = self.risk.balance(t.account, AssetId(t.asset)).unwrap_or_default();
        let (balance, replayed, error) = match outcome {
            Outcome::Transferred { balance, replayed } => (balance, replayed, None),
            Outcome::Rejected(r) => (
                current,
                false,
                Some(match r {
                    RiskReject::InsufficientFunds => TransferError::InsufficientFunds,
                    RiskReject::DuplicateTransferId => TransferError::DuplicateTransferId,
                    RiskReject::UnknownAsset => TransferError::UnknownAsset,
                    _ => TransferError::InvalidAmount,
                }),
            ),
            _ => (current, false, None),
        };
        self.risk.drain_changes(&mut self.balances, &mut self.fees);
        let record = out.push(Topic::Executions);
        record.partition = self.matching.partition();
        record.input_offset = offset;
        record.request_id = t.request_id;
        record.gateway_id = t.gateway_id;
        record.timestamp = t.timestamp;
        record.balances.append(&mut self.balances);
        record.transfer = Some(TransferRecord {
            kind: t.kind,
            transfer_id: t.transfer_id,
            account: t.account,
            asset: t.asset,
            amount: t.amount,
            available: balance.available,
            hold: balance.hold,
            replayed,
            error,
        });
    }
}

/// Collects the engine's events for one command.
struct Collect<'a>(&'a mut Vec<Event>);

impl EventSink for Collect<'_> {
    #[inline]
    fn emit(&mut self, event: Event) {
        self.0.push(event);
    }
}

impl Machine for Funded {
    type Input = FundedInput;
    type Output = ShardOutput;

    const OUTPUT_TOPICS: &'static [Topic] = Matching::OUTPUT_TOPICS;

    fn encode_input(input: &FundedInput, out: &mut Vec<u8>) -> Result<(), WireError> {
        match input {
            FundedInput::Command(c) => encode_command_into(c, out),
            FundedInput::Transfer(t) => encode_transfer_into(t, out),
        }
    }

    fn decode_input(payload: &[u8]) -> Result<FundedInput, WireError> {
        match payload.first() {
            Some(&FORMAT_TRANSFER_V4) => decode_transfer(payload).map(FundedInput::Transfer),
            _ => decode_command(payload).map(FundedInput::Command),
        }
    }

    fn timestamp(input: &FundedInput) -> Timestamp {
        match input {
            FundedInput::Command(c) => c.command.timestamp(),
            FundedInput::Transfer(t) => t.timestamp,
        }
    }

    fn apply(&mut self, inputs: &[FundedInput], first_offset: u64, out: &mut Outputs<ShardOutput>) {
        for (i, input) in inputs.iter().enumerate() {
            let offset = first_offset + i as u64;
            match input {
                FundedInput::Command(c) => self.command(c, offset, out),
                FundedInput::Transfer(t) => self.transfer(t, offset, out),
            }
            out.end_input();
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let matching = self.matching.snapshot()?;
        let risk = self.risk.snapshot().to_bytes().map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(16 + 8 + matching.len() + risk.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.settled.to_le_bytes());
        out.extend_from_slice(&(matching.len() as u64).to_le_bytes());
        out.extend_from_slice(&matching);
        out.extend_from_slice(&risk);
        Ok(out)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let rest = snapshot.strip_prefix(SNAPSHOT_MAGIC).ok_or("not a snapshot of matching with balances")?;
        let number = |b: Option<&[u8]>| -> Result<u64, String> {
            let b: [u8; 8] = b.and_then(|b| b.try_into().ok()).ok_or("truncated snapshot")?;
            Ok(u64::from_le_bytes(b))
        };
        let settled = number(rest.get(..8))?;
        let len = usize::try_from(number(rest.get(8..16))?).map_err(|e| e.to_string())?;
        let matching = rest.get(16..16 + len).ok_or("truncated snapshot")?;
        let risk = rest.get(16 + len..).ok_or("truncated snapshot")?;
        self.matching.restore(matching)?;
        let image = RiskSnapshot::from_bytes(risk).map_err(|e| e.to_string())?;
        self.risk = Risk::restore(self.risk.config().clone(), &image)?;
        self.settled = settled;
        Ok(())
    }

    fn size(&self) -> usize {
        self.matching.size()
    }
}
