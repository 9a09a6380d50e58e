//! The API's `snake_case` codes of every enum that reaches JSON or a database column:
//! `as_str` renders one without allocating, `from_code` reads it back (stores keep the
//! codes as text, so a row reads as the API would show it).

use crate::api::{Liquidity, OrderStatus};
use crate::command::{OrderType, SelfTradePrevention, TimeInForce};
use crate::event::{CancelReason, RejectReason};
use crate::fixed::Side;

macro_rules! codes {
    ($($ty:ty { $($variant:ident => $code:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The API code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }

            /// The value of an API code.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
        }
    )+};
}

codes! {
    Side { Buy => "buy", Sell => "sell" }
    OrderType { Limit => "limit", Market => "market" }
    TimeInForce { Gtc => "gtc", Ioc => "ioc", Fok => "fok" }
    SelfTradePrevention {
        CancelNewest => "cancel_newest", CancelOldest => "cancel_oldest", CancelBoth => "cancel_both", None => "none",
    }
    OrderStatus {
        Pending => "pending", New => "new", PartiallyFilled => "partially_filled", Filled => "filled",
        Cancelled => "cancelled", Rejected => "rejected",
    }
    Liquidity { Maker => "maker", Taker => "taker" }
    RejectReason {
        UnknownSymbol => "unknown_symbol",
        InvalidPrice => "invalid_price",
        InvalidQuantity => "invalid_quantity",
        QuantityBelowMin => "quantity_below_min",
        QuantityAboveMax => "quantity_above_max",
        NotionalAboveMax => "notional_above_max",
        InvalidTimeInForce => "invalid_time_in_force",
        PostOnlyWouldTake => "post_only_would_take",
        DuplicateClientOrderId => "duplicate_client_order_id",
        DuplicateOrderId => "duplicate_order_id",
        MaxOpenOrders => "max_open_orders",
        OrderNotOpen => "order_not_open",
        NotOrderOwner => "not_order_owner",
        InsufficientFunds => "insufficient_funds",
        InvalidFunds => "invalid_funds",
    }
    CancelReason {
        User => "user", Ioc => "ioc", Fok => "fok", Stp => "stp", CancelAll => "cancel_all",
        Disconnect => "disconnect", MarketNoLiquidity => "market_no_liquidity",
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    /// Every code is the one serde writes (the API's), and reads back to its value.
    fn check<T: Serialize + Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        code: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        for &v in all {
            assert_eq!(serde_json::to_value(v).expect("serialises"), serde_json::Value::from(code(v)));
            assert_eq!(parse(code(v)), Some(v));
        }
        assert_eq!(parse("no_such_code"), None);
    }

    #[test]
    fn codes_match_serde_and_round_trip() {
        use super::*;
        check(Side::ALL, Side::as_str, Side::from_code);
        check(OrderType::ALL, OrderType::as_str, OrderType::from_code);
        check(TimeInForce::ALL, TimeInForce::as_str, TimeInForce::from_code);
        check(SelfTradePrevention::ALL, SelfTradePrevention::as_str, SelfTradePrevention::from_code);
        check(OrderStatus::ALL, OrderStatus::as_str, OrderStatus::from_code);
        check(Liquidity::ALL, Liquidity::as_str, Liquidity::from_code);
        check(RejectReason::ALL, RejectReason::as_str, RejectReason::from_code);
        check(CancelReason::ALL, CancelReason::as_str, CancelReason::from_code);
        assert_eq!(RejectReason::ALL.len(), 15);
        assert_eq!(CancelReason::ALL.len(), 7);
    }
}
