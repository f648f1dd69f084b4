//! Membership change requests and their encoding in log entries.
//!
//! One change of one voter (or any number of learner changes) can be made directly. Anything
//! larger goes through a joint configuration: the change is entered as "old and new together"
//! and left with a second, empty change (automatically, unless the transition is explicit).

use super::error::{Error, Result};
use super::message::NodeId;
use bytes::{BufMut, Bytes, BytesMut};

/// What one single change does to one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfChangeKind {
    /// Makes the member a voter (adding it, or promoting it from learner).
    AddNode,
    /// Removes the member from the configuration.
    RemoveNode,
    /// Makes the member a learner (adding it, or demoting it from voter).
    AddLearnerNode,
}

/// One change of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfChangeSingle {
    /// What the change does.
    pub kind: ConfChangeKind,
    /// The member it changes.
    pub node_id: NodeId,
}

/// How a change is carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConfChangeTransition {
    /// A simple change when it can be one; otherwise a joint change left automatically.
    #[default]
    Auto,
    /// Always joint, left automatically once applied.
    JointImplicit,
    /// Always joint, left only when the owner proposes an empty change.
    JointExplicit,
}

/// A membership change. No changes and the `Auto` transition means "leave the joint
/// configuration".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfChange {
    /// How the changes are carried out.
    pub transition: ConfChangeTransition,
    /// The single changes, applied in order; empty (with `Auto`) leaves a joint configuration.
    pub changes: Vec<ConfChangeSingle>,
    /// Opaque bytes for the owner, carried through the log unchanged.
    pub context: Bytes,
}

/// Upper bound on the single changes one request may carry.
pub const CONF_CHANGES_MAX: usize = 1024;
/// Upper bound on a change's context bytes.
pub const CONF_CHANGE_CONTEXT_BYTES_MAX: usize = 64 * 1024;

const ENCODING_VERSION: u8 = 1;

impl ConfChange {
    /// One change of one member.
    pub fn simple(kind: ConfChangeKind, node_id: NodeId) -> ConfChange {
        ConfChange {
            changes: vec![ConfChangeSingle { kind, node_id }],
            ..ConfChange::default()
        }
    }

    /// Several changes at once, through a joint configuration.
    pub fn joint(
        transition: ConfChangeTransition,
        changes: impl IntoIterator<Item = (ConfChangeKind, NodeId)>,
    ) -> ConfChange {
        ConfChange {
            transition,
            changes: changes
                .into_iter()
                .map(|(kind, node_id)| ConfChangeSingle { kind, node_id })
                .collect(),
            context: Bytes::new(),
        }
    }

    /// The change that leaves a joint configuration.
    pub fn leave_joint() -> ConfChange {
        ConfChange::default()
    }

    /// Whether this is the empty change that leaves a joint configuration.
    pub fn is_leave_joint(&self) -> bool {
        self.changes.is_empty() && self.transition == ConfChangeTransition::Auto
    }

    /// `Some(auto_leave)` when this change must go through a joint configuration.
    pub fn enters_joint(&self) -> Option<bool> {
        if self.transition != ConfChangeTransition::Auto || self.changes.len() > 1 {
            Some(self.transition != ConfChangeTransition::JointExplicit)
        } else {
            None
        }
    }

    /// Encodes the change. Leaving a joint configuration encodes as no bytes at all (as etcd's
    /// empty change does), so that the leader's automatic leave never counts against its
    /// uncommitted byte limit.
    pub fn encode(&self) -> Bytes {
        if *self == ConfChange::leave_joint() {
            return Bytes::new();
        }
        let mut b = BytesMut::with_capacity(10 + self.changes.len() * 9 + self.context.len());
        b.put_u8(ENCODING_VERSION);
        b.put_u8(match self.transition {
            ConfChangeTransition::Auto => 0,
            ConfChangeTransition::JointImplicit => 1,
            ConfChangeTransition::JointExplicit => 2,
        });
        b.put_u32_le(self.changes.len() as u32);
        for c in &self.changes {
            b.put_u8(match c.kind {
                ConfChangeKind::AddNode => 0,
                ConfChangeKind::RemoveNode => 1,
                ConfChangeKind::AddLearnerNode => 2,
            });
            b.put_u64_le(c.node_id);
        }
        b.put_u32_le(self.context.len() as u32);
        b.put_slice(&self.context);
        b.freeze()
    }

    /// Decodes what `encode` wrote; any other input is an error, never a panic.
    pub fn decode(data: &[u8]) -> Result<ConfChange> {
        if data.is_empty() {
            return Ok(ConfChange::leave_joint());
        }
        let mut r = Reader(data);
        if r.u8()? != ENCODING_VERSION {
            return Err(Error::Decode("unknown conf change encoding version".into()));
        }
        let transition = match r.u8()? {
            0 => ConfChangeTransition::Auto,
            1 => ConfChangeTransition::JointImplicit,
            2 => ConfChangeTransition::JointExplicit,
            t => return Err(Error::Decode(format!("unknown transition {t}"))),
        };
        let count = r.u32()? as usize;
        if count > CONF_CHANGES_MAX {
            return Err(Error::Decode(format!("{count} changes exceed the limit")));
        }
        let mut changes = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = match r.u8()? {
                0 => ConfChangeKind::AddNode,
                1 => ConfChangeKind::RemoveNode,
                2 => ConfChangeKind::AddLearnerNode,
                k => return Err(Error::Decode(format!("unknown change kind {k}"))),
            };
            changes.push(ConfChangeSingle {
                kind,
                node_id: r.u64()?,
            });
        }
        let len = r.u32()? as usize;
        if len > CONF_CHANGE_CONTEXT_BYTES_MAX {
            return Err(Error::Decode("conf change context too large".into()));
        }
        let context = Bytes::copy_from_slice(r.take(len)?);
        if !r.0.is_empty() {
            return Err(Error::Decode("trailing bytes after conf change".into()));
        }
        Ok(ConfChange {
            transition,
            changes,
            context,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Decode("truncated conf change".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encoding_round_trips(
            transition in 0u8..3,
            changes in proptest::collection::vec((0u8..3, any::<u64>()), 0..8),
            context in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let cc = ConfChange {
                transition: [ConfChangeTransition::Auto, ConfChangeTransition::JointImplicit,
                    ConfChangeTransition::JointExplicit][transition as usize],
                changes: changes.iter().map(|&(k, id)| ConfChangeSingle {
                    kind: [ConfChangeKind::AddNode, ConfChangeKind::RemoveNode,
                        ConfChangeKind::AddLearnerNode][k as usize],
                    node_id: id,
                }).collect(),
                context: Bytes::from(context),
            };
            prop_assert_eq!(ConfChange::decode(&cc.encode()).unwrap(), cc);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ConfChange::decode(&data);
        }
    }
}
