//! Who is in the cluster, as the state machine keeps it: each member's record (its name and
//! URLs) and the rules a membership change must pass before it is proposed.
//!
//! A record travels in a configuration change's context and in `Command::SetMember`, and is
//! stored in the meta keyspace inside a checksummed frame. Its bytes are this module's layout:
//!
//! ```text
//! record = tag u8 (0xA1), id u64, name, count, peer url*, count, client url*
//! ```
//!
//! in the storage codec's conventions (little-endian numbers, a `u32` length before bytes and
//! a `u32` count before a list). Records written before this layout are the peer protocol's
//! `PeerMember` protobuf message, which never starts with 0xA1 (its fields are numbered 1 to 5,
//! and 0xA1 would be field 20); [`MemberRecord::decode`] still reads them, so a data dir keeps
//! its members across the upgrade.
//!
//! What it does not do: derive member IDs, parse `--initial-cluster` or check a URL's syntax
//! (the server's), or change the Raft configuration (Raft's, through the log).

use crate::raft::NodeId;
use crate::storage::codec::{CodecError, Reader, Writer};
use bytes::Bytes;

/// The first byte of a record in this module's layout.
const RECORD_TAG: u8 = 0xA1;
/// The most learners a cluster may hold (etcd's `maxLearners`).
pub const LEARNERS_MAX: usize = 1;
/// A learner may be promoted once its log matches at least this share of the leader's, in
/// percent (etcd's `readyPercent`).
pub const PROMOTE_READY_PERCENT: u64 = 90;

/// One member as the cluster knows it. Whether it is a learner is not in the record: the Raft
/// configuration says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member's ID.
    pub id: u64,
    /// Empty until the member has started and published itself.
    pub name: String,
    /// Where its peers reach it.
    pub peer_urls: Vec<String>,
    /// Where its clients reach it; empty until it has published itself.
    pub client_urls: Vec<String>,
    /// The etcd API version its server speaks (`3.5.0`), published with its name; empty
    /// until it has published itself (or when a build without versions published it).
    pub version: String,
}

impl MemberRecord {
    /// The record's bytes, in this module's layout.
    pub fn encode(&self) -> Bytes {
        let urls = self.peer_urls.iter().chain(&self.client_urls);
        let mut w =
            Writer::with_capacity(32 + self.name.len() + urls.map(String::len).sum::<usize>());
        w.u8(RECORD_TAG);
        w.u64(self.id);
        w.bytes(self.name.as_bytes());
        for list in [&self.peer_urls, &self.client_urls] {
            w.u32(u32::try_from(list.len()).expect("under 4 G URLs"));
            for url in list {
                w.bytes(url.as_bytes());
            }
        }
        // A trailing field: records stored before it decode with no version.
        if !self.version.is_empty() {
            w.bytes(self.version.as_bytes());
        }
        let out = w.finish();
        debug_assert_eq!(
            MemberRecord::decode(self.id, &out).as_ref(),
            Ok(self),
            "decode reads what encode wrote"
        );
        out
    }

    /// Reads a stored record; `id` is the ID it was stored under (a record naming another ID
    /// is refused). Reads the legacy protobuf form too.
    pub fn decode(id: u64, buf: &[u8]) -> Result<MemberRecord, CodecError> {
        let record = if buf.first() == Some(&RECORD_TAG) {
            let mut r = Reader::new(&buf[1..]);
            let record_id = r.u64()?;
            let name = text(r.bytes()?)?;
            let peer_urls = read_urls(&mut r)?;
            let client_urls = read_urls(&mut r)?;
            let version = if r.remaining() > 0 {
                text(r.bytes()?)?
            } else {
                String::new()
            };
            r.finish()?;
            MemberRecord {
                id: record_id,
                name,
                peer_urls,
                client_urls,
                version,
            }
        } else {
            decode_legacy(buf)?
        };
        if record.id != id {
            return Err(malformed("member record names another ID"));
        }
        Ok(record)
    }
}

fn malformed(why: &'static str) -> CodecError {
    CodecError::Malformed { why }
}

fn text(b: Bytes) -> Result<String, CodecError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed("member record text is not UTF-8"))
}

fn read_urls(r: &mut Reader) -> Result<Vec<String>, CodecError> {
    let n = r.u32()? as usize;
    // Each URL takes at least its 4-byte length: a count the bytes cannot hold is refused
    // before anything is allocated for it.
    if n > r.remaining() / 4 {
        return Err(malformed("member record URL count exceeds its bytes"));
    }
    (0..n).map(|_| text(r.bytes()?)).collect()
}

/// The peer protocol's `PeerMember { id = 1 (varint), name = 2, peer_urls = 3 (repeated),
/// client_urls = 4 (repeated), is_learner = 5 (varint) }`, as records were first stored.
fn decode_legacy(mut buf: &[u8]) -> Result<MemberRecord, CodecError> {
    let mut record = MemberRecord::default();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        match (key >> 3, key & 7) {
            (1, 0) => record.id = varint(&mut buf)?,
            (5, 0) => {
                varint(&mut buf)?;
            }
            (field @ 2..=4, 2) => {
                let len = usize::try_from(varint(&mut buf)?)
                    .ok()
                    .filter(|&l| l <= buf.len())
                    .ok_or_else(|| malformed("legacy member record field overruns"))?;
                let (value, rest) = buf.split_at(len);
                buf = rest;
                let value = text(Bytes::copy_from_slice(value))?;
                match field {
                    2 => record.name = value,
                    3 => record.peer_urls.push(value),
                    _ => record.client_urls.push(value),
                }
            }
            _ => return Err(malformed("unknown field in a legacy member record")),
        }
    }
    Ok(record)
}

fn varint(buf: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or_else(|| malformed("legacy member record varint cut short"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(malformed("legacy member record varint too long"))
}

/// Why a membership change is refused before it is proposed (etcd's words are the API edge's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipError {
    /// No member has this ID.
    NotFound,
    /// Another member already uses one of the peer URLs.
    PeerUrlExists,
    /// The cluster holds [`LEARNERS_MAX`] learners already.
    TooManyLearners,
    /// Only a learner can be promoted.
    NotLearner,
    /// The learner's log is not yet [`PROMOTE_READY_PERCENT`] of the leader's.
    LearnerNotReady,
}

/// The members as applied, each with whether it is a learner, in ID order.
pub type Members = Vec<(MemberRecord, bool)>;

/// Checks adding a member with `peer_urls` (as a learner or a voter) to `members`.
pub fn check_add(
    members: &Members,
    peer_urls: &[String],
    learner: bool,
) -> Result<(), MembershipError> {
    if members
        .iter()
        .any(|(m, _)| m.peer_urls.iter().any(|u| peer_urls.contains(u)))
    {
        return Err(MembershipError::PeerUrlExists);
    }
    if learner && members.iter().filter(|(_, l)| *l).count() >= LEARNERS_MAX {
        return Err(MembershipError::TooManyLearners);
    }
    Ok(())
}

/// The member with `id`, and whether it is a learner.
pub fn find(members: &Members, id: NodeId) -> Result<(MemberRecord, bool), MembershipError> {
    members
        .iter()
        .find(|(m, _)| m.id == id)
        .cloned()
        .ok_or(MembershipError::NotFound)
}

/// Checks that a learner whose log matches `matched` of the leader's `last` index may be
/// promoted.
pub fn check_promote_ready(matched: u64, last: u64) -> Result<(), MembershipError> {
    if matched.saturating_mul(100) < last.saturating_mul(PROMOTE_READY_PERCENT) {
        return Err(MembershipError::LearnerNotReady);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MemberRecord {
        MemberRecord {
            id: 0x8e9e05c52164694d,
            name: "m1".into(),
            peer_urls: vec![
                "http://127.0.0.1:2380".into(),
                "http://10.0.0.1:2380".into(),
            ],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            version: String::new(),
        }
    }

    /// The legacy protobuf bytes of `record()`, as prost wrote them.
    fn legacy() -> Vec<u8> {
        let r = record();
        let mut out = vec![0x08];
        let mut id = r.id;
        while id >= 0x80 {
            out.push((id as u8) | 0x80);
            id >>= 7;
        }
        out.push(id as u8);
        for (field, value) in [(2u8, &r.name)]
            .into_iter()
            .chain(r.peer_urls.iter().map(|u| (3u8, u)))
            .chain(r.client_urls.iter().map(|u| (4u8, u)))
        {
            out.push(field << 3 | 2);
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    #[test]
    fn records_round_trip_and_refuse_another_id() {
        let r = record();
        let bytes = r.encode();
        assert_eq!(bytes[0], RECORD_TAG);
        assert_eq!(MemberRecord::decode(r.id, &bytes), Ok(r.clone()));
        assert!(MemberRecord::decode(r.id + 1, &bytes).is_err());
        for cut in 0..bytes.len() {
            assert!(
                MemberRecord::decode(r.id, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn legacy_protobuf_records_still_read() {
        assert_eq!(MemberRecord::decode(record().id, &legacy()), Ok(record()));
        let mut unknown = legacy();
        unknown.extend_from_slice(&[0xa0, 0x01, 0x00]);
        assert!(MemberRecord::decode(record().id, &unknown).is_err());
    }

    #[test]
    fn membership_rules() {
        let members: Members = vec![(record(), false)];
        assert_eq!(
            check_add(&members, &["http://10.0.0.1:2380".into()], false),
            Err(MembershipError::PeerUrlExists)
        );
        assert_eq!(
            check_add(&members, &["http://10.0.0.2:2380".into()], true),
            Ok(())
        );
        let with_learner: Members = vec![(record(), true)];
        assert_eq!(
            check_add(&with_learner, &["http://10.0.0.2:2380".into()], true),
            Err(MembershipError::TooManyLearners)
        );
        assert_eq!(find(&members, 7), Err(MembershipError::NotFound));
        assert_eq!(find(&members, record().id), Ok((record(), false)));
        assert_eq!(
            check_promote_ready(89, 100),
            Err(MembershipError::LearnerNotReady)
        );
        assert_eq!(check_promote_ready(90, 100), Ok(()));
    }
}
