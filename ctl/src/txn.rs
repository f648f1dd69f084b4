//! etcdctl's transaction language, read from stdin by `txn`: compare lines such as
//! `mod("key") > "5"`, an empty line, the success requests (`put k v`, `get k --prefix`,
//! `del k`), an empty line, the failure requests, an empty line. This module owns parsing
//! that text into a `TxnRequest` and the shared parsing of put / get / del arguments; it sends
//! nothing.

use super::{CtlError, EXIT_BAD_ARGS, EXIT_INVALID_INPUT};
use bytes::Bytes;
use oxcd::pb::etcdserverpb as pb;

/// `get`'s options, shared by the `get` command and txn lines.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GetOpts {
    /// Linearizable (l) or serializable (s).
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// ASCEND or DESCEND.
    #[arg(long, default_value = "")]
    pub order: String,
    /// CREATE, KEY, MODIFY, VALUE or VERSION.
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results.
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Get keys with a matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Get keys greater than or equal to the given key (byte order).
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// The revision to read at.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys.
    #[arg(long = "keys-only")]
    pub keys_only: bool,
    /// Get only the count.
    #[arg(long = "count-only")]
    pub count_only: bool,
    /// Print only the values.
    #[arg(long = "print-value-only")]
    pub print_value_only: bool,
}

/// `put`'s options.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PutOpts {
    /// Lease ID (hex) to attach to the key.
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// Return the previous key-value pair.
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// Keep the current value.
    #[arg(long = "ignore-value")]
    pub ignore_value: bool,
    /// Keep the current lease.
    #[arg(long = "ignore-lease")]
    pub ignore_lease: bool,
}

/// `del`'s options.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DelOpts {
    /// Delete keys with a matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Return the deleted key-value pairs.
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// Delete keys greater than or equal to the given key (byte order).
    #[arg(long = "from-key")]
    pub from_key: bool,
}

/// The end of the range of keys starting with `key` (etcd's prefix rule: the last byte below
/// 0xff incremented, everything after it dropped; no such byte means every key from `key`).
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("not empty") += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// The key and range end that `args` (KEY [RANGE_END]) and `--prefix` / `--from-key` name,
/// as etcd's client computes them (an empty key with either flag means every key).
fn key_range(args: &[String], prefix: bool, from_key: bool) -> Result<(Bytes, Bytes), CtlError> {
    let key = Bytes::from(args[0].clone().into_bytes());
    if let Some(end) = args.get(1) {
        if prefix || from_key {
            return Err(bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        return Ok((key, Bytes::from(end.clone().into_bytes())));
    }
    let all = || (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    Ok(match (prefix, from_key) {
        (true, _) | (_, true) if key.is_empty() => all(),
        (true, _) => {
            let end = Bytes::from(prefix_end(&key));
            (key, end)
        }
        (_, true) => (key, Bytes::from_static(b"\0")),
        _ => (key, Bytes::new()),
    })
}

fn bad_args(msg: &str) -> CtlError {
    CtlError::new(EXIT_BAD_ARGS, msg.to_string())
}

/// `get KEY [RANGE_END]` with `opts`, as etcdctl builds the request.
pub fn range_request(args: &[String], opts: &GetOpts) -> Result<pb::RangeRequest, CtlError> {
    let Some(key) = args.first() else {
        return Err(bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    };
    if opts.prefix && opts.from_key {
        return Err(bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let serializable = match opts.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            return Err(CtlError::new(
                super::EXIT_BAD_FEATURE,
                format!("unknown consistency flag {other:?}"),
            ));
        }
    };
    let mut req = pb::RangeRequest {
        key: Bytes::from(key.clone().into_bytes()),
        limit: opts.limit,
        revision: opts.rev.max(0),
        serializable,
        keys_only: opts.keys_only,
        count_only: opts.count_only,
        ..Default::default()
    };
    let order = match opts.order.to_uppercase().as_str() {
        "" => 0,
        "ASCEND" => 1,
        "DESCEND" => 2,
        _ => {
            return Err(CtlError::new(
                super::EXIT_BAD_FEATURE,
                format!("bad sort order {}", opts.order),
            ));
        }
    };
    let target = match opts.sort_by.to_uppercase().as_str() {
        "" | "KEY" => 0,
        "VERSION" => 1,
        "CREATE" => 2,
        "MODIFY" => 3,
        "VALUE" => 4,
        _ => {
            return Err(CtlError::new(
                super::EXIT_BAD_FEATURE,
                format!("bad sort target {}", opts.sort_by),
            ));
        }
    };
    // Keys come back in ascending key order anyway: etcd's client drops that sort so the
    // server need not read the whole range before applying the limit.
    req.sort_order = if target == 0 && order == 1 { 0 } else { order };
    req.sort_target = target;
    (req.key, req.range_end) = key_range(args, opts.prefix, opts.from_key)?;
    Ok(req)
}

/// `put KEY VALUE` with `opts`; `value` is `None` when it is to come from stdin and stdin
/// gave nothing.
pub fn put_request(
    args: &[String],
    value: Option<Vec<u8>>,
    opts: &PutOpts,
) -> Result<pb::PutRequest, CtlError> {
    let usage = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = args.first() else {
        return Err(bad_args(usage));
    };
    if opts.ignore_value && args.len() > 1 {
        return Err(bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let value = if opts.ignore_value {
        Vec::new()
    } else {
        match (args.get(1), value) {
            (Some(v), _) => v.clone().into_bytes(),
            (None, Some(v)) if !v.is_empty() => v,
            _ => return Err(bad_args(usage)),
        }
    };
    let lease = i64::from_str_radix(&opts.lease, 16)
        .map_err(|e| bad_args(&format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(pb::PutRequest {
        key: Bytes::from(key.clone().into_bytes()),
        value: Bytes::from(value),
        lease,
        prev_kv: opts.prev_kv,
        ignore_value: opts.ignore_value,
        ignore_lease: opts.ignore_lease,
    })
}

/// `del KEY [RANGE_END]` with `opts`.
pub fn delete_request(args: &[String], opts: &DelOpts) -> Result<pb::DeleteRangeRequest, CtlError> {
    if args.is_empty() || args.len() > 2 {
        return Err(bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if opts.prefix && opts.from_key {
        return Err(bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = pb::DeleteRangeRequest {
        key: Bytes::from(args[0].clone().into_bytes()),
        prev_kv: opts.prev_kv,
        ..Default::default()
    };
    (req.key, req.range_end) = key_range(args, opts.prefix, opts.from_key)?;
    Ok(req)
}

/// Splits a request line into words as etcdctl does: double-quoted strings (with escapes)
/// and single-quoted strings are one word each, quotes removed.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        match c {
            '"' => {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(match n {
                                    'n' => '\n',
                                    't' => '\t',
                                    other => other,
                                });
                            }
                        }
                        '"' => break,
                        c => word.push(c),
                    }
                }
            }
            '\'' => {
                chars.next();
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
            }
        }
        out.push(word);
    }
    out
}

/// One request line of a transaction: `put`, `get` or `del` with their flags.
pub fn request_op(line: &str) -> Result<pb::RequestOp, CtlError> {
    use clap::Parser;
    use pb::request_op::Request;
    #[derive(Parser)]
    #[command(no_binary_name = true)]
    enum Line {
        Put {
            #[command(flatten)]
            opts: PutOpts,
            args: Vec<String>,
        },
        Get {
            #[command(flatten)]
            opts: GetOpts,
            args: Vec<String>,
        },
        Del {
            #[command(flatten)]
            opts: DelOpts,
            args: Vec<String>,
        },
    }
    let words = words(line);
    if words.len() < 2 {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!("invalid txn compare request: {line}"),
        ));
    }
    let invalid = || CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn request: {line}"));
    let request = match Line::try_parse_from(words).map_err(|_| invalid())? {
        Line::Put { opts, args } => Request::RequestPut(put_request(&args, None, &opts)?),
        Line::Get { opts, args } => Request::RequestRange(range_request(&args, &opts)?),
        Line::Del { opts, args } => Request::RequestDeleteRange(delete_request(&args, &opts)?),
    };
    Ok(pb::RequestOp {
        request: Some(request),
    })
}

/// Reads a Go-style quoted string at the start of `s`: the string and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &rest[i + 1..])),
            '\\' => {
                let (_, n) = chars.next()?;
                out.push(match n {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    None
}

/// A compare line: `TARGET("key") OP "value"`, TARGET one of ver/version, c/create, m/mod,
/// val/value, lease; OP one of `=`, `!=`, `<`, `>`.
pub fn compare(line: &str) -> Result<pb::Compare, CtlError> {
    use pb::compare::TargetUnion;
    let malformed = |why: &str| {
        CtlError::new(
            EXIT_INVALID_INPUT,
            format!("malformed comparison: {line}{why}"),
        )
    };
    let Some((target, rest)) = line.split_once('(') else {
        return Err(malformed(""));
    };
    let parsed = (|| {
        let (key, rest) = quoted(rest)?;
        let rest = rest.strip_prefix(')')?.trim_start();
        let (op, rest) = rest.split_once(char::is_whitespace)?;
        let (value, _) = quoted(rest)?;
        Some((key, op.to_string(), value))
    })();
    let Some((key, op, value)) = parsed else {
        return Err(malformed(""));
    };
    let result = match op.as_str() {
        "=" => 0,
        ">" => 1,
        "<" => 2,
        "!=" => 3,
        _ => {
            return Err(CtlError::new(
                EXIT_INVALID_INPUT,
                format!("Unknown result op {op:?}"),
            ));
        }
    };
    let int = || {
        value.parse::<i64>().map_err(|_| {
            CtlError::new(
                EXIT_INVALID_INPUT,
                format!("invalid txn compare request: {line}"),
            )
        })
    };
    let (target, union) = match target {
        "ver" | "version" => (0, TargetUnion::Version(int()?)),
        "c" | "create" => (1, TargetUnion::CreateRevision(int()?)),
        "m" | "mod" => (2, TargetUnion::ModRevision(int()?)),
        "val" | "value" => (
            3,
            TargetUnion::Value(Bytes::from(value.clone().into_bytes())),
        ),
        "lease" => (4, TargetUnion::Lease(int()?)),
        other => return Err(malformed(&format!(" (unknown target {other})"))),
    };
    Ok(pb::Compare {
        result,
        target,
        key: Bytes::from(key.into_bytes()),
        range_end: Bytes::new(),
        target_union: Some(union),
    })
}

/// Reads a whole transaction from `input` (the lines etcdctl reads from stdin). `prompt` is
/// called before each of the three parts (interactive mode prints it).
pub fn read_txn(input: &str, mut prompt: impl FnMut(&str)) -> Result<pb::TxnRequest, CtlError> {
    let mut lines = input.split_inclusive('\n');
    // Each part ends at an empty line; input that ends first is an error, as in etcdctl.
    let part = |lines: &mut std::str::SplitInclusive<'_, char>| -> Result<Vec<String>, CtlError> {
        let mut out = Vec::new();
        loop {
            let Some(line) = lines.next().filter(|l| l.ends_with('\n')) else {
                return Err(CtlError::new(EXIT_INVALID_INPUT, "EOF".to_string()));
            };
            let line = line.trim();
            if line.is_empty() {
                return Ok(out);
            }
            out.push(line.to_string());
        }
    };
    prompt("compares:");
    let compares = part(&mut lines)?
        .iter()
        .map(|l| compare(l))
        .collect::<Result<Vec<_>, _>>()?;
    prompt("success requests (get, put, del):");
    let success = part(&mut lines)?
        .iter()
        .map(|l| request_op(l))
        .collect::<Result<Vec<_>, _>>()?;
    prompt("failure requests (get, put, del):");
    let failure = part(&mut lines)?
        .iter()
        .map(|l| request_op(l))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pb::TxnRequest {
        compare: compares,
        success,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_where_etcd_says() {
        assert_eq!(prefix_end(b"p/"), b"p0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn a_transaction_parses_in_its_three_parts() {
        let mut prompts = Vec::new();
        let txn = read_txn(
            "mod(\"foo\") > \"100\"\nvalue(\"a b\") = \"x y\"\n\nput t2 yes\nget t --prefix\n\ndel t1\n\n",
            |p| prompts.push(p.to_string()),
        )
        .unwrap();
        assert_eq!(prompts.len(), 3);
        assert_eq!(txn.compare.len(), 2);
        assert_eq!((txn.compare[0].target, txn.compare[0].result), (2, 1));
        assert_eq!(&txn.compare[1].key[..], b"a b");
        assert_eq!((txn.success.len(), txn.failure.len()), (2, 1));
        let Some(pb::request_op::Request::RequestRange(r)) = &txn.success[1].request else {
            panic!("a range");
        };
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"t"[..], &b"u"[..]));
    }

    #[test]
    fn bad_lines_are_refused_with_etcdctls_words() {
        assert!(
            compare("mod(foo) > 1")
                .unwrap_err()
                .message
                .starts_with("malformed comparison")
        );
        assert_eq!(
            request_op("put").unwrap_err().message,
            "invalid txn compare request: put"
        );
        assert_eq!(
            request_op("frob a b").unwrap_err().message,
            "invalid txn request: frob a b"
        );
        assert_eq!(read_txn("\nput a b\n", |_| {}).unwrap_err().message, "EOF");
    }

    #[test]
    fn words_keep_quoted_strings_whole() {
        assert_eq!(words(r#"put "a b" 'c d' e"#), ["put", "a b", "c d", "e"]);
    }
}
