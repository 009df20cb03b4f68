//! A posted event (gateway.md §2.5) read without building a JSON tree: the members the
//! gateway stores without looking inside (`result`, `error`, `error_details`,
//! `pause_metadata`) stay raw text, routes are capped while they are parsed, and the
//! rest of an event must fit the small event limit.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::raw::RawJson;

/// Most actors a posted route list (`prev`, `next`) may name.
pub const MAX_ROUTE_LEN: usize = 1024;

/// Start of the parse error a route over [`MAX_ROUTE_LEN`] produces (mapped to 413).
const ROUTE_TOO_LONG: &str = "route list has more than";

/// The `data` of a posted status event; members of other types than expected are
/// ignored, as before (`"message": 5` is no message).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventData {
    /// `data.status` (fallback for the top-level `status`).
    pub status: LenientStr,
    /// Actors already visited.
    pub prev: RouteList,
    /// Current actor.
    pub curr: LenientStr,
    /// Actors still to visit.
    pub next: RouteList,
    /// Progress message.
    pub message: LenientStr,
    /// Final result (kept as text).
    pub result: Option<RawJson>,
    /// Error (a string, or any JSON kept as its text).
    pub error: Option<RawJson>,
    /// Structured error details.
    pub error_details: Option<RawJson>,
    /// The `x-asya-pause` metadata of a pause.
    pub pause_metadata: Option<RawJson>,
}

impl EventData {
    /// Bytes of the members that carry a result or error (allowed up to the body limit).
    pub fn carried_bytes(&self) -> usize {
        [
            &self.result,
            &self.error,
            &self.error_details,
            &self.pause_metadata,
        ]
        .iter()
        .map(|m| m.as_ref().map_or(0, RawJson::len))
        .sum()
    }
}

/// The top level of a posted event.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(rename = "type", default)]
    kind: LenientStr,
    #[serde(default)]
    status: LenientStr,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// What [`parse`] found.
pub enum Posted {
    /// A status event: the posted status text and its data.
    Status {
        /// `status` (or `data.status`), as posted.
        posted: String,
        /// The parsed data.
        data: Box<EventData>,
    },
    /// A FLY event: its `data` object as posted.
    Fly(String),
}

/// Why a posted event was refused.
#[derive(Debug)]
pub enum EventError {
    /// Not the shape §2.5 describes (400).
    Malformed(String),
    /// A route list over [`MAX_ROUTE_LEN`] (413).
    RouteTooLong(String),
}

fn malformed(e: &serde_json::Error, what: &str) -> EventError {
    let text = e.to_string();
    if text.starts_with(ROUTE_TOO_LONG) {
        EventError::RouteTooLong(text)
    } else {
        EventError::Malformed(format!("{what}: {text}"))
    }
}

/// Parses a posted event body.
pub fn parse(body: &[u8]) -> Result<Posted, EventError> {
    let shape = "event body must be a JSON object {\"type\", \"status\"?, \"data\"}";
    let top: Top<'_> = serde_json::from_slice(body).map_err(|e| malformed(&e, shape))?;
    let data = top.data.filter(|d| d.get().trim() != "null");
    if let Some(d) = data {
        if !d.get().trim_start().starts_with('{') {
            return Err(EventError::Malformed(
                "event data must be a JSON object".into(),
            ));
        }
    }
    match top.kind.0.as_deref() {
        Some("status") => {
            let data: EventData = match data {
                None => EventData::default(),
                Some(d) => serde_json::from_str(d.get())
                    .map_err(|e| malformed(&e, "event data is not valid"))?,
            };
            let posted = top
                .status
                .0
                .or_else(|| data.status.0.clone())
                .unwrap_or_default();
            Ok(Posted::Status {
                posted,
                data: Box::new(data),
            })
        }
        Some("fly") => Ok(Posted::Fly(
            data.map_or_else(|| "{}".to_owned(), |d| d.get().to_owned()),
        )),
        _ => Err(EventError::Malformed(
            "event type must be \"status\" or \"fly\"".into(),
        )),
    }
}

/// A string member; any other JSON type reads as absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LenientStr(pub Option<String>);

impl LenientStr {
    /// The string, if one was posted.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

struct LenientStrVisitor;

impl<'de> Visitor<'de> for LenientStrVisitor {
    type Value = LenientStr;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientStr, E> {
        Ok(LenientStr(Some(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<LenientStr, E> {
        Ok(LenientStr(Some(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientStr, E> {
        Ok(LenientStr(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientStr, E> {
        Ok(LenientStr(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientStr, E> {
        Ok(LenientStr(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientStr, E> {
        Ok(LenientStr(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<LenientStr, E> {
        Ok(LenientStr(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<LenientStr, E> {
        Ok(LenientStr(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<LenientStr, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientStr, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LenientStr(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientStr, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientStr(None))
    }
}

impl<'de> Deserialize<'de> for LenientStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientStrVisitor)
    }
}

/// A list of actor names (non-strings skipped, as before), refused with an error as
/// soon as it passes [`MAX_ROUTE_LEN`] entries, before the rest is read; any other
/// JSON type reads as absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RouteList(pub Option<Vec<String>>);

impl RouteList {
    /// The list, if one was posted.
    pub fn as_ref(&self) -> Option<&Vec<String>> {
        self.0.as_ref()
    }
}

struct RouteListVisitor;

impl<'de> Visitor<'de> for RouteListVisitor {
    type Value = RouteList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of actor names")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RouteList, A::Error> {
        let mut out = Vec::new();
        let mut seen = 0usize;
        while let Some(item) = seq.next_element::<LenientStr>()? {
            seen += 1;
            if seen > MAX_ROUTE_LEN {
                return Err(de::Error::custom(format!(
                    "{ROUTE_TOO_LONG} {MAX_ROUTE_LEN} entries, the limit for a route; split the flow"
                )));
            }
            if let Some(s) = item.0 {
                out.push(s);
            }
        }
        Ok(RouteList(Some(out)))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<RouteList, E> {
        Ok(RouteList(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RouteList, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RouteList, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(RouteList(None))
    }
}

impl<'de> Deserialize<'de> for RouteList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RouteListVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn status_event_keeps_big_members_raw_and_ignores_wrong_types() {
        let body = br#"{"type":"status","status":"succeeded","data":{"result":[0, 0],
            "message": 5, "prev": ["a", 3, "b"], "next": "x", "curr": "c"}}"#;
        let Posted::Status { posted, data } = parse(body).unwrap() else {
            panic!("status expected")
        };
        assert_eq!(posted, "succeeded");
        assert_eq!(data.result.as_ref().unwrap().get(), "[0, 0]");
        assert_eq!(data.message, LenientStr(None));
        assert_eq!(data.prev.0, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(data.next.0, None);
        assert_eq!(data.curr.as_deref(), Some("c"));
        assert_eq!(data.carried_bytes(), 6);
    }

    #[test]
    fn long_route_is_refused_while_parsing() {
        let next: Vec<String> = (0..=MAX_ROUTE_LEN).map(|i| format!("a{i}")).collect();
        let body = serde_json::json!({"type":"status","status":"running","data":{"next": next}});
        let e = parse(body.to_string().as_bytes()).err().unwrap();
        assert!(matches!(e, EventError::RouteTooLong(_)), "{e:?}");
        for bad in [
            &b"[0,0,0]"[..],
            br#"{"type":"status","data":[1]}"#,
            br#"{"type":"x"}"#,
        ] {
            assert!(matches!(parse(bad), Err(EventError::Malformed(_))));
        }
    }
}
