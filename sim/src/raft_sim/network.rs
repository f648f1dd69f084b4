//! The simulated network: messages in flight with a delivery tick, drops, duplicates,
//! reordering, and directional link cuts (from which every partition shape is made).

use oxcd::raft::{Message, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Fault rates of the network, fixed per run.
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    /// Delivery takes 0..=delay_ticks_max ticks, drawn per message (so messages reorder).
    pub delay_ticks_max: u64,
}

struct InFlight {
    sent_at: u64,
    deliver_at: u64,
    order: u64,
    message: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at, self.order) == (other.deliver_at, other.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deliver_at, self.order).cmp(&(other.deliver_at, other.order))
    }
}

/// Upper bound on messages in flight; past it new messages are dropped (as a congested network
/// would), which keeps a runaway run from eating memory.
pub const IN_FLIGHT_MAX: usize = 100_000;

pub struct Network {
    pub options: NetworkOptions,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    /// Directional cuts: (from, to) pairs that deliver nothing.
    cuts: BTreeSet<(NodeId, NodeId)>,
    next_order: u64,
    pub sent: u64,
}

impl Network {
    pub fn new(options: NetworkOptions) -> Network {
        Network {
            options,
            in_flight: BinaryHeap::new(),
            cuts: BTreeSet::new(),
            next_order: 0,
            sent: 0,
        }
    }

    /// Queues `m`. Returns false when it was dropped at once (so a snapshot sender can be told).
    pub fn send(&mut self, rng: &mut ChaCha8Rng, now: u64, m: Message) -> bool {
        self.sent += 1;
        if self.in_flight.len() >= IN_FLIGHT_MAX || rng.gen_bool(self.options.drop_rate) {
            return false;
        }
        if rng.gen_bool(self.options.duplicate_rate) {
            self.enqueue(rng, now, m.clone());
        }
        self.enqueue(rng, now, m);
        true
    }

    fn enqueue(&mut self, rng: &mut ChaCha8Rng, now: u64, message: Message) {
        let delay = match rng.gen_range(0..10) {
            0..=5 => 0,
            6..=8 => 1.min(self.options.delay_ticks_max),
            _ => rng.gen_range(0..=self.options.delay_ticks_max),
        };
        // A random order key within a tick reorders messages that are due together.
        self.next_order += 1;
        let order = (rng.r#gen::<u32>() as u64) << 32 | (self.next_order & 0xffff_ffff);
        self.in_flight.push(Reverse(InFlight {
            sent_at: now,
            deliver_at: now + delay,
            order,
            message,
        }));
    }

    /// The next message due at `now`, if its link is not cut (cut messages are dropped here).
    pub fn next_due(&mut self, now: u64) -> Option<Result<Message, Message>> {
        let head = self.in_flight.peek()?;
        if head.0.deliver_at > now {
            return None;
        }
        let m = self.in_flight.pop().expect("peeked").0.message;
        if self.cuts.contains(&(m.from, m.to)) {
            return Some(Err(m));
        }
        Some(Ok(m))
    }

    /// A member crashed at `now`: what it sent during this tick was still in its socket
    /// buffers, and is lost with it; what it sent earlier is on the wire and arrives.
    pub fn lose_unsent(&mut self, from: NodeId, now: u64) {
        self.in_flight
            .retain(|m| !(m.0.message.from == from && m.0.sent_at == now));
    }

    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.cuts.insert((from, to));
        }
    }

    /// Cuts every link between the two groups, both ways.
    pub fn cut_between(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut(x, y);
                self.cut(y, x);
            }
        }
    }

    pub fn heal(&mut self) {
        self.cuts.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.cuts.is_empty()
    }
}
