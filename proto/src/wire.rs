//! Backbone payloads: rkyv encodings, validated on read.
//!
//! A payload is one format byte ([`FORMAT_V1`]) followed by an rkyv archive. Decoding
//! copies the archive into an aligned buffer, runs bytecheck over it (so a corrupt or
//! truncated payload is an error, never undefined behaviour or a panic), deserialises it,
//! and then checks the values rkyv cannot know about (canonical account ids, client order
//! id characters).

use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use crate::command::Command;
use crate::event::Event;
use crate::ids::{AccountId, ClientOrderId};

/// The only payload format so far.
pub const FORMAT_V1: u8 = 1;

/// A command as it travels on `tachyon.orders`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct CommandEnvelope {
    /// Correlates the engine's reply with the gateway request (unique per gateway).
    pub request_id: u64,
    /// Which gateway sent it (so replies can be routed back).
    pub gateway_id: u32,
    pub command: Command,
}

/// What an engine shard publishes for one input command, on `tachyon.executions` (the
/// command's private events, always, even when there are none, so a waiting gateway
/// learns the command is done) and on `tachyon.marketdata` (its public events, when there
/// are any).
///
/// `seq` numbers the shard's output records: consecutive from 1 over both topics, never
/// reused, so consumers deduplicate by (`partition`, `seq`) and a restarted shard knows
/// from the last record it finds what it already published.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
    /// The command itself (a rejected order's fields live only here).
    pub command: Command,
    /// In the order the engine emitted them.
    pub events: Vec<Event>,
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

/// Encodes a value for the backbone.
///
/// # Errors
/// [`WireError::Corrupt`] if rkyv fails to serialise (it cannot for these plain types, but
/// the error is passed on rather than unwrapped).
pub fn encode<T>(value: &T) -> Result<Vec<u8>, WireError>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    let archive = rkyv::to_bytes::<rancor::Error>(value).map_err(|e| WireError::Corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(archive.len() + 1);
    out.push(FORMAT_V1);
    out.extend_from_slice(&archive);
    Ok(out)
}

fn decode_raw<T>(payload: &[u8]) -> Result<T, WireError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    let (&format, archive) = payload.split_first().ok_or(WireError::Empty)?;
    if format != FORMAT_V1 {
        return Err(WireError::UnknownFormat(format));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| WireError::Corrupt(e.to_string()))
}

/// Decodes and validates a command envelope.
///
/// # Errors
/// [`WireError`] for an empty, unknown-format, corrupt or semantically invalid payload.
pub fn decode_command(payload: &[u8]) -> Result<CommandEnvelope, WireError> {
    let env: CommandEnvelope = decode_raw(payload)?;
    check_command(&env.command)?;
    Ok(env)
}

/// Decodes and validates a shard output record.
///
/// # Errors
/// [`WireError`] for an empty, unknown-format, corrupt or semantically invalid payload.
pub fn decode_output(payload: &[u8]) -> Result<ShardOutput, WireError> {
    let out: ShardOutput = decode_raw(payload)?;
    check_command(&out.command)?;
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
        }
    }

    #[test]
    fn command_round_trips() {
        let env = sample_command();
        let bytes = encode(&env).expect("encodes");
        assert_eq!(decode_command(&bytes), Ok(env));
    }

    #[test]
    fn output_round_trips() {
        let out = ShardOutput {
            partition: 3,
            seq: 9,
            input_offset: 100,
            request_id: 7,
            gateway_id: 1,
            command: sample_command().command,
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
        };
        let bytes = encode(&out).expect("encodes");
        assert_eq!(decode_output(&bytes), Ok(out));
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
