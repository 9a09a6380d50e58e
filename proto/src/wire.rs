//! Backbone payloads: rkyv encodings, validated on read.
//!
//! A payload is one format byte followed by an rkyv archive: [`FORMAT_V1`] for commands,
//! [`FORMAT_OUTPUT_V2`] for shard outputs (outputs written before it, [`FORMAT_V1`],
//! embedded the whole command and are still read). Decoding copies the archive into an
//! aligned buffer (one per thread, reused), runs bytecheck over it (so a corrupt or
//! truncated payload is an error, never undefined behaviour or a panic), deserialises it,
//! and then checks the values rkyv cannot know about (canonical account ids, client order
//! id characters). Encoding appends to a caller's buffer through a per-thread scratch
//! archive, so a steady stream of records allocates nothing.

use std::cell::RefCell;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use crate::balance::{BalanceUpdate, FillFee, TransferId, TransferKind, TransferRecord};
use crate::command::{Command, NewOrder};
use crate::event::Event;
use crate::ids::{AccountId, ClientOrderId};
use crate::time::Timestamp;

/// Commands straight from a gateway (and, before [`FORMAT_OUTPUT_V2`], outputs).
pub const FORMAT_V1: u8 = 1;
/// Shard outputs without the command re-embedded.
pub const FORMAT_OUTPUT_V2: u8 = 2;
/// Commands forwarded by an upstream stage (the risk stage), with their [`Origin`].
pub const FORMAT_FORWARDED_V3: u8 = 3;
/// Shard outputs that also report balances, fees or a transfer (balances on).
pub const FORMAT_OUTPUT_V4: u8 = 4;
/// A deposit or withdrawal on the input log (balances on).
pub const FORMAT_TRANSFER_V4: u8 = 4;

/// Where a forwarded command comes from: the upstream stage's partition and the output
/// sequence it gave the command there. Per origin partition, sequences reach a downstream
/// partition in increasing order, so one that is not above the last seen is a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Origin {
    pub partition: u32,
    pub seq: u64,
}

/// A command as it travels on `tachyon.orders`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct CommandEnvelope {
    /// Correlates the engine's reply with the gateway request (unique per gateway).
    pub request_id: u64,
    /// Which gateway sent it (so replies can be routed back).
    pub gateway_id: u32,
    pub command: Command,
    /// Set when an upstream stage forwarded it (encoded as [`FORMAT_FORWARDED_V3`]; a
    /// gateway's own command keeps the [`FORMAT_V1`] bytes it always had).
    pub origin: Option<Origin>,
}

/// A deposit or withdrawal as it travels on the input log ([`FORMAT_TRANSFER_V4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct TransferEnvelope {
    pub request_id: u64,
    pub gateway_id: u32,
    pub timestamp: Timestamp,
    pub kind: TransferKind,
    pub transfer_id: TransferId,
    pub account: AccountId,
    pub asset: u16,
    pub amount: u64,
}

/// Appends a transfer's payload to `out`.
///
/// # Errors
/// As [`encode_into`].
pub fn encode_transfer_into(value: &TransferEnvelope, out: &mut Vec<u8>) -> Result<(), WireError> {
    encode_into(value, FORMAT_TRANSFER_V4, out)
}

/// Decodes and validates a transfer.
///
/// # Errors
/// [`WireError`] for a payload of another format, corrupt, or with invalid ids.
pub fn decode_transfer(payload: &[u8]) -> Result<TransferEnvelope, WireError> {
    let (&format, archive) = payload.split_first().ok_or(WireError::Empty)?;
    if format != FORMAT_TRANSFER_V4 {
        return Err(WireError::UnknownFormat(format));
    }
    let t: TransferEnvelope = decode_raw(archive)?;
    check_account(t.account)?;
    if !t.transfer_id.is_canonical() {
        return Err(WireError::InvalidField("transfer_id"));
    }
    Ok(t)
}

/// The archive of a [`FORMAT_V1`] command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct CommandEnvelopeV1 {
    request_id: u64,
    gateway_id: u32,
    command: Command,
}

impl std::borrow::Borrow<Command> for CommandEnvelope {
    fn borrow(&self) -> &Command {
        &self.command
    }
}

/// What an engine shard publishes for one input command, on `tachyon.executions` (the
/// command's private events, always, even when there are none, so a waiting gateway
/// learns the command is done) and on `tachyon.marketdata` (its public events, when there
/// are any).
///
/// `seq` numbers the shard's output records: consecutive from 1 over both topics, never
/// reused, so consumers deduplicate by (`partition`, `seq`) and a restarted shard knows
/// from the last record it finds what it already published. A command's executions
/// record comes first; its market-data record, if it has one, takes the next sequence.
///
/// The command itself is not repeated: its events carry what they change (an accepted
/// order is its [`crate::Accepted`] event). Only a rejected new order's fields are in no
/// event, so that order travels in `rejected`.
#[derive(Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ShardOutput {
    /// The engine shard (= input partition) that produced it.
    pub partition: u32,
    /// The shard's output sequence.
    pub seq: u64,
    /// Offset of the input command these events came from.
    pub input_offset: u64,
    /// The command's `request_id` and `gateway_id`, for reply routing.
    pub request_id: u64,
    pub gateway_id: u32,
    /// When the gateway stamped the command.
    pub timestamp: Timestamp,
    /// On an executions record: the command also changed public market data, in the
    /// record at `seq + 1` on `tachyon.marketdata` (a gateway that answers only once its
    /// own market data shows the command waits for that one).
    pub market_data: bool,
    /// The new order as sent, when the engine rejected it.
    pub rejected: Option<NewOrder>,
    /// In the order the engine emitted them.
    pub events: Vec<Event>,
    /// Balances the command left, for each (account, asset) it changed (balances on).
    /// This and the next two fields are not part of the [`FORMAT_OUTPUT_V2`] archive (so
    /// it stays what it was); [`FORMAT_OUTPUT_V4`] carries them after it.
    #[rkyv(with = rkyv::with::Skip)]
    pub balances: Vec<BalanceUpdate>,
    /// What each side of each fill paid in fees (balances on).
    #[rkyv(with = rkyv::with::Skip)]
    pub fees: Vec<FillFee>,
    /// The deposit or withdrawal this record answers (balances on).
    #[rkyv(with = rkyv::with::Skip)]
    pub transfer: Option<TransferRecord>,
}

impl ShardOutput {
    /// Empties the record for reuse, keeping the events' allocation.
    pub fn reset(&mut self) {
        self.events.clear();
        self.balances.clear();
        self.fees.clear();
        self.transfer = None;
        self.rejected = None;
        self.market_data = false;
    }

    /// Whether the record needs [`FORMAT_OUTPUT_V4`] (it reports funds).
    pub fn has_funds(&self) -> bool {
        !self.balances.is_empty() || !self.fees.is_empty() || self.transfer.is_some()
    }
}

/// What a [`FORMAT_OUTPUT_V4`] record adds after its [`FORMAT_OUTPUT_V2`] payload.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct FundsV4 {
    balances: Vec<BalanceUpdate>,
    fees: Vec<FillFee>,
    transfer: Option<TransferRecord>,
}

/// The output record of [`FORMAT_V1`], which embedded the command.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct ShardOutputV1 {
    partition: u32,
    seq: u64,
    input_offset: u64,
    request_id: u64,
    gateway_id: u32,
    command: Command,
    events: Vec<Event>,
}

impl From<ShardOutputV1> for ShardOutput {
    fn from(v1: ShardOutputV1) -> Self {
        let rejected = match v1.command {
            Command::New(n) if v1.events.iter().any(|e| matches!(e, Event::Rejected(_))) => Some(n),
            _ => None,
        };
        Self {
            partition: v1.partition,
            seq: v1.seq,
            input_offset: v1.input_offset,
            request_id: v1.request_id,
            gateway_id: v1.gateway_id,
            timestamp: v1.command.timestamp(),
            // Not recorded then; nobody waits on history.
            market_data: false,
            rejected,
            events: v1.events,
            ..Self::default()
        }
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("empty payload")]
    Empty,
    #[error("unknown payload format {0}")]
    UnknownFormat(u8),
    #[error("corrupt payload: {0}")]
    Corrupt(String),
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

type Serializer<'a> = rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>;

thread_local! {
    /// The archive being built (encoding) or checked (decoding): reused, so steady streams
    /// do not allocate.
    static SCRATCH: RefCell<AlignedVec<16>> = RefCell::new(AlignedVec::new());
}

/// Appends `value`'s payload (the format byte, then its archive) to `out`.
///
/// # Errors
/// [`WireError::Corrupt`] if rkyv fails to serialise (it cannot for these plain types, but
/// the error is passed on rather than unwrapped).
pub fn encode_into<T>(value: &T, format: u8, out: &mut Vec<u8>) -> Result<(), WireError>
where
    T: for<'a> rkyv::Serialize<Serializer<'a>>,
{
    SCRATCH.with(|scratch| {
        // Re-entrance (never expected) finds the buffer taken and starts a fresh one.
        let mut archive = scratch.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default();
        archive.clear();
        let result = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, archive);
        let archive = result.map_err(|e| WireError::Corrupt(e.to_string()))?;
        out.reserve(archive.len() + 1);
        out.push(format);
        out.extend_from_slice(&archive);
        if let Ok(mut slot) = scratch.try_borrow_mut() {
            *slot = archive;
        }
        Ok(())
    })
}

/// Appends a command envelope's payload to `out`: [`FORMAT_V1`] from a gateway,
/// [`FORMAT_FORWARDED_V3`] with an origin.
///
/// # Errors
/// As [`encode_into`].
pub fn encode_command_into(value: &CommandEnvelope, out: &mut Vec<u8>) -> Result<(), WireError> {
    if value.origin.is_some() {
        return encode_into(value, FORMAT_FORWARDED_V3, out);
    }
    let v1 = CommandEnvelopeV1 { request_id: value.request_id, gateway_id: value.gateway_id, command: value.command };
    encode_into(&v1, FORMAT_V1, out)
}

/// Encodes a command envelope for the backbone.
///
/// # Errors
/// As [`encode_into`].
pub fn encode(value: &CommandEnvelope) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(192);
    encode_command_into(value, &mut out)?;
    Ok(out)
}

/// Appends a shard output's payload to `out`: [`FORMAT_OUTPUT_V2`], or with funds
/// [`FORMAT_OUTPUT_V4`] = the format byte, the length (u32 LE) of the record's V2 payload,
/// that V2 payload, then the funds' payload.
///
/// # Errors
/// As [`encode_into`].
pub fn encode_output_into(value: &ShardOutput, out: &mut Vec<u8>) -> Result<(), WireError> {
    if !value.has_funds() {
        return encode_into(value, FORMAT_OUTPUT_V2, out);
    }
    out.push(FORMAT_OUTPUT_V4);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    encode_into(value, FORMAT_OUTPUT_V2, out)?;
    let len = u32::try_from(out.len() - at - 4).map_err(|_| WireError::Corrupt("output too large".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    let funds = FundsV4 { balances: value.balances.clone(), fees: value.fees.clone(), transfer: value.transfer };
    encode_into(&funds, FORMAT_OUTPUT_V4, out)
}

/// Encodes a shard output for the backbone.
///
/// # Errors
/// As [`encode_into`].
pub fn encode_output(value: &ShardOutput) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64 + 128 * value.events.len());
    encode_output_into(value, &mut out)?;
    Ok(out)
}

fn decode_raw<T>(archive: &[u8]) -> Result<T, WireError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    SCRATCH.with(|scratch| {
        let mut guard = scratch.try_borrow_mut();
        let mut fresh = AlignedVec::new();
        let aligned: &mut AlignedVec = match guard.as_deref_mut() {
            Ok(buffer) => buffer,
            Err(_) => &mut fresh,
        };
        aligned.clear();
        aligned.extend_from_slice(archive);
        rkyv::from_bytes::<T, rancor::Error>(aligned).map_err(|e| WireError::Corrupt(e.to_string()))
    })
}

/// Decodes and validates a command envelope.
///
/// # Errors
/// [`WireError`] for an empty, unknown-format, corrupt or semantically invalid payload.
pub fn decode_command(payload: &[u8]) -> Result<CommandEnvelope, WireError> {
    let (&format, archive) = payload.split_first().ok_or(WireError::Empty)?;
    let env = match format {
        FORMAT_V1 => {
            let v1: CommandEnvelopeV1 = decode_raw(archive)?;
            CommandEnvelope { request_id: v1.request_id, gateway_id: v1.gateway_id, command: v1.command, origin: None }
        }
        FORMAT_FORWARDED_V3 => {
            let env: CommandEnvelope = decode_raw(archive)?;
            if env.origin.is_none() {
                return Err(WireError::InvalidField("origin"));
            }
            env
        }
        other => return Err(WireError::UnknownFormat(other)),
    };
    check_command(&env.command)?;
    Ok(env)
}

/// Decodes and validates a shard output record (either format).
///
/// # Errors
/// [`WireError`] for an empty, unknown-format, corrupt or semantically invalid payload.
pub fn decode_output(payload: &[u8]) -> Result<ShardOutput, WireError> {
    let (&format, archive) = payload.split_first().ok_or(WireError::Empty)?;
    let out: ShardOutput = match format {
        FORMAT_OUTPUT_V2 => decode_raw(archive)?,
        FORMAT_V1 => decode_raw::<ShardOutputV1>(archive)?.into(),
        FORMAT_OUTPUT_V4 => {
            let (len, rest) = archive.split_first_chunk::<4>().ok_or(WireError::Corrupt("truncated".into()))?;
            let len = u32::from_le_bytes(*len) as usize;
            let truncated = || WireError::Corrupt("truncated".into());
            let base = rest.get(..len).and_then(|b| b.strip_prefix(&[FORMAT_OUTPUT_V2])).ok_or_else(truncated)?;
            let funds = rest.get(len..).and_then(|f| f.strip_prefix(&[FORMAT_OUTPUT_V4])).ok_or_else(truncated)?;
            let mut out: ShardOutput = decode_raw(base)?;
            let funds: FundsV4 = decode_raw(funds)?;
            if let Some(t) = &funds.transfer {
                check_account(t.account)?;
                if !t.transfer_id.is_canonical() {
                    return Err(WireError::InvalidField("transfer_id"));
                }
            }
            for b in &funds.balances {
                check_account(b.account)?;
            }
            for f in &funds.fees {
                check_account(f.account)?;
            }
            out.balances = funds.balances;
            out.fees = funds.fees;
            out.transfer = funds.transfer;
            out
        }
        other => return Err(WireError::UnknownFormat(other)),
    };
    if let Some(order) = &out.rejected {
        check_command(&Command::New(*order))?;
    }
    for event in &out.events {
        check_event(event)?;
    }
    Ok(out)
}

fn check_command(command: &Command) -> Result<(), WireError> {
    check_account(command.account())?;
    if let Command::New(n) = command {
        check_client_order_id(n.client_order_id.as_ref())?;
    }
    Ok(())
}

fn check_event(event: &Event) -> Result<(), WireError> {
    match event {
        Event::Accepted(a) => {
            check_account(a.account)?;
            check_client_order_id(a.client_order_id.as_ref())?;
        }
        Event::Rejected(r) => check_account(r.account)?,
        Event::Trade(t) => {
            check_account(t.taker_account)?;
            check_account(t.maker_account)?;
        }
        Event::Cancelled(c) => check_account(c.account)?,
        Event::Amended(a) => check_account(a.account)?,
        Event::Level(_) | Event::Bbo(_) => {}
    }
    Ok(())
}

fn check_account(a: AccountId) -> Result<(), WireError> {
    AccountId::from_raw(a.to_raw()).map(drop).map_err(|_| WireError::InvalidField("account"))
}

fn check_client_order_id(c: Option<&ClientOrderId>) -> Result<(), WireError> {
    match c {
        Some(c) if ClientOrderId::parse(c.as_str()).ok().as_ref() != Some(c) => {
            Err(WireError::InvalidField("client_order_id"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::*;
    use crate::event::*;
    use crate::fixed::*;
    use crate::ids::*;
    use crate::time::Timestamp;
    use proptest::prelude::*;

    fn sample_command() -> CommandEnvelope {
        CommandEnvelope {
            request_id: 7,
            gateway_id: 1,
            command: Command::New(NewOrder {
                order_id: OrderId(42),
                account: AccountId::parse("alice").expect("valid"),
                symbol: SymbolId(1),
                side: Side::Buy,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: false,
                stp: SelfTradePrevention::CancelNewest,
                price: Some(Price(3_000_000)),
                qty: Qty(5000),
                client_order_id: Some(ClientOrderId::parse("my-1").expect("valid")),
                timestamp: Timestamp(1),
            }),
            origin: None,
        }
    }

    #[test]
    fn command_round_trips() {
        let env = sample_command();
        let bytes = encode(&env).expect("encodes");
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode_command(&bytes), Ok(env));
    }

    #[test]
    fn a_forwarded_command_keeps_its_origin_and_a_gateway_command_its_old_bytes() {
        let env = CommandEnvelope { origin: Some(Origin { partition: 3, seq: 99 }), ..sample_command() };
        let bytes = encode(&env).expect("encodes");
        assert_eq!(bytes[0], FORMAT_FORWARDED_V3);
        assert_eq!(decode_command(&bytes), Ok(env));
        // The V1 bytes are the archive of the three fields a V1 reader knows.
        let plain = sample_command();
        let v1 =
            CommandEnvelopeV1 { request_id: plain.request_id, gateway_id: plain.gateway_id, command: plain.command };
        let mut old = Vec::new();
        encode_into(&v1, FORMAT_V1, &mut old).expect("encodes");
        assert_eq!(encode(&plain).expect("encodes"), old);
    }

    #[test]
    fn output_round_trips() {
        let out = ShardOutput {
            partition: 3,
            seq: 9,
            input_offset: 100,
            request_id: 7,
            gateway_id: 1,
            timestamp: Timestamp(5),
            market_data: true,
            rejected: None,
            events: vec![
                Event::Level(LevelChange {
                    symbol: SymbolId(1),
                    side: Side::Buy,
                    price: Price(10),
                    qty: Qty(2),
                    seq: 4,
                }),
                Event::Bbo(Bbo {
                    symbol: SymbolId(1),
                    bid: Some(PriceLevel { price: Price(10), qty: Qty(2) }),
                    ask: None,
                    seq: 4,
                }),
            ],
            ..ShardOutput::default()
        };
        let bytes = encode_output(&out).expect("encodes");
        assert_eq!(bytes[0], FORMAT_OUTPUT_V2);
        assert_eq!(decode_output(&bytes), Ok(out.clone()));
        // With funds: format 4, everything back, and its V2 part is the same archive.
        let alice = AccountId::parse("alice").expect("valid");
        let mut funded = out.clone();
        funded.balances.push(BalanceUpdate { account: alice, asset: 1, available: 5, hold: 7 });
        funded.fees.push(FillFee { trade_id: TradeId(3), account: alice, asset: 1, fee: 2 });
        funded.transfer = Some(TransferRecord {
            kind: TransferKind::Deposit,
            transfer_id: TransferId::parse("dep-1").expect("valid"),
            account: alice,
            asset: 1,
            amount: 12,
            available: 5,
            hold: 7,
            replayed: false,
            error: None,
        });
        let v4 = encode_output(&funded).expect("encodes");
        assert_eq!(v4[0], FORMAT_OUTPUT_V4);
        assert_eq!(decode_output(&v4), Ok(funded));
        assert_eq!(&v4[5..5 + bytes.len()], &bytes[..]);
        for cut in 0..v4.len() {
            assert!(decode_output(&v4[..cut]).is_err(), "a payload cut at {cut} is an error");
        }
    }

    #[test]
    fn a_rejected_order_travels_with_its_output() {
        let Command::New(order) = sample_command().command else { unreachable!("a new order") };
        let rejected = Event::Rejected(Rejected {
            order_id: Some(order.order_id),
            account: order.account,
            symbol: Some(order.symbol),
            reason: RejectReason::PostOnlyWouldTake,
            timestamp: Timestamp(2),
        });
        let out = ShardOutput { rejected: Some(order), events: vec![rejected], ..ShardOutput::default() };
        assert_eq!(decode_output(&encode_output(&out).expect("encodes")), Ok(out));
    }

    #[test]
    fn outputs_of_the_first_format_still_decode() {
        let command = sample_command().command;
        let Command::New(order) = command else { unreachable!("a new order") };
        let rejected = Event::Rejected(Rejected {
            order_id: Some(order.order_id),
            account: order.account,
            symbol: Some(order.symbol),
            reason: RejectReason::QuantityAboveMax,
            timestamp: Timestamp(2),
        });
        let v1 = ShardOutputV1 {
            partition: 1,
            seq: 4,
            input_offset: 3,
            request_id: 7,
            gateway_id: 1,
            command,
            events: vec![rejected],
        };
        let mut bytes = Vec::new();
        encode_into(&v1, FORMAT_V1, &mut bytes).expect("encodes");
        let out = decode_output(&bytes).expect("decodes");
        assert_eq!((out.partition, out.seq, out.input_offset, out.request_id), (1, 4, 3, 7));
        assert_eq!(out.timestamp, order.timestamp);
        assert_eq!(out.rejected, Some(order));
        assert_eq!(out.events, vec![rejected]);
    }

    #[test]
    fn rejects_empty_unknown_and_truncated() {
        assert_eq!(decode_command(&[]), Err(WireError::Empty));
        assert_eq!(decode_command(&[9, 1, 2]), Err(WireError::UnknownFormat(9)));
        let bytes = encode(&sample_command()).expect("encodes");
        for cut in 1..bytes.len() {
            assert!(decode_command(&bytes[..cut]).is_err(), "truncated at {cut} decoded");
        }
    }

    #[test]
    fn rejects_invalid_ids_inside_a_valid_archive() {
        let mut env = sample_command();
        if let Command::New(n) = &mut env.command {
            n.account = AccountId::from_raw(AccountId::parse("bob").expect("valid").to_raw()).expect("valid");
        }
        let mut bytes = encode(&env).expect("encodes");
        // Corrupt the packed account id's length bits (the top byte of the u128) without
        // breaking the archive's structure: find "bob"'s raw bytes and flip the length.
        let raw = AccountId::parse("bob").expect("valid").to_raw().to_le_bytes();
        let pos = bytes.windows(16).position(|w| w == raw).expect("account bytes present");
        bytes[pos + 15] = 0x1f;
        assert_eq!(decode_command(&bytes), Err(WireError::InvalidField("account")));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_command(&bytes);
            let _ = decode_output(&bytes);
        }

        #[test]
        fn bit_flips_never_panic(pos in 0usize..200, bit in 0u8..8) {
            let mut bytes = encode(&sample_command()).expect("encodes");
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            let _ = decode_command(&bytes);
        }
    }
}
