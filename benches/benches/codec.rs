//! Criterion benchmarks of the backbone codecs (`tachyon_proto::wire`): encoding and
//! validated decoding (bytecheck + semantic checks + deserialise) of a command envelope
//! and of an event envelope carrying a trade, in elements (messages) per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tachyon_proto::wire::FORMAT_OUTPUT_V2;
use tachyon_proto::wire::{
    decode_command, decode_output, encode, encode_command_into, encode_into, encode_output, CommandEnvelope,
    ShardOutput,
};
use tachyon_proto::{
    AccountId, ClientOrderId, Command, Event, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side,
    SymbolId, TimeInForce, Timestamp, Trade, TradeId,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn command() -> CommandEnvelope {
    CommandEnvelope {
        request_id: 42,
        gateway_id: 1,
        command: Command::New(NewOrder {
            order_id: OrderId(1_000_001),
            account: AccountId::parse("alice").expect("valid"),
            symbol: SymbolId(1),
            side: Side::Buy,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::CancelNewest,
            price: Some(Price(3_000_000)),
            qty: Qty(5_000),
            client_order_id: Some(ClientOrderId::parse("my-order-1").expect("valid")),
            timestamp: Timestamp(1_795_255_200_123_456_789),
        }),
        origin: None,
    }
}

fn trade() -> ShardOutput {
    ShardOutput {
        partition: 3,
        seq: 77,
        input_offset: 1_000,
        request_id: 42,
        gateway_id: 1,
        timestamp: Timestamp(1_795_255_200_123_456_789),
        market_data: true,
        rejected: None,
        events: vec![Event::Trade(Trade {
            symbol: SymbolId(1),
            trade_id: TradeId(9),
            price: Price(3_000_000),
            qty: Qty(2_000),
            taker_side: Side::Buy,
            taker_order_id: OrderId(1_000_001),
            taker_account: AccountId::parse("alice").expect("valid"),
            maker_order_id: OrderId(999_999),
            maker_account: AccountId::parse("bob").expect("valid"),
            taker_remaining: Qty(3_000),
            maker_remaining: Qty(0),
            seq: 12,
            timestamp: Timestamp(1_795_255_200_123_456_789),
        })],
        ..ShardOutput::default()
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    let cmd = command();
    let cmd_bytes = encode(&cmd).expect("encodes");
    let ev = trade();
    let ev_bytes = encode_output(&ev).expect("encodes");
    group.bench_function("encode_command", |b| b.iter(|| encode(black_box(&cmd))));
    // What the pipeline does: encode into a buffer it keeps, no allocation per record.
    let mut buffer = Vec::with_capacity(4096);
    group.bench_function("encode_command_into", |b| {
        b.iter(|| {
            buffer.clear();
            encode_command_into(black_box(&cmd), &mut buffer)
        });
    });
    group.bench_function("decode_command", |b| b.iter(|| decode_command(black_box(&cmd_bytes))));
    group.bench_function("encode_trade_output", |b| b.iter(|| encode_output(black_box(&ev))));
    group.bench_function("encode_trade_output_into", |b| {
        b.iter(|| {
            buffer.clear();
            encode_into(black_box(&ev), FORMAT_OUTPUT_V2, &mut buffer)
        });
    });
    group.bench_function("decode_trade_output", |b| b.iter(|| decode_output(black_box(&ev_bytes))));
    group.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
