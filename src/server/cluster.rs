//! Who is in the cluster: member records (name, peer and client URLs), how member and cluster
//! IDs are derived, and the `--initial-cluster` syntax.
//!
//! A member's record is stored by the core as opaque bytes (the state machine keeps them in
//! step with the Raft membership); this module owns their encoding, which is the peer
//! protocol's `PeerMember` message. Whether a member is a learner is not in the record: the
//! Raft configuration says so.

use crate::pb::etcdserverpb;
use crate::pb::peer::PeerMember;
use bytes::Bytes;
use prost::Message;
use std::collections::BTreeMap;

/// One member as the cluster knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty until the member has started and published itself.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl MemberInfo {
    pub fn encode(&self) -> Bytes {
        Bytes::from(
            PeerMember {
                id: self.id,
                name: self.name.clone(),
                peer_urls: self.peer_urls.clone(),
                client_urls: self.client_urls.clone(),
                is_learner: false,
            }
            .encode_to_vec(),
        )
    }

    /// Reads a stored record; `id` is the key it was stored under (a record naming another ID
    /// is refused).
    pub fn decode(id: u64, record: &[u8]) -> Result<MemberInfo, String> {
        let m = PeerMember::decode(record).map_err(|e| format!("member record {id:x}: {e}"))?;
        if m.id != id {
            return Err(format!("member record under {id:x} names {:x}", m.id));
        }
        Ok(MemberInfo {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
        })
    }

    /// The record as etcd's `Member` message.
    pub fn to_pb(&self, is_learner: bool) -> etcdserverpb::Member {
        etcdserverpb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner,
        }
    }
}

/// Decodes every stored record; a record that does not decode is skipped and reported.
pub fn decode_members(records: &BTreeMap<u64, Bytes>) -> (Vec<MemberInfo>, Vec<String>) {
    let mut members = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    for (id, r) in records {
        match MemberInfo::decode(*id, r) {
            Ok(m) => members.push(m),
            Err(e) => errors.push(e),
        }
    }
    (members, errors)
}

/// 64-bit FNV-1a: a stable hash every member computes alike (IDs must agree across members
/// and releases, so no `std` hasher).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A founding member's ID: a hash of its sorted peer URLs and the cluster token, so every
/// founding member derives the same IDs from `--initial-cluster` (as etcd does). Never 0.
pub fn member_id(peer_urls: &[String], token: &str, salt_ms: Option<u64>) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let joined = urls.join(",");
    let salt = salt_ms.map(u64::to_be_bytes).unwrap_or_default();
    let salt: &[u8] = if salt_ms.is_some() { &salt } else { &[] };
    fnv1a(&[joined.as_bytes(), token.as_bytes(), salt]).max(1)
}

/// The cluster's ID: a hash of the founding members' IDs and the token. Never 0.
pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    fnv1a(&[&bytes, token.as_bytes()]).max(1)
}

/// Parses `--initial-cluster` (`name=url,name=url2,other=url3`; a name may repeat to give
/// several peer URLs) into members in the order first named.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster entry {part:?} is not name=url"))?;
        check_url(url)?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        return Err("--initial-cluster names no member".to_string());
    }
    Ok(out)
}

/// Checks a URL the way etcd accepts member URLs: `http://host:port` or `https://host:port`.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("URL {url:?} must start with http:// or https://"))?;
    let host_port = rest.trim_end_matches('/');
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| format!("URL {url:?} has no port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("URL {url:?} has no valid host:port"));
    }
    Ok(())
}

/// The `host:port` of a URL checked by [`check_url`].
pub fn url_host_port(url: &str) -> &str {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    rest.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_groups_urls() {
        let c = parse_initial_cluster(
            "a=http://1.1.1.1:2380,b=http://2.2.2.2:2380,a=http://1.1.1.1:2381",
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                (
                    "a".to_string(),
                    vec![
                        "http://1.1.1.1:2380".to_string(),
                        "http://1.1.1.1:2381".to_string()
                    ]
                ),
                ("b".to_string(), vec!["http://2.2.2.2:2380".to_string()]),
            ]
        );
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("a=localhost:2380").is_err());
        assert!(parse_initial_cluster("").is_err());
    }

    #[test]
    fn ids_are_stable_and_depend_on_every_input() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        let a = member_id(&urls, "tok", None);
        assert_eq!(a, member_id(&urls, "tok", None));
        assert_ne!(a, member_id(&urls, "tok2", None));
        assert_ne!(a, member_id(&urls, "tok", Some(1)));
        let two = vec!["http://b:1".to_string(), "http://a:1".to_string()];
        let two_sorted = vec!["http://a:1".to_string(), "http://b:1".to_string()];
        assert_eq!(
            member_id(&two, "t", None),
            member_id(&two_sorted, "t", None)
        );
        assert_eq!(cluster_id(&[3, 1, 2], "t"), cluster_id(&[1, 2, 3], "t"));
        assert_ne!(cluster_id(&[1, 2], "t"), cluster_id(&[1, 2, 3], "t"));
    }

    #[test]
    fn records_round_trip_and_refuse_another_id() {
        let m = MemberInfo {
            id: 7,
            name: "n".into(),
            peer_urls: vec!["http://a:1".into()],
            client_urls: vec!["http://a:2".into()],
        };
        assert_eq!(MemberInfo::decode(7, &m.encode()).unwrap(), m);
        assert!(MemberInfo::decode(8, &m.encode()).is_err());
        assert!(MemberInfo::decode(7, b"\xff\xff").is_err());
    }
}
