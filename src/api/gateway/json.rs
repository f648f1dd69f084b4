//! The JSON of etcd's gateway, as Go's `jsonpb` (with `OrigName`) reads and writes it.
//!
//! What it owns: turning a request body into a prost request and a prost response into
//! bytes, with Go's answers where Go and serde differ: which inputs are accepted (int64 as a
//! number or a string, standard base64 with padding only, `null` as "not set", trailing bytes
//! after the first value ignored) and the words of the refusals (`unexpected EOF`,
//! `illegal base64 data at input byte N`, `json: cannot unmarshal ... into Go value of type
//! ...`), and Go's string escaping on output (`<`, `>`, `&` as `\u003c`...). The field names,
//! omitted defaults and enum names come from the serde impls pbjson-build generates (see
//! build.rs), which call [`GoBytes`] and [`GoNumber`] here instead of pbjson's helpers.
//!
//! What it does not do: look at what a request means, or map gRPC errors to HTTP (the
//! gateway module does).

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A request body that Go's decoder refused, in Go's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

/// Decodes the first JSON value of `body` into `T`, as etcd's gateway does: an empty body or
/// `null` is the empty request; what follows the first value is ignored.
pub fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, DecodeError> {
    match first_value(body) {
        Ok(Some((value, _))) => from_value(value),
        Ok(None) => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// The first JSON value in `buf` and the number of bytes it took; `None` when `buf` holds
/// only whitespace. A value cut short is `unexpected EOF`.
pub fn first_value(buf: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    match values.next() {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some((v, values.byte_offset()))),
        Some(Err(e)) => Err(DecodeError(syntax_error(buf, &e))),
    }
}

/// A decoded JSON value as the request `T`.
pub fn from_value<T: DeserializeOwned + Default>(mut value: Value) -> Result<T, DecodeError> {
    match &value {
        Value::Null => return Ok(T::default()),
        Value::Object(_) => {}
        other => {
            return Err(DecodeError(type_error(
                go_kind(other),
                "map[string]json.RawMessage",
            )));
        }
    }
    drop_nulls(&mut value);
    T::deserialize(value).map_err(|e| DecodeError(value_error(&e.to_string())))
}

/// jsonpb leaves a field whose value is `null` unset: so do we, before serde sees it.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// `value` as etcd's gateway writes it.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing generated types into memory cannot fail: no maps with non-string keys, no
    // I/O errors.
    value
        .serialize(&mut ser)
        .expect("wire types serialize to JSON");
    out
}

/// Go's name for a JSON value's kind in its type errors.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(kind: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {kind} into Go value of type {go_type}")
}

/// A serde error from decoding a value, in Go's words: our own helpers already speak Go;
/// serde's "invalid type" (a bool, string, message or list field given the wrong kind of
/// value) is translated.
fn value_error(serde: &str) -> String {
    let Some(rest) = serde.strip_prefix("invalid type: ") else {
        return serde.to_string();
    };
    let Some((unexpected, expected)) = rest.rsplit_once(", expected ") else {
        return serde.to_string();
    };
    let kind = match unexpected.split([' ', '`']).next().unwrap_or_default() {
        "boolean" => "bool",
        "integer" | "floating" => "number",
        "string" => "string",
        "sequence" => "array",
        "map" => "object",
        _ => return serde.to_string(),
    };
    let go_type = match expected {
        "a boolean" => "bool",
        "a string" => "string",
        "a sequence" => "[]json.RawMessage",
        e if e.starts_with("struct ") => "map[string]json.RawMessage",
        _ => return serde.to_string(),
    };
    type_error(kind, go_type)
}

/// A JSON syntax error in Go's words (`encoding/json`'s scanner), located by serde_json's
/// line and column.
fn syntax_error(buf: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected EOF".to_string();
    }
    let at = offset(buf, e.line(), e.column());
    let c = buf.get(at).copied().unwrap_or(b' ');
    let what = e.to_string();
    let context = if what.starts_with("key must be a string") {
        "looking for beginning of object key string".to_string()
    } else if what.starts_with("expected `:`") {
        "after object key".to_string()
    } else if what.starts_with("expected `,` or `}`") {
        "after object key:value pair".to_string()
    } else if what.starts_with("expected `,` or `]`") {
        "after array element".to_string()
    } else if what.starts_with("trailing comma") {
        if c == b'}' {
            "looking for beginning of object key string".to_string()
        } else {
            "looking for beginning of value".to_string()
        }
    } else if what.starts_with("control character") {
        "in string literal".to_string()
    } else if what.starts_with("invalid escape") {
        "in string escape code".to_string()
    } else if what.starts_with("invalid number") {
        "in numeric literal".to_string()
    } else if what.starts_with("expected ident") {
        literal_context(buf, at)
    } else {
        "looking for beginning of value".to_string()
    };
    format!("invalid character {} {context}", quote_char(c))
}

/// The byte offset of serde_json's 1-based `line` and `column` (the byte it stopped at).
fn offset(buf: &[u8], line: usize, column: usize) -> usize {
    let line_start = buf
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(i, _)| i + 1);
    let line_start = if line <= 1 { 0 } else { line_start };
    line_start + column.saturating_sub(1)
}

/// Go's words for a bad byte inside `true`, `false` or `null`: which literal, which byte it
/// wanted.
fn literal_context(buf: &[u8], at: usize) -> String {
    let start = buf[..at]
        .iter()
        .rposition(|b| !b.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    let literal = match buf.get(start) {
        Some(b't') => "true",
        Some(b'f') => "false",
        _ => "null",
    };
    let want = literal.as_bytes().get(at - start).copied().unwrap_or(b' ');
    format!("in literal {literal} (expecting {})", quote_char(want))
}

/// A byte as Go's scanner quotes it in its errors.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_string(),
        b'"' => "'\"'".to_string(),
        b'\\' => r"'\\'".to_string(),
        b'\n' => r"'\n'".to_string(),
        b'\r' => r"'\r'".to_string(),
        b'\t' => r"'\t'".to_string(),
        0x07 => r"'\a'".to_string(),
        0x08 => r"'\b'".to_string(),
        0x0c => r"'\f'".to_string(),
        0x0b => r"'\v'".to_string(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        c => format!(r"'\x{c:02x}'"),
    }
}

/// A `bytes` field: standard base64 with padding, as Go's `encoding/json` decodes `[]byte`,
/// refusing with Go's message and offset.
pub struct GoBytes<T>(pub T);

impl<'de, T: From<Vec<u8>>> Deserialize<'de> for GoBytes<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'v> Visitor<'v> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
                go_base64(s.as_bytes())
                    .map_err(|at| E::custom(format!("illegal base64 data at input byte {at}")))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<u8>, E> {
                Err(E::custom(type_error("bool", "[]uint8")))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<u8>, E> {
                Err(E::custom(type_error("number", "[]uint8")))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<u8>, E> {
                Err(E::custom(type_error("number", "[]uint8")))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<u8>, E> {
                Err(E::custom(type_error("number", "[]uint8")))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<Vec<u8>, A::Error> {
                Err(de::Error::custom(type_error("array", "[]uint8")))
            }
            fn visit_map<A: de::MapAccess<'v>>(self, _: A) -> Result<Vec<u8>, A::Error> {
                Err(de::Error::custom(type_error("object", "[]uint8")))
            }
        }
        Ok(GoBytes(d.deserialize_any(V)?.into()))
    }
}

/// The value of a standard base64 character, `None` for any other byte.
fn base64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Go's `base64.StdEncoding.Decode`: groups of four characters, `=` padding required, `\r`
/// and `\n` skipped; on a bad input, the offset Go reports.
fn go_base64(src: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        let mut quantum = [0u32; 4];
        let mut len = 4;
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // Padding is required: a short last group is refused at its first byte.
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = base64_value(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==" is expected: the second '=' after any newlines.
                while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                    si += 1;
                }
                if si == src.len() {
                    return Err(src.len());
                }
                if src[si] != b'=' {
                    return Err(si - 1);
                }
                si += 1;
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                return Err(si);
            }
            len = j;
            break;
        }
        let v = quantum[0] << 18 | quantum[1] << 12 | quantum[2] << 6 | quantum[3];
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if len < 4 {
            return Ok(out);
        }
    }
    Ok(out)
}

/// The integer types of the wire messages, with Go's names for them.
pub trait GoInt: Sized + TryFrom<i64> + TryFrom<u64> {
    const GO_NAME: &'static str;
}
impl GoInt for i64 {
    const GO_NAME: &'static str = "int64";
}
impl GoInt for u64 {
    const GO_NAME: &'static str = "uint64";
}
impl GoInt for i32 {
    const GO_NAME: &'static str = "int32";
}
impl GoInt for u32 {
    const GO_NAME: &'static str = "uint32";
}

/// An integer field: a JSON number, or a string holding one (jsonpb drops the quotes and
/// reads what is inside as JSON), refused in Go's words.
pub struct GoNumber<T>(pub T);

impl<'de, T: GoInt> Deserialize<'de> for GoNumber<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let inner = match value {
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(v) => v,
                Err(e) if s.trim().is_empty() || e.is_eof() => {
                    return Err(de::Error::custom("unexpected end of JSON input"));
                }
                Err(e) => {
                    let msg = syntax_error(s.as_bytes(), &e);
                    let msg = if e.to_string().starts_with("trailing characters") {
                        msg.replace("looking for beginning of value", "after top-level value")
                    } else {
                        msg
                    };
                    return Err(de::Error::custom(msg));
                }
            },
            v => v,
        };
        let n = match &inner {
            Value::Number(n) => n,
            // `"null"`: json.Unmarshal of `null` leaves the zero value.
            Value::Null => return Ok(GoNumber(zero())),
            other => return Err(de::Error::custom(type_error(go_kind(other), T::GO_NAME))),
        };
        let parsed = if let Some(i) = n.as_i64() {
            T::try_from(i).ok()
        } else if let Some(u) = n.as_u64() {
            T::try_from(u).ok()
        } else {
            None
        };
        parsed
            .map(GoNumber)
            .ok_or_else(|| de::Error::custom(type_error(&format!("number {n}"), T::GO_NAME)))
    }
}

fn zero<T: GoInt>() -> T {
    match T::try_from(0i64) {
        Ok(z) => z,
        Err(_) => unreachable!("0 fits every integer type"),
    }
}

/// serde_json's compact output with Go's `encoding/json` string escapes: `<`, `>`, `&`,
/// U+2028 and U+2029 as `\u` escapes, and backspace and form feed as `\u0008`, `\u000c`
/// (Go 1.19, which etcd 3.4.23 is built with).
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape;
        let s: String = match escape {
            CharEscape::Quote => "\\\"".into(),
            CharEscape::ReverseSolidus => "\\\\".into(),
            CharEscape::Solidus => "/".into(),
            CharEscape::Backspace => "\\u0008".into(),
            CharEscape::FormFeed => "\\u000c".into(),
            CharEscape::LineFeed => "\\n".into(),
            CharEscape::CarriageReturn => "\\r".into(),
            CharEscape::Tab => "\\t".into(),
            CharEscape::AsciiControl(b) => format!("\\u{b:04x}"),
        };
        writer.write_all(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb as pb;

    fn err<T: DeserializeOwned + Default + fmt::Debug>(body: &str) -> String {
        decode::<T>(body.as_bytes()).unwrap_err().0
    }

    /// The refusals measured against etcd 3.4.23's gateway (POST /v3/kv/range).
    #[test]
    fn refusals_in_gos_words() {
        type R = pb::RangeRequest;
        assert_eq!(err::<R>(r#"{"key":"Zm9v""#), "unexpected EOF");
        assert_eq!(
            err::<R>(r#"{"key":"Zm9v!"}"#),
            "illegal base64 data at input byte 4"
        );
        assert_eq!(
            err::<R>(r#"{"key":"Zm9"}"#),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            err::<R>(r#"{"key":"Zm9v","range_end":"-_8"}"#),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            err::<R>(r#"{"key":"Zm9v","limit":1.5}"#),
            "json: cannot unmarshal number 1.5 into Go value of type int64"
        );
        assert_eq!(
            err::<R>(r#"{"key":"Zm9v","limit":"x"}"#),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            err::<R>(r#"{"key":5}"#),
            "json: cannot unmarshal number into Go value of type []uint8"
        );
        assert_eq!(
            err::<R>(r#"{"key":"Zm9v","sort_order":"NOPE"}"#),
            r#"unknown value "NOPE" for enum etcdserverpb.RangeRequest_SortOrder"#
        );
        assert_eq!(
            err::<R>("garbage"),
            "invalid character 'g' looking for beginning of value"
        );
        assert_eq!(
            err::<R>("[1]"),
            "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"
        );
        assert_eq!(
            err::<R>(r#"{"key":"Zm9v","serializable":"true"}"#),
            "json: cannot unmarshal string into Go value of type bool"
        );
    }

    #[test]
    fn accepts_what_jsonpb_accepts() {
        let r: pb::RangeRequest = decode(b"").unwrap();
        assert_eq!(r, pb::RangeRequest::default());
        let r: pb::RangeRequest = decode(b" null ").unwrap();
        assert_eq!(r, pb::RangeRequest::default());
        let r: pb::RangeRequest = decode(
            br#"{"key":"Zm9v","limit":"1","sortOrder":"DESCEND","keys_only":true,"bogus":1,"revision":null}xx"#,
        )
        .unwrap();
        assert_eq!(&r.key[..], b"foo");
        assert_eq!(r.limit, 1);
        assert_eq!(r.sort_order, 2);
        assert!(r.keys_only);
        let r: pb::RangeRequest = decode(br#"{"key":"AA==","sort_order":1,"limit":2}"#).unwrap();
        assert_eq!((&r.key[..], r.sort_order, r.limit), (&b"\0"[..], 1, 2));
    }

    #[test]
    fn go_base64_matches_go() {
        assert_eq!(go_base64(b"").unwrap(), b"");
        assert_eq!(go_base64(b"Zm9v").unwrap(), b"foo");
        assert_eq!(go_base64(b"Zm8=").unwrap(), b"fo");
        assert_eq!(go_base64(b"Zg==").unwrap(), b"f");
        assert_eq!(go_base64(b"Zm\n9v").unwrap(), b"foo");
        assert_eq!(go_base64(b"Zg="), Err(3));
        assert_eq!(go_base64(b"Zg=x"), Err(2));
        assert_eq!(go_base64(b"Z==="), Err(1));
        assert_eq!(go_base64(b"Zm8=Zm8="), Err(4));
        assert_eq!(go_base64(b"Zm9vZ"), Err(4));
    }

    #[test]
    fn output_as_go_writes_it() {
        let resp = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: u64::MAX,
                member_id: 1,
                revision: 0,
                raft_term: 2,
            }),
            kvs: vec![crate::pb::mvccpb::KeyValue {
                key: "a<b>&".into(),
                value: bytes::Bytes::new(),
                create_revision: 3,
                ..Default::default()
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            String::from_utf8(encode(&resp)).unwrap(),
            r#"{"header":{"cluster_id":"18446744073709551615","member_id":"1","raft_term":"2"},"kvs":[{"key":"YTxiPiY=","create_revision":"3"}],"count":"1"}"#
        );
        let status = pb::StatusResponse {
            db_size: 5,
            raft_index: 6,
            version: "x<y".into(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(encode(&status)).unwrap(),
            r#"{"version":"x\u003cy","dbSize":"5","raftIndex":"6"}"#
        );
        let ev = crate::pb::mvccpb::Event {
            r#type: 1,
            kv: None,
            prev_kv: None,
        };
        assert_eq!(
            String::from_utf8(encode(&ev)).unwrap(),
            r#"{"type":"DELETE"}"#
        );
    }
}
