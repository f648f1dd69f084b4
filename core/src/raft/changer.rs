//! Computes the membership that results from a `ConfChange`, checking the rules of simple and
//! joint changes. Works on copies: the caller switches to the result only if it is valid.

use super::conf_change::{ConfChangeKind, ConfChangeSingle};
use super::error::{Error, Result};
use super::message::{ConfState, NodeId};
use super::progress::Progress;
use super::quorum::MajorityConfig;
use super::tracker::{ProgressMap, ProgressTracker, TrackerConfig};

fn invalid<T>(why: impl Into<String>) -> Result<T> {
    Err(Error::ConfChangeInvalid(why.into()))
}

/// Applies changes to a copy of a tracker's membership. `last_index` seeds the progress of
/// members being added.
pub struct Changer<'a> {
    pub tracker: &'a ProgressTracker,
    pub last_index: u64,
}

impl Changer<'_> {
    /// Enters a joint configuration: the current voters become the outgoing half.
    pub fn enter_joint(
        &self,
        auto_leave: bool,
        changes: &[ConfChangeSingle],
    ) -> Result<(TrackerConfig, ProgressMap)> {
        let (mut cfg, mut prs) = self.copy()?;
        if cfg.voters.is_joint() {
            return invalid("configuration is already joint");
        }
        if cfg.voters.incoming.voters.is_empty() {
            return invalid("can't make a zero-voter configuration joint");
        }
        cfg.voters.outgoing = cfg.voters.incoming.clone();
        self.apply(&mut cfg, &mut prs, changes)?;
        cfg.auto_leave = auto_leave;
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    /// Leaves a joint configuration: outgoing voters not kept become learners or are removed.
    pub fn leave_joint(&self) -> Result<(TrackerConfig, ProgressMap)> {
        let (mut cfg, mut prs) = self.copy()?;
        if !cfg.voters.is_joint() {
            return invalid("can't leave a non-joint configuration");
        }
        for id in std::mem::take(&mut cfg.learners_next) {
            cfg.learners.insert(id);
            prs.get_mut(&id)
                .expect("learner_next has progress")
                .is_learner = true;
        }
        let outgoing = std::mem::take(&mut cfg.voters.outgoing);
        for id in outgoing.voters {
            if !cfg.voters.incoming.voters.contains(&id) && !cfg.learners.contains(&id) {
                prs.remove(&id);
            }
        }
        cfg.auto_leave = false;
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    /// A change of at most one voter, outside any joint configuration.
    pub fn simple(&self, changes: &[ConfChangeSingle]) -> Result<(TrackerConfig, ProgressMap)> {
        let (mut cfg, mut prs) = self.copy()?;
        if cfg.voters.is_joint() {
            return invalid("can't apply a simple change in a joint configuration");
        }
        self.apply(&mut cfg, &mut prs, changes)?;
        let before = &self.tracker.config.voters.incoming.voters;
        let after = &cfg.voters.incoming.voters;
        if before.symmetric_difference(after).count() > 1 {
            return invalid("more than one voter changed without entering a joint configuration");
        }
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    fn copy(&self) -> Result<(TrackerConfig, ProgressMap)> {
        let cfg = self.tracker.config.clone();
        let prs = self.tracker.progress.clone();
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    fn apply(
        &self,
        cfg: &mut TrackerConfig,
        prs: &mut ProgressMap,
        changes: &[ConfChangeSingle],
    ) -> Result<()> {
        for c in changes {
            if c.node_id == 0 {
                continue; // etcd ignores changes of node 0
            }
            match c.kind {
                ConfChangeKind::AddNode => self.make_voter(cfg, prs, c.node_id),
                ConfChangeKind::AddLearnerNode => self.make_learner(cfg, prs, c.node_id),
                ConfChangeKind::RemoveNode => remove(cfg, prs, c.node_id),
            }
        }
        if cfg.voters.incoming.voters.is_empty() {
            return invalid("removed all voters");
        }
        Ok(())
    }

    fn init_progress(&self, prs: &mut ProgressMap, id: NodeId, is_learner: bool) {
        let mut p = Progress::new(self.last_index.max(1), self.tracker.inflight_max);
        p.is_learner = is_learner;
        // A new member counts as active, or check-quorum could depose the leader before the
        // member ever had a chance to answer.
        p.recent_active = true;
        prs.insert(id, p);
    }

    fn make_voter(&self, cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: NodeId) {
        match prs.get_mut(&id) {
            None => self.init_progress(prs, id, false),
            Some(p) => p.is_learner = false,
        }
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        cfg.voters.incoming.voters.insert(id);
    }

    fn make_learner(&self, cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: NodeId) {
        if !prs.contains_key(&id) {
            self.init_progress(prs, id, true);
            cfg.learners.insert(id);
            return;
        }
        if prs[&id].is_learner {
            return;
        }
        // Demoting a voter: drop it from the incoming voters; if it still votes in the
        // outgoing half, it becomes a learner only when the joint configuration is left.
        cfg.voters.incoming.voters.remove(&id);
        if cfg.voters.outgoing.voters.contains(&id) {
            cfg.learners_next.insert(id);
        } else {
            prs.get_mut(&id).expect("checked above").is_learner = true;
            cfg.learners.insert(id);
        }
    }
}

fn remove(cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: NodeId) {
    if !prs.contains_key(&id) {
        return;
    }
    cfg.voters.incoming.voters.remove(&id);
    cfg.learners.remove(&id);
    cfg.learners_next.remove(&id);
    if !cfg.voters.outgoing.voters.contains(&id) {
        prs.remove(&id);
    }
}

fn check_invariants(cfg: &TrackerConfig, prs: &ProgressMap) -> Result<()> {
    for id in cfg
        .voters
        .ids()
        .iter()
        .chain(&cfg.learners)
        .chain(&cfg.learners_next)
    {
        if !prs.contains_key(id) {
            return invalid(format!("no progress for {id}"));
        }
    }
    for id in &cfg.learners_next {
        if !cfg.voters.outgoing.voters.contains(id) {
            return invalid(format!(
                "{id} is in learners_next but not an outgoing voter"
            ));
        }
        if prs[id].is_learner {
            return invalid(format!("{id} is in learners_next but already a learner"));
        }
    }
    for id in &cfg.learners {
        if cfg.voters.ids().contains(id) {
            return invalid(format!("{id} is both a learner and a voter"));
        }
        if !prs[id].is_learner {
            return invalid(format!("{id} is a learner whose progress says otherwise"));
        }
    }
    if !cfg.voters.is_joint() && (!cfg.learners_next.is_empty() || cfg.auto_leave) {
        return invalid("learners_next or auto_leave outside a joint configuration");
    }
    Ok(())
}

/// Builds the membership described by `cs` (from a snapshot or storage at start).
pub fn restore(
    cs: &ConfState,
    last_index: u64,
    inflight_max: usize,
) -> Result<(TrackerConfig, ProgressMap)> {
    let cfg = TrackerConfig {
        voters: super::quorum::JointConfig {
            incoming: MajorityConfig::new(cs.voters.iter().copied()),
            outgoing: MajorityConfig::new(cs.voters_outgoing.iter().copied()),
        },
        learners: cs.learners.iter().copied().collect(),
        learners_next: cs.learners_next.iter().copied().collect(),
        auto_leave: cs.auto_leave,
    };
    let mut prs = ProgressMap::new();
    for id in cfg
        .voters
        .ids()
        .iter()
        .chain(&cfg.learners)
        .chain(&cfg.learners_next)
    {
        let mut p = Progress::new(last_index.max(1), inflight_max);
        p.is_learner = cfg.learners.contains(id);
        p.recent_active = true;
        prs.insert(*id, p);
    }
    check_invariants(&cfg, &prs)?;
    Ok((cfg, prs))
}
