-- Tachyon's PostgreSQL schema, version 1.
--
-- Prices and quantities are integers: ticks and lots of the symbol's grid (see `symbols`
-- for the decimal value of one tick and one lot). Codes (side, status, reasons) are the
-- API's snake_case strings. Timestamps are the gateway's, at microsecond precision.
-- Every row is keyed by what the engine made deterministic, so writing it again changes
-- nothing; `orders` carries the version (shard, shard_seq) of the last event applied.

CREATE FUNCTION tachyon_ts(us bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'epoch'::timestamptz + us * interval '1 microsecond';

CREATE FUNCTION tachyon_us(ts timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (extract(epoch FROM ts) * 1000000)::bigint;

CREATE TABLE symbols (
    symbol_id  integer PRIMARY KEY,
    symbol     text    NOT NULL UNIQUE,
    tick_size  numeric NOT NULL,
    lot_size   numeric NOT NULL
);

-- Latest state of every order.
CREATE TABLE orders (
    order_id        bigint      PRIMARY KEY,
    account         text        NOT NULL,
    symbol          text        NOT NULL,
    side            text        NOT NULL,
    order_type      text        NOT NULL,
    time_in_force   text        NOT NULL,
    post_only       boolean     NOT NULL,
    price_ticks     bigint,
    quantity_lots   bigint      NOT NULL,
    filled_lots     bigint      NOT NULL,
    -- Σ price_ticks × lots of the fills (average price = filled_notional / filled_lots).
    filled_notional numeric     NOT NULL,
    client_order_id text,
    status          text        NOT NULL,
    reject_reason   text,
    cancel_reason   text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    shard           integer     NOT NULL,
    shard_seq       bigint      NOT NULL
);
-- GET /v1/orders (newest first, by account) and closed-order lookups.
CREATE INDEX orders_by_account ON orders (account, created_at DESC, order_id DESC);
CREATE INDEX orders_open_by_account ON orders (account, symbol) WHERE status IN ('new', 'partially_filled');
CREATE INDEX orders_by_client_id ON orders (account, client_order_id) WHERE client_order_id IS NOT NULL;

-- Every status change of every order, with the order's state right after it.
CREATE TABLE order_events (
    shard            integer     NOT NULL,
    shard_seq        bigint      NOT NULL,
    event_index      integer     NOT NULL,
    order_id         bigint      NOT NULL,
    account          text        NOT NULL,
    symbol           text        NOT NULL,
    kind             text        NOT NULL, -- accepted, rejected, fill, cancelled, amended
    status           text        NOT NULL,
    price_ticks      bigint,
    quantity_lots    bigint      NOT NULL,
    filled_lots      bigint      NOT NULL,
    trade_id         bigint,
    fill_price_ticks bigint,
    fill_lots        bigint,
    liquidity        text,
    reason           text,
    at               timestamptz NOT NULL,
    PRIMARY KEY (shard, shard_seq, event_index)
);
CREATE INDEX order_events_by_order ON order_events (order_id, shard_seq, event_index);

-- Trades, both sides in one row, partitioned by month (partitions are created ahead by
-- the persister: trades_yYYYYmMM).
CREATE TABLE trades (
    symbol         text        NOT NULL,
    trade_id       bigint      NOT NULL,
    price_ticks    bigint      NOT NULL,
    quantity_lots  bigint      NOT NULL,
    taker_side     text        NOT NULL,
    taker_order_id bigint      NOT NULL,
    taker_account  text        NOT NULL,
    maker_order_id bigint      NOT NULL,
    maker_account  text        NOT NULL,
    taker_fee      numeric     NOT NULL DEFAULT 0,
    maker_fee      numeric     NOT NULL DEFAULT 0,
    shard          integer     NOT NULL,
    shard_seq      bigint      NOT NULL,
    executed_at    timestamptz NOT NULL,
    PRIMARY KEY (symbol, trade_id, executed_at)
) PARTITION BY RANGE (executed_at);
-- Public trade history per symbol, newest first.
CREATE INDEX trades_by_symbol_time ON trades (symbol, executed_at DESC);

-- Each account's side of each trade: GET /v1/fills.
CREATE TABLE fills (
    symbol        text        NOT NULL,
    trade_id      bigint      NOT NULL,
    liquidity     text        NOT NULL, -- maker or taker
    account       text        NOT NULL,
    order_id      bigint      NOT NULL,
    side          text        NOT NULL,
    price_ticks   bigint      NOT NULL,
    quantity_lots bigint      NOT NULL,
    fee           numeric     NOT NULL DEFAULT 0,
    executed_at   timestamptz NOT NULL,
    PRIMARY KEY (symbol, trade_id, liquidity)
);
CREATE INDEX fills_by_account ON fills (account, executed_at DESC, trade_id DESC);
CREATE INDEX fills_by_order ON fills (order_id);
