//! A WebSocket client frame, read in one pass over its text: the top-level object's keys
//! and each value's raw JSON slice, borrowed from the frame (no tree, no copy). An op then
//! decodes only the fields it uses, each from its own slice, so a bad field gets its own
//! error (and the frame's `request_id` is still there to answer with), and order entry
//! decodes its order straight from those slices rather than through a `Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Keys an object may have before the frame is refused (every op has fewer than 16).
const MAX_FIELDS: usize = 64;

/// Why a frame is not one JSON object.
#[derive(Debug)]
pub enum FrameError {
    /// Not JSON at all.
    Json(serde_json::Error),
    /// JSON, but not an object (or one with too many keys).
    NotAnObject,
}

/// One client frame: its top-level fields in the order sent.
#[derive(Debug)]
pub struct Frame<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Frame<'a> {
    /// Reads `text` as one JSON object.
    ///
    /// # Errors
    /// [`FrameError`] when it is not JSON or not an object.
    pub fn parse(text: &'a str) -> Result<Self, FrameError> {
        serde_json::from_str::<Frame<'a>>(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => FrameError::NotAnObject,
            _ => FrameError::Json(e),
        })
    }

    /// The raw value of `key` (the last one, if it was sent twice).
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// `key` as a string; `None` when absent or not a string.
    pub fn str(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self.raw(key)?;
        serde_json::from_str::<&'a str>(raw.get())
            .map(Cow::Borrowed)
            .or_else(|_| serde_json::from_str::<String>(raw.get()).map(Cow::Owned))
            .ok()
    }

    /// Decodes the fields other than `skip` as one `T` (an order request: its own rules on
    /// unknown and missing fields apply).
    ///
    /// # Errors
    /// `T`'s error for the first field it refuses.
    pub fn decode_rest<T: Deserialize<'a>>(&self, skip: &[&str]) -> Result<T, serde_json::Error> {
        let fields = self.fields.iter().filter(|(k, _)| !skip.contains(&k.as_ref())).map(|(k, v)| (k.clone(), *v));
        T::deserialize(MapDeserializer::new(fields))
    }
}

impl<'de> Deserialize<'de> for Frame<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor;

        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = Frame<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(MAX_FIELDS));
                while let Some(Key(key)) = map.next_key()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(de::Error::custom("too many fields"));
                    }
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Frame { fields })
            }
        }

        deserializer.deserialize_map(FrameVisitor)
    }
}

/// An object key, borrowed from the frame unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_proto::api::OrderRequest;

    #[test]
    fn fields_are_borrowed_slices_of_the_frame() {
        let text = r#"{"op": "order.new", "request_id": 7, "symbol": "BTC-USD", "side": "buy",
            "type": "limit", "price": "30000.00", "quantity": "1"}"#;
        let frame = Frame::parse(text).expect("an object");
        assert_eq!(frame.str("op").as_deref(), Some("order.new"));
        assert!(matches!(frame.str("op"), Some(Cow::Borrowed(_))));
        assert_eq!(frame.raw("request_id").map(RawValue::get), Some("7"));
        let order: OrderRequest = frame.decode_rest(&["op", "request_id"]).expect("an order");
        assert_eq!((order.symbol.as_str(), order.price.as_deref()), ("BTC-USD", Some("30000.00")));
    }

    #[test]
    fn escapes_strings_and_refusals() {
        let frame = Frame::parse(r#"{"o\u0070": "p\"ing", "n": 5}"#).expect("an object");
        assert_eq!(frame.str("op").as_deref(), Some("p\"ing"));
        assert_eq!(frame.str("n"), None, "a number is not a string");
        assert!(matches!(Frame::parse("{not json"), Err(FrameError::Json(_))));
        assert!(matches!(Frame::parse("[1, 2]"), Err(FrameError::NotAnObject)));
        assert!(matches!(Frame::parse("\"op\""), Err(FrameError::NotAnObject)));
        let many = format!("{{{}}}", (0..65).map(|i| format!("\"k{i}\": 1")).collect::<Vec<_>>().join(","));
        assert!(matches!(Frame::parse(&many), Err(FrameError::NotAnObject)));
        // The order's own rules: unknown fields refused, with the field named.
        let frame = Frame::parse(r#"{"op": "order.new", "symbol": "BTC-USD", "colour": "red"}"#).expect("object");
        let error = frame.decode_rest::<OrderRequest>(&["op"]).expect_err("refused");
        assert!(error.to_string().contains("colour"), "{error}");
    }
}
