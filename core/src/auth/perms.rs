//! Key permissions and the interval check: is a key, or every key of a range, inside the union
//! of the intervals a user's roles grant?
//!
//! A permission's `range_end` follows etcd: empty is the single key, `"\0"` is every key from
//! `key` on, anything else the half-open range `[key, range_end)`. A request's range reads the
//! same way.

use bytes::Bytes;

/// What a permission allows, with etcd's `Permission.Type` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermKind {
    /// Reads (ranges, watches, compares, prev_kv).
    Read = 0,
    /// Writes (puts, deletes).
    Write = 1,
    /// Both.
    ReadWrite = 2,
}

impl PermKind {
    /// The kind with etcd's number `n`.
    pub fn from_i32(n: i32) -> Option<PermKind> {
        match n {
            0 => Some(PermKind::Read),
            1 => Some(PermKind::Write),
            2 => Some(PermKind::ReadWrite),
            _ => None,
        }
    }

    /// Whether a permission of this kind allows an operation that needs `need`
    /// ([`PermKind::Read`] or [`PermKind::Write`]).
    pub fn allows(self, need: PermKind) -> bool {
        self == PermKind::ReadWrite || self == need
    }
}

/// One key permission of a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// What it allows.
    pub kind: PermKind,
    /// The first key.
    pub key: Bytes,
    /// Empty: `key` alone; `"\0"`: every key from `key` on; else the end, excluded.
    pub range_end: Bytes,
}

/// An interval's end: a key (excluded) or past every key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End<'a> {
    Key(&'a [u8]),
    Infinite,
}

/// `[key, end)` for a permission or request range in etcd's encoding. An empty key (which
/// etcd's interval order puts past every key) covers nothing: `None`.
fn interval<'a>(
    key: &'a [u8],
    range_end: &'a [u8],
    point_end: &'a mut Vec<u8>,
) -> Option<(&'a [u8], End<'a>)> {
    if key.is_empty() {
        return None;
    }
    Some(match range_end {
        [] => {
            point_end.clear();
            point_end.extend_from_slice(key);
            point_end.push(0);
            (key, End::Key(point_end.as_slice()))
        }
        [0] => (key, End::Infinite),
        end => (key, End::Key(end)),
    })
}

/// Whether the permissions `granted` (those of kind allowing `need`) cover the request's key
/// or range: a single key must lie in one granted interval; a range must be covered by
/// granted intervals with no gap.
pub(super) fn covered<'a>(
    granted: impl Iterator<Item = &'a Permission>,
    need: PermKind,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let mut ends: Vec<Vec<u8>> = Vec::new();
    let perms: Vec<&Permission> = granted.filter(|p| p.kind.allows(need)).collect();
    ends.resize(perms.len(), Vec::new());
    let mut intervals: Vec<(&[u8], End)> = perms
        .iter()
        .zip(ends.iter_mut())
        .filter_map(|(p, e)| interval(&p.key, &p.range_end, e))
        .collect();
    intervals.sort();
    let mut request_end = Vec::new();
    let Some((begin, end)) = interval(key, range_end, &mut request_end) else {
        return false;
    };
    if range_end.is_empty() {
        return intervals
            .iter()
            .any(|&(b, e)| b <= begin && End::Key(begin) < e);
    }
    // Sweep the intervals in order of their first key, extending what is covered from `begin`.
    let mut reached = End::Key(begin);
    for (b, e) in intervals {
        if reached >= end {
            break;
        }
        if End::Key(b) > reached {
            break;
        }
        reached = reached.max(e);
    }
    reached >= end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(kind: PermKind, key: &str, end: &str) -> Permission {
        Permission {
            kind,
            key: Bytes::copy_from_slice(key.as_bytes()),
            range_end: Bytes::copy_from_slice(end.as_bytes()),
        }
    }

    fn ok(perms: &[Permission], need: PermKind, key: &str, end: &str) -> bool {
        covered(perms.iter(), need, key.as_bytes(), end.as_bytes())
    }

    #[test]
    fn single_keys_ranges_and_from_key() {
        let p = [
            perm(PermKind::ReadWrite, "foo", ""),
            perm(PermKind::Read, "a", "c"),
            perm(PermKind::Write, "z", "\0"),
        ];
        assert!(ok(&p, PermKind::Read, "foo", ""));
        assert!(ok(&p, PermKind::Write, "foo", ""));
        assert!(!ok(&p, PermKind::Read, "foo0", ""));
        assert!(
            !ok(&p, PermKind::Read, "foo", "fop"),
            "a range over a single key"
        );
        assert!(ok(&p, PermKind::Read, "a", "c"));
        assert!(ok(&p, PermKind::Read, "b", "bz"));
        assert!(!ok(&p, PermKind::Read, "b", "d"));
        assert!(!ok(&p, PermKind::Write, "a", ""));
        assert!(ok(&p, PermKind::Write, "z", ""));
        assert!(ok(&p, PermKind::Write, "z9", "\0"));
        assert!(ok(&p, PermKind::Write, "\u{7f}", ""));
        assert!(!ok(&p, PermKind::Write, "y", "\0"));
        assert!(!ok(&p, PermKind::Read, "z", ""));
    }

    #[test]
    fn adjacent_grants_combine_and_gaps_do_not() {
        let p = [
            perm(PermKind::Read, "a", "b"),
            perm(PermKind::Read, "b", "c"),
            perm(PermKind::Read, "d", "e"),
        ];
        assert!(ok(&p, PermKind::Read, "a", "c"));
        assert!(!ok(&p, PermKind::Read, "a", "d\0"));
        assert!(!ok(&p, PermKind::Read, "c", ""));
    }

    #[test]
    fn an_empty_key_covers_nothing() {
        let p = [perm(PermKind::Read, "", "\0")];
        assert!(!ok(&p, PermKind::Read, "a", ""));
        let all = [perm(PermKind::Read, "\0", "\0")];
        assert!(ok(&all, PermKind::Read, "a", ""));
        assert!(ok(&all, PermKind::Read, "\0", "\0"));
    }
}
