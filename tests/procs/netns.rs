//! A network namespace of a test's own, with its own `resolv.conf` (for DNS tests: a DNS
//! server started inside answers the programs started inside), and scratch directories.

use std::process::{Child, Command, Stdio};

/// A network namespace with its own `resolv.conf` (naming 127.0.0.1 inside it), and the
/// processes started in it; all stopped by PID and removed when dropped.
pub struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    /// A namespace named after this process and `tag` (distinct per test).
    pub fn new(tag: &str) -> Netns {
        let name = format!("ox{tag}{}", std::process::id());
        let run = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip runs");
            assert!(st.success(), "ip {args:?}: {st}");
        };
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(&["netns", "add", &name]);
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        let dir = format!("/etc/netns/{}", ns.name);
        std::fs::create_dir_all(&dir).expect("the namespace's /etc");
        std::fs::write(format!("{dir}/resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("resolv.conf");
        ns
    }

    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Starts `program` in the namespace (`ip netns exec` execs it: the PID is its own).
    pub fn spawn(&mut self, program: &str, args: &[&str]) {
        let mut c = self.command(program, args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        super::die_with_parent(&mut c);
        self.children
            .push(c.spawn().expect("spawn in the namespace"));
    }

    /// Whether something in the namespace accepts TCP on 127.0.0.1:`port`.
    pub fn listens(&self, port: u16) -> bool {
        self.command(
            "bash",
            &["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")],
        )
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    }

    /// `member list` (sorted) from the members with these client ports on 127.0.0.1, once
    /// every one has published its name and client URLs (etcd serves clients only after
    /// that; oxcd starts serving before it, so a list can come first).
    pub fn published_member_list(&self, client_ports: &[u16]) -> String {
        let endpoints: Vec<String> = client_ports
            .iter()
            .map(|c| format!("127.0.0.1:{c}"))
            .collect();
        let endpoints = endpoints.join(",");
        let out = super::poll_for("every member to publish", super::READY_TIMEOUT, || {
            let out = self.etcdctl(&endpoints, &["member", "list", "--command-timeout=2s"]);
            let published = out
                .stdout
                .lines()
                .filter(|l| l.split(", ").nth(4).is_some_and(|c| !c.is_empty()))
                .count();
            if out.code == Some(0) && published == client_ports.len() {
                Ok(out)
            } else {
                Err(format!("{out:?}"))
            }
        });
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort();
        lines.join("\n")
    }

    pub fn etcdctl(&self, endpoint: &str, args: &[&str]) -> super::Output {
        let out = self
            .command("etcdctl", &[&format!("--endpoints={endpoint}")])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("etcdctl runs");
        super::Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempfile_dir() -> TempDir {
    let p = std::env::temp_dir().join(format!(
        "oxgw-{}-{}",
        std::process::id(),
        super::free_port()
    ));
    std::fs::create_dir_all(&p).expect("a scratch dir");
    TempDir(p)
}
