//! JSON as etcdctl writes it: Go's `encoding/json` applied to etcd's Go structs. Fields come
//! in declaration order, zero values are left out where the Go field says `omitempty`, bytes
//! are base64, and `<`, `>`, `&` are escaped as Go escapes them. This module owns that text
//! form and nothing else: which fields a response has is the printer's business.

/// One JSON object being written, fields in the order they are added.
pub struct Obj {
    out: String,
    empty: bool,
}

impl Default for Obj {
    fn default() -> Self {
        Obj::new()
    }
}

impl Obj {
    pub fn new() -> Obj {
        Obj {
            out: String::from("{"),
            empty: true,
        }
    }

    /// A field whose value is already JSON text.
    pub fn raw(&mut self, name: &str, json: &str) -> &mut Obj {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push_str(&string(name));
        self.out.push(':');
        self.out.push_str(json);
        self
    }

    pub fn int(&mut self, name: &str, v: impl Into<i128>) -> &mut Obj {
        self.raw(name, &v.into().to_string())
    }

    /// An integer left out when zero (`omitempty`).
    pub fn int_omit(&mut self, name: &str, v: impl Into<i128>) -> &mut Obj {
        let v = v.into();
        if v != 0 {
            self.raw(name, &v.to_string());
        }
        self
    }

    pub fn bool(&mut self, name: &str, v: bool) -> &mut Obj {
        self.raw(name, if v { "true" } else { "false" })
    }

    pub fn bool_omit(&mut self, name: &str, v: bool) -> &mut Obj {
        if v {
            self.raw(name, "true");
        }
        self
    }

    pub fn str(&mut self, name: &str, v: &str) -> &mut Obj {
        self.raw(name, &string(v))
    }

    pub fn str_omit(&mut self, name: &str, v: &str) -> &mut Obj {
        if !v.is_empty() {
            self.raw(name, &string(v));
        }
        self
    }

    /// Bytes, base64 (left out when empty: every bytes field of etcd's messages is `omitempty`).
    pub fn bytes_omit(&mut self, name: &str, v: &[u8]) -> &mut Obj {
        if !v.is_empty() {
            self.raw(name, &format!("\"{}\"", base64(v)));
        }
        self
    }

    /// A list of JSON values, left out when empty.
    pub fn list_omit(&mut self, name: &str, items: &[String]) -> &mut Obj {
        if !items.is_empty() {
            self.raw(name, &list(items));
        }
        self
    }

    pub fn end(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// A JSON array of values already written as JSON.
pub fn list(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

/// A JSON string as Go writes it.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A string quoted as Go's `%q` does (`strconv.Quote`): printable characters as they are,
/// the rest escaped.
pub fn go_quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::from("\"");
    // Invalid UTF-8 shows byte by byte, as Go's %q does.
    if std::str::from_utf8(bytes).is_err() {
        for &b in bytes {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                0x20..=0x7e => out.push(b as char),
                _ => out.push_str(&format!("\\x{b:02x}")),
            }
        }
        out.push('"');
        return out;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"p/a"), "cC9h");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn strings_escape_as_go_does() {
        assert_eq!(
            string("a<b>&\"\\\n\u{1}"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001""#
        );
        assert_eq!(go_quote(b"a\"b\n"), r#""a\"b\n""#);
        assert_eq!(go_quote(&[0x61, 0xff]), r#""a\xff""#);
    }

    #[test]
    fn objects_leave_out_empty_fields() {
        let json = Obj::new()
            .int_omit("a", 0i64)
            .int_omit("b", 2i64)
            .str_omit("c", "")
            .bool("d", false)
            .bytes_omit("e", b"foo")
            .end();
        assert_eq!(json, r#"{"b":2,"d":false,"e":"Zm9v"}"#);
    }
}
