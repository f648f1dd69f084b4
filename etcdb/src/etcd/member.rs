//! The JSON etcd keeps in the `members` bucket and the `meta` bucket's `confState`.

use serde::{Deserialize, Deserializer, Serialize};

/// A member as etcd's `membership.Member` marshals it: `{"id":N,"peerURLs":[..],
/// "isLearner":true,"name":"..","clientURLs":[..]}`, the last three only when set.
/// (Go's encoder would escape `<`, `>` and `&` in strings as `\u003c`...; this one does not:
/// both read the same, only the bytes differ.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id (also the bucket key, in lower-case hex).
    pub id: u64,
    /// Peer URLs.
    #[serde(rename = "peerURLs", default, deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    /// Whether the member is a learner.
    #[serde(rename = "isLearner", default, skip_serializing_if = "is_false")]
    pub is_learner: bool,
    /// The name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Client URLs (etcd 3.5.1 records a member's published client URLs in the v2 store
    /// only: its backend entry for a bootstrapped member has none; 3.4.23 has them).
    #[serde(
        rename = "clientURLs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub client_urls: Vec<String>,
}

/// raftpb.ConfState as Go's encoding/json writes it (3.5's `meta`/`confState`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    /// Voters of the incoming configuration.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub voters: Vec<u64>,
    /// Learners of the incoming configuration.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub learners: Vec<u64>,
    /// Voters of the outgoing configuration (joint consensus).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub voters_outgoing: Vec<u64>,
    /// Members that become learners when the joint configuration is left.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub learners_next: Vec<u64>,
    /// Leave the joint configuration automatically.
    #[serde(default)]
    pub auto_leave: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}
