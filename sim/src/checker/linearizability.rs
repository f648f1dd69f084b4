//! A linearizability checker: decides whether a history of concurrent operations could have
//! happened, one operation at a time, on a sequential [`Model`].
//!
//! This module owns the search. It does not record histories, read files or print anything; a
//! caller hands in [`Operation`]s and gets a [`Verdict`] back.
//!
//! # Algorithm
//! The Wing–Gong search with Lowe's memoization, as in Porcupine. The calls and returns of a
//! partition's operations form one doubly linked list in time order. The search walks it from
//! the front: at a call it tries to linearize that operation next (the model step must accept
//! it), and if so removes ("lifts") the call and its return from the list and starts again from
//! the front; reaching a return means that operation is overdue, so the last choice is undone
//! ("unlifted") and the walk resumes after it. A cache of (set of linearized operations, model
//! state) pairs prunes every configuration already explored: from equal configurations the rest
//! of the search is the same.
//!
//! # Unknown outcomes
//! An operation whose `output` is `None` (a timed-out request, a client that crashed) may have
//! taken effect at any point after its call, or never. It has no return in the list, so it is
//! never overdue: the search may linearize it anywhere after its call, and succeeds once every
//! operation with a known outcome is linearized, leaving the rest out. The model's
//! [`Model::step`] receives `None` for its output and must apply the operation with whatever
//! result the model gives it (models are deterministic: one input in one state has one outcome).
//! The `ret` of such an operation is ignored.
//!
//! # Limits
//! Linearizability checking is NP-complete, so the search counts model steps across all
//! partitions and gives up with [`Verdict::Unknown`] past [`Limits::steps_max`]. The cache can
//! hold at most one entry per step, so the limit bounds memory too.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A sequential specification. Its functions take no `self`: a model is a type, its state a
/// value.
pub trait Model {
    /// The state of the sequential object. Equal states must behave the same from then on:
    /// the search memoizes on them.
    type State: Clone + Eq + Hash;
    type Input;
    type Output;

    /// The state before any operation.
    fn init() -> Self::State;

    /// Applies `input` in `state`. With `Some(output)`, returns the next state if the object
    /// could have answered `output`, and `None` if that answer is impossible here. With `None`
    /// (outcome unknown), returns the state after the operation takes effect, whatever it
    /// answered; `None` only if the operation cannot take effect at all in this state.
    fn step(
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Splits a history into independent parts (for a map, one per key) that are checked
    /// separately: a history is linearizable iff every part is. Returns indices into `ops`;
    /// each index must appear in exactly one part. The default keeps the history whole.
    fn partition(ops: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        vec![(0..ops.len()).collect()]
    }
}

/// One operation of a history: invoked at `call`, answered `output` at `ret`.
///
/// Times are any increasing clock shared by all clients (the tests use line numbers). An
/// operation is concurrent with another when their `[call, ret]` intervals overlap; equal times
/// count as overlapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub client: u64,
    pub input: I,
    pub call: u64,
    /// `None`: the outcome is unknown; the operation may take effect at any time after `call`,
    /// or never, and `ret` is ignored.
    pub output: Option<O>,
    pub ret: u64,
}

/// Budget for one [`check_operations`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Model steps across all partitions before the verdict is [`Verdict::Unknown`].
    pub steps_max: u64,
}

impl Default for Limits {
    /// About 17 times what the Porcupine suite's hardest history needs (1.2 million steps),
    /// while the cache stays within a few GiB for states of up to a hundred bytes.
    fn default() -> Self {
        Limits {
            steps_max: 20_000_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// A partition with no linearization. When several have none, which one is reported depends
    /// on how quickly each is searched, deterministically.
    NotLinearizable(Counterexample),
    /// The step budget ran out after `steps` steps: the partitions not listed in `unfinished`
    /// are linearizable, and none was found not to be.
    Unknown {
        steps: u64,
        unfinished: Vec<usize>,
    },
}

/// Where the search got furthest in a partition that cannot be linearized. All indices are into
/// the caller's `ops`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// Index of the partition in [`Model::partition`] order.
    pub partition: usize,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<usize>,
    /// An operation that returned before it could be linearized after `prefix`.
    pub blocked: usize,
    /// Operations called before `blocked` returned and not in `prefix`: the candidates that
    /// were tried after `prefix` and led nowhere.
    pub pending: Vec<usize>,
    /// A small window that shows the failure, sorted by call time: `blocked`, `pending`, the
    /// known-outcome operations whose intervals overlap the span from the earliest call of a
    /// known-outcome operation among `blocked` and `pending` to the return of `blocked`, and the
    /// last operation of `prefix` outside that span (whose effect the span starts from).
    pub window: Vec<usize>,
}

/// Checks `ops` against `M`. The partitions from [`Model::partition`] are searched in turns,
/// each for a step quantum that doubles every round, until one is found not linearizable, all
/// are found linearizable, or the budget runs out. Deterministic: the same history and limits
/// give the same verdict.
///
/// Panics (a caller's mistake, not bad input) if a known-outcome operation returns before its
/// call, or the partition does not cover each operation exactly once.
pub fn check_operations<M: Model>(
    ops: &[Operation<M::Input, M::Output>],
    limits: Limits,
) -> Verdict {
    assert!(
        u32::try_from(ops.len()).is_ok_and(|n| n < u32::MAX / 2),
        "history too long: {} operations",
        ops.len()
    );
    for (i, op) in ops.iter().enumerate() {
        assert!(
            op.output.is_none() || op.call <= op.ret,
            "operation {i} returns at {} before its call at {}",
            op.ret,
            op.call
        );
    }
    let partitions = M::partition(ops);
    let mut covered = vec![false; ops.len()];
    for &i in partitions.iter().flatten() {
        assert!(
            i < ops.len(),
            "partition names operation {i} of {}",
            ops.len()
        );
        assert!(!covered[i], "operation {i} is in two partitions");
        covered[i] = true;
    }
    assert!(
        covered.iter().all(|&c| c),
        "partition leaves operations out"
    );

    // Partitions are searched in turns with a doubling step quantum, as a dead end in an easy
    // partition is often found in a few steps while a hard one may not finish at all.
    let mut searches: Vec<Option<Search<'_, M>>> = partitions
        .iter()
        .map(|part| Some(Search::new(ops, part)))
        .collect();
    let mut steps = 0u64;
    let mut quantum = QUANTUM_STEPS_MIN;
    loop {
        for (p, slot) in searches.iter_mut().enumerate() {
            let Some(search) = slot else {
                continue;
            };
            let budget = quantum.min(limits.steps_max - steps);
            let (outcome, used) = search.run(budget);
            assert!(used <= budget);
            steps += used;
            match outcome {
                Outcome::Paused => {}
                Outcome::Linearizable => *slot = None,
                Outcome::Stuck(stuck) => {
                    return Verdict::NotLinearizable(counterexample(ops, &partitions[p], p, stuck));
                }
            }
        }
        let unfinished: Vec<usize> = (0..searches.len())
            .filter(|&p| searches[p].is_some())
            .collect();
        if unfinished.is_empty() {
            return Verdict::Linearizable;
        }
        if steps >= limits.steps_max {
            return Verdict::Unknown { steps, unfinished };
        }
        quantum = quantum.saturating_mul(2);
    }
}

/// The first turn's steps per partition.
const QUANTUM_STEPS_MIN: u64 = 1 << 10;

/// The deepest dead end of a search, in partition-local operation indices.
struct Stuck {
    prefix: Vec<u32>,
    blocked: u32,
    pending: Vec<u32>,
}

enum Outcome {
    Linearizable,
    Stuck(Stuck),
    /// The turn's steps are used up; `run` again to continue.
    Paused,
}

fn counterexample<I, O>(
    ops: &[Operation<I, O>],
    part: &[usize],
    partition: usize,
    stuck: Stuck,
) -> Counterexample {
    let global = |i: u32| part[i as usize];
    let blocked = global(stuck.blocked);
    let pending: Vec<usize> = stuck.pending.iter().map(|&i| global(i)).collect();
    let to = ops[blocked].ret;
    let from = std::iter::once(blocked)
        .chain(pending.iter().copied())
        .filter(|&i| ops[i].output.is_some())
        .map(|i| ops[i].call)
        .min()
        .unwrap_or(ops[blocked].call);
    let mut in_window = vec![false; ops.len()];
    in_window[blocked] = true;
    for &i in &pending {
        in_window[i] = true;
    }
    for &i in part {
        let op = &ops[i];
        if op.output.is_some() && op.call <= to && op.ret >= from {
            in_window[i] = true;
        }
    }
    // The state the window starts from is what the last linearized operation outside it left.
    let prefix: Vec<usize> = stuck.prefix.iter().map(|&i| global(i)).collect();
    if let Some(&last) = prefix.iter().rev().find(|&&i| !in_window[i]) {
        in_window[last] = true;
    }
    let mut window: Vec<usize> = part.iter().copied().filter(|&i| in_window[i]).collect();
    window.sort_by_key(|&i| (ops[i].call, i));
    debug_assert!(window.contains(&blocked));
    Counterexample {
        partition,
        prefix,
        blocked,
        pending,
        window,
    }
}

/// Node index meaning "none" in the entry list.
const NIL: u32 = u32::MAX;

/// The search over one partition. Node 0 is the list's head sentinel, the last node its tail
/// sentinel; nodes in between are the calls and returns in time order.
struct Search<'a, M: Model> {
    ops: &'a [Operation<M::Input, M::Output>],
    /// Partition-local operation index -> index into `ops`.
    part: &'a [usize],
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Node -> local operation index (unused for the sentinels).
    node_op: Vec<u32>,
    /// Node -> its return node if it is the call of a known-outcome operation; `NIL` for the
    /// calls of unknown-outcome operations; `node_is_return` tells returns apart.
    call_match: Vec<u32>,
    node_is_return: Vec<bool>,
    /// Local operation index -> a random-looking key; the set of linearized operations hashes
    /// to the XOR of its members' keys, updated as operations are lifted.
    op_key: Vec<u64>,

    // Where the search is, kept between turns.
    /// The node the walk is at.
    node: u32,
    /// The set of linearized operations, by local index, and its hash.
    linearized: Vec<u64>,
    linearized_hash: u64,
    /// Known-outcome operations not linearized yet.
    known_left: usize,
    state: M::State,
    /// Linearized calls, each with the state before it.
    stack: Vec<(u32, M::State)>,
    cache: Cache<M::State>,
    /// The deepest dead end so far. `best.prefix[..best_shared]` still equals the bottom of
    /// `stack`, so recording a deeper one copies only what was pushed since.
    best: Option<Stuck>,
    best_shared: usize,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(ops: &'a [Operation<M::Input, M::Output>], part: &'a [usize]) -> Self {
        // (time, is_return, local op): calls sort before returns at equal times, so that
        // touching intervals count as concurrent, which only ever allows more orders.
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(part.len() * 2);
        for (local, &i) in part.iter().enumerate() {
            let local = local as u32;
            events.push((ops[i].call, false, local));
            if ops[i].output.is_some() {
                events.push((ops[i].ret, true, local));
            }
        }
        events.sort_unstable();

        let nodes = events.len() + 2;
        let mut node_op = vec![NIL; nodes];
        let mut node_is_return = vec![false; nodes];
        let mut call_match = vec![NIL; nodes];
        let mut call_node = vec![NIL; part.len()];
        for (k, &(_, is_return, local)) in events.iter().enumerate() {
            let node = k + 1;
            node_op[node] = local;
            node_is_return[node] = is_return;
            if is_return {
                let call = call_node[local as usize];
                assert_ne!(call, NIL, "return sorted before its call");
                call_match[call as usize] = node as u32;
            } else {
                call_node[local as usize] = node as u32;
            }
        }
        let next = (1..=nodes as u32)
            .map(|n| n.min(nodes as u32 - 1))
            .collect();
        let prev = (0..nodes as u32).map(|n| n.saturating_sub(1)).collect();
        let op_key = (0..part.len() as u64).map(mix).collect();
        let words = part.len().div_ceil(64);
        let known_left = part.iter().filter(|&&i| ops[i].output.is_some()).count();
        Search {
            ops,
            part,
            next,
            prev,
            node_op,
            call_match,
            node_is_return,
            op_key,
            // The first node after the head sentinel (the tail when there are no events).
            node: 1,
            linearized: vec![0; words],
            linearized_hash: 0,
            known_left,
            state: M::init(),
            stack: Vec::new(),
            cache: Cache::new(words),
            best: None,
            best_shared: 0,
        }
    }

    fn tail(&self) -> u32 {
        self.next.len() as u32 - 1
    }

    fn unlink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    /// Undoes `unlink(node)`; valid only in reverse order of the unlinks (the node keeps its
    /// neighbours' indices while out of the list).
    fn relink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        debug_assert_eq!(self.next[p as usize], n);
        self.next[p as usize] = node;
        self.prev[n as usize] = node;
    }

    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let ret = self.call_match[call as usize];
        if ret != NIL {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, call: u32) {
        let ret = self.call_match[call as usize];
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    /// Searches on for at most `steps_max` model steps; returns how it stands and the steps
    /// taken.
    fn run(&mut self, steps_max: u64) -> (Outcome, u64) {
        const HEAD: usize = 0;
        let ops = self.ops;
        let mut steps = 0u64;
        loop {
            if self.known_left == 0 {
                // Whatever is left has an unknown outcome and may never have taken effect.
                return (Outcome::Linearizable, steps);
            }
            let node = self.node;
            // A known operation left means its return is still ahead of the walk.
            assert_ne!(node, self.tail(), "walked past every return");
            let local = self.node_op[node as usize];
            if !self.node_is_return[node as usize] {
                if steps == steps_max {
                    return (Outcome::Paused, steps);
                }
                steps += 1;
                let op = &ops[self.part[local as usize]];
                if let Some(after) = M::step(&self.state, &op.input, op.output.as_ref()) {
                    let (word, bit) = (local as usize / 64, 1u64 << (local % 64));
                    debug_assert_eq!(self.linearized[word] & bit, 0);
                    self.linearized[word] |= bit;
                    self.linearized_hash ^= self.op_key[local as usize];
                    if self
                        .cache
                        .insert(&self.linearized, self.linearized_hash, &after)
                    {
                        self.lift(node);
                        if op.output.is_some() {
                            self.known_left -= 1;
                        }
                        let before = std::mem::replace(&mut self.state, after);
                        self.stack.push((node, before));
                        self.node = self.next[HEAD];
                        continue;
                    }
                    self.linearized[word] &= !bit;
                    self.linearized_hash ^= self.op_key[local as usize];
                }
                self.node = self.next[node as usize];
            } else {
                // `local` returned and cannot be linearized after the current prefix: a dead end.
                self.record_dead_end(local);
                let Some((call, before)) = self.stack.pop() else {
                    let best = self.best.take().expect("a dead end was just recorded");
                    return (Outcome::Stuck(best), steps);
                };
                self.best_shared = self.best_shared.min(self.stack.len());
                let undone = self.node_op[call as usize];
                self.state = before;
                self.linearized[undone as usize / 64] &= !(1u64 << (undone % 64));
                self.linearized_hash ^= self.op_key[undone as usize];
                self.unlift(call);
                if ops[self.part[undone as usize]].output.is_some() {
                    self.known_left += 1;
                }
                self.node = self.next[call as usize];
            }
        }
    }

    /// Keeps the dead end at the walk's node (the return of `blocked`) if it is the deepest.
    fn record_dead_end(&mut self, blocked: u32) {
        let depth = self.stack.len();
        if self.best.as_ref().is_some_and(|b| depth <= b.prefix.len()) {
            return;
        }
        let mut pending = Vec::new();
        let mut n = self.next[0];
        while n != self.node {
            let local = self.node_op[n as usize];
            if !self.node_is_return[n as usize] && local != blocked {
                pending.push(local);
            }
            n = self.next[n as usize];
        }
        let mut prefix = self.best.take().map(|b| b.prefix).unwrap_or_default();
        prefix.truncate(self.best_shared);
        let pushed = &self.stack[self.best_shared..];
        prefix.extend(pushed.iter().map(|&(c, _)| self.node_op[c as usize]));
        debug_assert_eq!(prefix.len(), depth);
        self.best = Some(Stuck {
            prefix,
            blocked,
            pending,
        });
        self.best_shared = depth;
    }
}

/// The set of explored (linearized operations, state) configurations. Entries live in flat
/// vectors chained per hash, which costs one allocation per growth instead of one per entry.
struct Cache<S> {
    words: usize,
    /// Combined hash -> newest entry with that hash.
    heads: HashMap<u64, u32, BuildHasherDefault<PremixedHasher>>,
    states: Vec<S>,
    /// Entry -> older entry with the same hash, or `NIL`.
    chain: Vec<u32>,
    /// Entry `e`'s set of linearized operations is `bits[e * words..][..words]`.
    bits: Vec<u64>,
}

impl<S: Eq + Hash + Clone> Cache<S> {
    fn new(words: usize) -> Self {
        Cache {
            words,
            heads: HashMap::default(),
            states: Vec::new(),
            chain: Vec::new(),
            bits: Vec::new(),
        }
    }

    /// Adds the configuration unless present; returns whether it was new.
    fn insert(&mut self, linearized: &[u64], linearized_hash: u64, state: &S) -> bool {
        debug_assert_eq!(linearized.len(), self.words);
        let mut hasher = StateHasher::default();
        state.hash(&mut hasher);
        let key = mix(linearized_hash ^ hasher.finish().rotate_left(32));
        let head = self.heads.get(&key).copied().unwrap_or(NIL);
        let mut e = head;
        while e != NIL {
            let at = e as usize * self.words;
            if self.bits[at..at + self.words] == *linearized && self.states[e as usize] == *state {
                return false;
            }
            e = self.chain[e as usize];
        }
        let entry = u32::try_from(self.states.len()).expect("cache entries fit in u32");
        assert_ne!(entry, NIL);
        self.states.push(state.clone());
        self.chain.push(head);
        self.bits.extend_from_slice(linearized);
        self.heads.insert(key, entry);
        true
    }
}

/// SplitMix64's finalizer: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fast, fixed hasher for model states (the cache hashes one per step). Fixed rather than
/// `RandomState` so that runs repeat exactly; `mix` finishes the job.
#[derive(Default)]
struct StateHasher(u64);

impl StateHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for StateHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Passes through the cache's keys, which `mix` has already spread.
#[derive(Default)]
struct PremixedHasher(u64);

impl Hasher for PremixedHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this hasher; fold anything else in anyway.
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register holding an integer, starting at 0.
    struct Register;

    #[derive(Debug)]
    enum Input {
        Read,
        Write(u32),
    }

    impl Model for Register {
        type State = u32;
        type Input = Input;
        /// The value read; writes answer 0.
        type Output = u32;

        fn init() -> u32 {
            0
        }

        fn step(state: &u32, input: &Input, output: Option<&u32>) -> Option<u32> {
            match input {
                Input::Write(v) => Some(*v),
                Input::Read => match output {
                    Some(read) if read != state => None,
                    _ => Some(*state),
                },
            }
        }
    }

    fn write(client: u64, value: u32, call: u64, ret: u64) -> Operation<Input, u32> {
        Operation {
            client,
            input: Input::Write(value),
            call,
            output: Some(0),
            ret,
        }
    }

    fn write_unknown(client: u64, value: u32, call: u64) -> Operation<Input, u32> {
        Operation {
            client,
            input: Input::Write(value),
            call,
            output: None,
            ret: u64::MAX,
        }
    }

    fn read(client: u64, value: u32, call: u64, ret: u64) -> Operation<Input, u32> {
        Operation {
            client,
            input: Input::Read,
            call,
            output: Some(value),
            ret,
        }
    }

    fn check(ops: &[Operation<Input, u32>]) -> Verdict {
        check_operations::<Register>(ops, Limits::default())
    }

    fn counterexample(verdict: Verdict) -> Counterexample {
        match verdict {
            Verdict::NotLinearizable(c) => c,
            other => panic!("expected not linearizable, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(&[]), Verdict::Linearizable);
    }

    #[test]
    fn sequential_history() {
        let ops = [
            write(0, 1, 0, 1),
            read(1, 1, 2, 3),
            write(0, 2, 4, 5),
            read(1, 2, 6, 7),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_caught() {
        // The write of 1 finished before the read of 0 began.
        let ops = [write(0, 1, 0, 1), read(1, 0, 2, 3)];
        let c = counterexample(check(&ops));
        assert_eq!(c.partition, 0);
        assert_eq!(c.prefix, vec![0]);
        assert_eq!(c.blocked, 1);
        assert!(c.pending.is_empty());
        assert_eq!(c.window, vec![0, 1]);
    }

    #[test]
    fn concurrent_reads_may_see_either_value() {
        // From the MIT 6.824 2017 quiz 2: a long write of 100 overlapped by reads of 100 and 0.
        let ops = [
            write(0, 100, 0, 100),
            read(1, 100, 25, 75),
            read(2, 0, 30, 60),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // The read of 200 ends before the read of 0 starts, both during the write of 200.
        let ops = [
            write(0, 200, 0, 100),
            read(1, 200, 10, 30),
            read(2, 0, 40, 90),
        ];
        let c = counterexample(check(&ops));
        assert_eq!(c.blocked, 2);
        assert_eq!(c.prefix, vec![0, 1]);
        assert_eq!(c.window, vec![0, 1, 2]);
    }

    #[test]
    fn touching_intervals_count_as_concurrent() {
        let ops = [write(0, 1, 0, 5), read(1, 0, 5, 6)];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_may_take_effect_late() {
        // The write of 1 timed out; 1 is read long after, and 0 is read in between.
        let ops = [
            write_unknown(0, 1, 0),
            read(1, 0, 10, 11),
            read(1, 1, 20, 21),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_may_never_take_effect() {
        let ops = [
            write_unknown(0, 1, 0),
            read(1, 0, 10, 11),
            read(1, 0, 20, 21),
        ];
        assert_eq!(check(&ops), Verdict::Linearizable);
    }

    #[test]
    fn unknown_write_cannot_take_effect_before_its_call() {
        let ops = [read(1, 1, 0, 1), write_unknown(0, 1, 2)];
        let c = counterexample(check(&ops));
        assert_eq!(c.blocked, 0);
        assert!(c.prefix.is_empty());
    }

    #[test]
    fn unknown_write_takes_effect_at_most_once() {
        // 1, then 2, then 1 again needs the unknown write of 1 to happen twice.
        let ops = [
            write_unknown(0, 1, 0),
            read(1, 1, 10, 11),
            write(1, 2, 12, 13),
            read(1, 1, 14, 15),
        ];
        let c = counterexample(check(&ops));
        assert_eq!(c.blocked, 3);
        assert_eq!(c.prefix, vec![0, 1, 2]);
    }

    #[test]
    fn prefix_is_the_longest_found() {
        // Two clients write concurrently; a later read sees a value no one wrote.
        let ops = [
            write(0, 1, 0, 10),
            write(1, 2, 0, 10),
            read(0, 2, 11, 12),
            read(1, 3, 13, 14),
        ];
        let c = counterexample(check(&ops));
        assert_eq!(c.prefix, vec![0, 1, 2]);
        assert_eq!(c.blocked, 3);
        assert_eq!(c.window, vec![2, 3]);
    }

    #[test]
    fn step_budget_gives_unknown() {
        let ops: Vec<_> = (0..20).map(|c| write(c, c as u32, 0, 10)).collect();
        let verdict = check_operations::<Register>(&ops, Limits { steps_max: 5 });
        assert_eq!(
            verdict,
            Verdict::Unknown {
                steps: 5,
                unfinished: vec![0]
            }
        );
    }

    /// Two registers, the input naming which.
    struct TwoRegisters;

    impl Model for TwoRegisters {
        type State = u32;
        type Input = (usize, Input);
        type Output = u32;

        fn init() -> u32 {
            0
        }

        fn step(state: &u32, input: &(usize, Input), output: Option<&u32>) -> Option<u32> {
            Register::step(state, &input.1, output)
        }

        fn partition(ops: &[Operation<(usize, Input), u32>]) -> Vec<Vec<usize>> {
            let mut parts = vec![Vec::new(), Vec::new()];
            for (i, op) in ops.iter().enumerate() {
                parts[op.input.0].push(i);
            }
            parts
        }
    }

    #[test]
    fn partitions_are_checked_separately_and_reported_by_index() {
        let keyed = |key: usize, op: Operation<Input, u32>| Operation {
            client: op.client,
            input: (key, op.input),
            call: op.call,
            output: op.output,
            ret: op.ret,
        };
        let ops = [
            keyed(1, write(0, 1, 0, 1)),
            keyed(0, write(0, 5, 2, 3)),
            keyed(0, read(1, 5, 4, 5)),
            keyed(1, read(1, 0, 6, 7)),
        ];
        let c = match check_operations::<TwoRegisters>(&ops, Limits::default()) {
            Verdict::NotLinearizable(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.partition, 1);
        assert_eq!(c.prefix, vec![0]);
        assert_eq!(c.blocked, 3);
    }

    #[test]
    fn an_easy_failure_is_found_beside_a_hard_partition() {
        // Key 0: twenty concurrent writes, then a read of a value none wrote, which takes about
        // 2^20 steps to refute. Key 1: a stale read, refuted at once.
        let mut ops: Vec<_> = (0..20)
            .map(|c| (0, write(c, c as u32 + 1, 0, 10)))
            .chain([
                (0, read(0, 99, 11, 12)),
                (1, write(0, 1, 0, 1)),
                (1, read(1, 0, 2, 3)),
            ])
            .map(|(key, op)| Operation {
                client: op.client,
                input: (key, op.input),
                call: op.call,
                output: op.output,
                ret: op.ret,
            })
            .collect();
        let verdict = check_operations::<TwoRegisters>(&ops, Limits { steps_max: 10_000 });
        assert!(matches!(
            verdict,
            Verdict::NotLinearizable(Counterexample { partition: 1, .. })
        ));

        ops.truncate(21);
        let verdict = check_operations::<TwoRegisters>(&ops, Limits { steps_max: 10_000 });
        assert_eq!(
            verdict,
            Verdict::Unknown {
                steps: 10_000,
                unfinished: vec![0]
            }
        );
    }

    #[test]
    #[should_panic(expected = "before its call")]
    fn return_before_call_is_a_caller_bug() {
        check(&[write(0, 1, 5, 4)]);
    }
}
