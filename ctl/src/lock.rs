//! The `lock` command as etcdctl 3.4 has it: take a named lock (etcd's mutex,
//! [`crate::recipes::Mutex`]) under a session lease of `--ttl` seconds, then either print
//! the lock's key and hold it until SIGINT or SIGTERM, or run a command while holding it,
//! with the key and the revision that granted it in `ETCD_LOCK_KEY` and `ETCD_LOCK_REV`.
//!
//! Failures end as etcdctl 3.4's do: a command that fails or cannot start gives `Error:`
//! with Go's words for it (`exit status 3`, `signal: terminated`, `exec: "x": executable
//! file not found in $PATH`) and exit code 1 (etcdctl 3.5 would exit with the command's
//! status); a lease that lapses while holding is `session expired`. A signal while the
//! command runs changes nothing: the lock is released once it ends.

use super::recipes::{self, Mutex};
use super::session::{Interrupt, Session};
use super::{Cli, CtlError, EXIT_BAD_ARGS, EXIT_ERROR, emit, json};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub(crate) struct LockArgs {
    /// Timeout for session, in seconds (60 when 0 or less).
    #[arg(long, default_value_t = 10, allow_hyphen_values = true)]
    ttl: i64,
    /// The lock's name, then a command to run while holding it (after `--` if it has flags).
    args: Vec<String>,
}

impl Cli {
    pub(crate) async fn lock(&self, a: &LockArgs) -> Result<(), CtlError> {
        let Some((name, exec)) = a.args.split_first() else {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "lock takes a lock name argument and an optional command to execute".into(),
            ));
        };
        let ch = self.channel().await?;
        let mut session = Session::grant(ch.clone(), a.ttl).await?;
        let mut interrupt = Interrupt::listen()?;
        let mut mutex = Mutex::new(name, session.id());
        mutex.lock(&ch, interrupt.recv()).await?;
        if !exec.is_empty() {
            let ran = run_holding(exec, mutex.key(), mutex.header().revision).await;
            let unlocked = mutex.unlock(&ch).await;
            return ran.and(unlocked);
        }
        let held = recipes::read_held(&ch, mutex.key(), interrupt.recv()).await?;
        if held.kvs.is_empty() {
            // The lease lapsed while this contender waited: its key went with it.
            return Err(CtlError::new(EXIT_ERROR, "lock lost on init".into()));
        }
        emit(&self.printer(false).get(&held)?);
        tokio::select! {
            () = interrupt.recv() => mutex.unlock(&ch).await,
            () = session.done() => Err(CtlError::new(EXIT_ERROR, "session expired".into())),
        }
    }
}

/// Runs `exec` as Go's `exec.Command` runs it for etcdctl: looked up on `PATH` unless its
/// name has a slash, stdin from /dev/null, stdout and stderr shared, and the lock's key and
/// revision added to the environment.
async fn run_holding(exec: &[String], key: &[u8], revision: i64) -> Result<(), CtlError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let name = &exec[0];
    let path = look_path(name)?;
    let mut cmd = std::process::Command::new(&path);
    cmd.arg0(name)
        .args(&exec[1..])
        .stdin(std::process::Stdio::null());
    let vars = [
        ("ETCD_LOCK_KEY", std::ffi::OsStr::from_bytes(key).to_owned()),
        ("ETCD_LOCK_REV", revision.to_string().into()),
    ];
    for (var, value) in vars {
        // etcdctl lists the caller's environment after these, and Go keeps the last of a
        // name given twice: a caller's own ETCD_LOCK_KEY wins.
        if std::env::var_os(var).is_none() {
            cmd.env(var, value);
        }
    }
    let status = tokio::process::Command::from(cmd)
        .status()
        .await
        .map_err(|e| {
            CtlError::new(
                EXIT_ERROR,
                format!("fork/exec {}: {}", path.display(), go_errno(&e)),
            )
        })?;
    match go_exit_failure(status) {
        None => Ok(()),
        Some(why) => Err(CtlError::new(EXIT_ERROR, why)),
    }
}

/// Go's `exec.LookPath`: a name with a slash as it is, else the first executable regular
/// file of that name in a `PATH` directory (an empty entry is the current directory).
fn look_path(name: &str) -> Result<PathBuf, CtlError> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&dirs) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(CtlError::new(
        EXIT_ERROR,
        format!(
            "exec: {}: executable file not found in $PATH",
            json::go_quote(name.as_bytes())
        ),
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| !m.is_dir() && m.permissions().mode() & 0o111 != 0)
}

/// An OS error as Go prints an errno: the C library's text with a lower-case first letter.
fn go_errno(e: &std::io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return e.to_string();
    };
    let text = std::io::Error::from_raw_os_error(n).to_string();
    let text = text
        .strip_suffix(&format!(" (os error {n})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Go's names for Linux's signals 1 to 31, as `signal: NAME` ends a failed command.
const SIGNAL_NAMES: [&str; 31] = [
    "hangup",
    "interrupt",
    "quit",
    "illegal instruction",
    "trace/breakpoint trap",
    "aborted",
    "bus error",
    "floating point exception",
    "killed",
    "user defined signal 1",
    "segmentation fault",
    "user defined signal 2",
    "broken pipe",
    "alarm clock",
    "terminated",
    "stack fault",
    "child exited",
    "continued",
    "stopped (signal)",
    "stopped",
    "stopped (tty input)",
    "stopped (tty output)",
    "urgent I/O condition",
    "CPU time limit exceeded",
    "file size limit exceeded",
    "virtual timer expired",
    "profiling timer expired",
    "window changed",
    "I/O possible",
    "power failure",
    "bad system call",
];

/// Why a command failed, as Go's `exec.ExitError` says it; `None` when it succeeded.
fn go_exit_failure(status: std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return (code != 0).then(|| format!("exit status {code}"));
    }
    let signal = status.signal()?;
    let name = match usize::try_from(signal) {
        Ok(n @ 1..=31) => SIGNAL_NAMES[n - 1].to_string(),
        _ => format!("signal {signal}"),
    };
    let core = if status.core_dumped() {
        " (core dumped)"
    } else {
        ""
    };
    Some(format!("signal: {name}{core}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn failures_read_as_gos() {
        let status = std::process::ExitStatus::from_raw;
        assert_eq!(go_exit_failure(status(0)), None);
        assert_eq!(go_exit_failure(status(3 << 8)).unwrap(), "exit status 3");
        assert_eq!(go_exit_failure(status(15)).unwrap(), "signal: terminated");
        assert_eq!(
            go_exit_failure(status(11 | 0x80)).unwrap(),
            "signal: segmentation fault (core dumped)"
        );
        assert_eq!(go_exit_failure(status(64)).unwrap(), "signal: signal 64");
        let denied = std::io::Error::from_raw_os_error(13);
        assert_eq!(go_errno(&denied), "permission denied");
    }

    fn parsed(argv: &[&str]) -> LockArgs {
        use clap::Parser;
        match Cli::try_parse_from(argv).unwrap().command {
            crate::Command::Lock(a) => a,
            _ => panic!("{argv:?} is a lock"),
        }
    }

    #[test]
    fn a_command_after_the_name_keeps_its_flags() {
        let a = parsed(&[
            "oxctl", "lock", "--ttl", "-5", "lk", "--", "sh", "-c", "exit 3",
        ]);
        assert_eq!(a.ttl, -5);
        assert_eq!(a.args, ["lk", "sh", "-c", "exit 3"]);
        assert_eq!(parsed(&["oxctl", "lock", "lk"]).ttl, 10);
    }

    #[test]
    fn commands_are_looked_up_as_gos_exec_does() {
        assert_eq!(look_path("./x"), Ok(PathBuf::from("./x")));
        let missing = "no-such-command-for-oxctl";
        assert_eq!(
            look_path(missing).unwrap_err().message,
            format!("exec: \"{missing}\": executable file not found in $PATH")
        );
        assert!(look_path("sh").is_ok_and(|p| p.is_absolute() && p.ends_with("sh")));
    }
}
