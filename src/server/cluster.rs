//! Who is in the cluster: member records (name, peer and client URLs), how member and cluster
//! IDs are derived, and the `--initial-cluster` syntax.
//!
//! A member's record and the membership rules are the core's ([`crate::node::MemberRecord`]);
//! this module owns what only the server does with them: IDs, URLs and etcd's wire form.

use crate::pb::etcdserverpb;

/// One member as the cluster knows it: the core's record (its layout and the membership
/// rules are [`crate::node::MemberRecord`]'s).
pub use crate::node::MemberRecord as MemberInfo;

/// A record as etcd's `Member` message.
pub trait ToPb {
    fn to_pb(&self, is_learner: bool) -> etcdserverpb::Member;
}

impl ToPb for MemberInfo {
    fn to_pb(&self, is_learner: bool) -> etcdserverpb::Member {
        etcdserverpb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner,
        }
    }
}

/// The first eight bytes of `bytes`' SHA-1, big-endian: how etcd turns its inputs into IDs.
fn sha1_id(bytes: &[u8]) -> u64 {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A member's ID as etcd derives it, so that the same flags give the same IDs as etcd's: the
/// SHA-1 of its sorted peer URLs (concatenated), the cluster token and, for a member added
/// to a running cluster, the time of the addition in Unix seconds (etcd adds members with an
/// empty token and the time). Every founding member derives the same IDs from
/// `--initial-cluster`.
pub fn member_id(peer_urls: &[String], token: &str, added_at_s: Option<u64>) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut bytes: Vec<u8> = urls.concat().into_bytes();
    bytes.extend_from_slice(token.as_bytes());
    if let Some(t) = added_at_s {
        bytes.extend_from_slice(t.to_string().as_bytes());
    }
    sha1_id(&bytes)
}

/// The cluster's ID as etcd derives it: the SHA-1 of the founding members' IDs, sorted, as
/// big-endian bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    sha1_id(&bytes)
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

    /// Data dirs written before records had the core's layout hold the peer protocol's
    /// `PeerMember` message: the core still reads those, as prost wrote them.
    #[test]
    fn records_stored_as_peer_member_messages_still_read() {
        use prost::Message as _;
        let stored = crate::pb::peer::PeerMember {
            id: 0x8e9e05c52164694d,
            name: "m1".into(),
            peer_urls: vec![
                "http://127.0.0.1:2380".into(),
                "http://10.0.0.1:2380".into(),
            ],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            is_learner: false,
        }
        .encode_to_vec();
        let want = MemberInfo {
            id: 0x8e9e05c52164694d,
            name: "m1".into(),
            peer_urls: vec![
                "http://127.0.0.1:2380".into(),
                "http://10.0.0.1:2380".into(),
            ],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            version: String::new(),
        };
        assert_eq!(MemberInfo::decode(want.id, &stored), Ok(want.clone()));
        assert!(MemberInfo::decode(want.id + 1, &stored).is_err());
        // What is written now is the core's layout, and reads back the same.
        assert_eq!(MemberInfo::decode(want.id, &want.encode()), Ok(want));
    }

    #[test]
    fn ids_are_etcds() {
        // etcd 3.4.23 started with no flags (`etcdctl member list -w json`): member
        // 8e9e05c52164694d of cluster cdf818194e3a8c32.
        let urls = vec!["http://localhost:2380".to_string()];
        let id = member_id(&urls, "etcd-cluster", None);
        assert_eq!(id, 0x8e9e05c52164694d);
        assert_eq!(cluster_id(&[id]), 0xcdf818194e3a8c32);
        assert_ne!(id, member_id(&urls, "tok2", None));
        assert_ne!(id, member_id(&urls, "etcd-cluster", Some(1)));
        let two = vec!["http://b:1".to_string(), "http://a:1".to_string()];
        let two_sorted = vec!["http://a:1".to_string(), "http://b:1".to_string()];
        assert_eq!(
            member_id(&two, "t", None),
            member_id(&two_sorted, "t", None)
        );
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
        assert_ne!(cluster_id(&[1, 2]), cluster_id(&[1, 2, 3]));
    }
}
