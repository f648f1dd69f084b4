//! The `elect` command as etcdctl 3.4 has it: campaign with a proposal (etcd's election,
//! [`crate::recipes::Election`]) under a session lease of etcd's default 60 s, print the
//! leader key once elected and lead until SIGINT or SIGTERM, then resign; or, with
//! `-l`, print the election's leader and each proposal after it until interrupted
//! ([`crate::recipes::observe`]).
//!
//! etcdctl has no `--ttl` for `elect` (3.4 to 3.6), so neither has oxctl. Its argument checks
//! come in etcdctl's order: the count before connecting, `-l` against the proposal after.

use super::recipes::{self, Election};
use super::session::{Interrupt, SESSION_TTL_DEFAULT_S, Session};
use super::token::Authed;
use super::{Cli, CtlError, EXIT_BAD_ARGS, EXIT_ERROR, emit};

#[derive(clap::Args)]
pub(crate) struct ElectArgs {
    /// Observation mode.
    #[arg(short = 'l', long)]
    listen: bool,
    /// The election's name, then the proposal to campaign with (none with `-l`).
    args: Vec<String>,
}

fn bad_args(why: &str) -> CtlError {
    CtlError::new(EXIT_BAD_ARGS, why.to_string())
}

impl Cli {
    pub(crate) async fn elect(&self, a: &ElectArgs) -> Result<(), CtlError> {
        if !(1..=2).contains(&a.args.len()) {
            return Err(bad_args(
                "elect takes one election name argument and an optional proposal argument",
            ));
        }
        let ch = self.channel().await?;
        match (&a.args[..], a.listen) {
            ([name], true) => self.observe(ch, name).await,
            ([_], false) => Err(bad_args("no proposal argument but -l not set")),
            ([name, proposal], false) => self.campaign(ch, name, proposal).await,
            _ => Err(bad_args("proposal given but -l is set")),
        }
    }

    async fn campaign(&self, ch: Authed, name: &str, proposal: &str) -> Result<(), CtlError> {
        let mut session = Session::grant(ch.clone(), SESSION_TTL_DEFAULT_S).await?;
        let mut interrupt = Interrupt::listen()?;
        let mut election = Election::new(name, session.id());
        election.campaign(&ch, proposal, interrupt.recv()).await?;
        let leading = recipes::read_held(&ch, election.key(), interrupt.recv()).await?;
        emit(&self.printer(false).get(&leading)?);
        tokio::select! {
            () = interrupt.recv() => election.resign(&ch).await,
            () = session.done() => Err(CtlError::new(EXIT_ERROR, "elect: session expired".into())),
        }
    }

    async fn observe(&self, ch: Authed, name: &str) -> Result<(), CtlError> {
        // etcdctl holds a session while it observes, though it writes nothing under it.
        let _session = Session::grant(ch.clone(), SESSION_TTL_DEFAULT_S).await?;
        let mut interrupt = Interrupt::listen()?;
        let p = self.printer(false);
        let observed = recipes::observe(&ch, name, |r| {
            emit(&p.get(r)?);
            Ok(())
        });
        tokio::select! {
            r = observed => {
                r?;
                Err(CtlError::new(EXIT_ERROR, "elect: observer lost".into()))
            }
            () = interrupt.recv() => Ok(()),
        }
    }
}
