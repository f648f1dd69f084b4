//! `oxcd gateway start`: etcd's L4 gateway. It accepts TCP connections and splices each one
//! to a member's client port, picking among the live endpoints as etcd's gateway picks (the
//! best DNS SRV priority first, then by weight, or in turn when no weights are given); an
//! endpoint that refuses a connection is set aside and tried again every `--retry-delay`.
//!
//! What it does not do: look inside the bytes (TLS passes through untouched, so clients talk
//! TLS to the members themselves), balance requests within a connection, or discover members
//! itself (the caller hands it endpoints, from `--endpoints` or DNS SRV records).

use rand::Rng;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// One endpoint: where to connect, and its SRV priority and weight (0 for `--endpoints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The host (a name or an address).
    pub host: String,
    /// The port.
    pub port: u16,
    /// Lower is preferred.
    pub priority: u16,
    /// Within one priority, the share of connections.
    pub weight: u16,
    /// Named by an `-ssl` SRV record: the member speaks TLS there.
    pub tls: bool,
}

impl Endpoint {
    /// `host:port` (brackets around an IPv6 address).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `--endpoints`' entries as endpoints: an optional scheme is dropped (the gateway only moves
/// bytes), the rest must be `host:port`.
pub fn parse_endpoints(list: &str) -> Result<Vec<Endpoint>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let bare = e.split_once("://").map_or(e, |(_, rest)| rest);
            let (host, port) = bare
                .rsplit_once(':')
                .ok_or_else(|| format!("error parsing endpoint {e:?}"))?;
            let port = port
                .parse()
                .map_err(|_| format!("error parsing endpoint {e:?}"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok(Endpoint {
                host: host.to_string(),
                port,
                priority: 0,
                weight: 0,
                tls: false,
            })
        })
        .collect()
}

struct Remote {
    endpoint: Endpoint,
    active: bool,
}

/// The endpoints and which of them are live.
struct Remotes {
    all: Vec<Remote>,
    /// Turns through the unweighted endpoints.
    turn: usize,
}

impl Remotes {
    /// The endpoint for a new connection (etcd's choice, see the module docs), or `None` when
    /// every one is set aside.
    fn pick(&mut self, rng: &mut impl Rng) -> Option<usize> {
        let best = self
            .all
            .iter()
            .filter(|r| r.active)
            .map(|r| r.endpoint.priority)
            .min()?;
        let class: Vec<usize> = (0..self.all.len())
            .filter(|&i| self.all[i].active && self.all[i].endpoint.priority == best)
            .collect();
        let (weighted, unweighted): (Vec<usize>, Vec<usize>) = class
            .iter()
            .partition(|&&i| self.all[i].endpoint.weight > 0);
        if !weighted.is_empty() {
            // A weight-0 record still gets a small share beside weighted ones (RFC 2782).
            if !unweighted.is_empty() && rng.gen_range(0..100) == 1 {
                self.turn += 1;
                return Some(unweighted[self.turn % unweighted.len()]);
            }
            let total: u32 = weighted
                .iter()
                .map(|&i| u32::from(self.all[i].endpoint.weight))
                .sum();
            let mut choose = rng.gen_range(0..total);
            for &i in &weighted {
                let w = u32::from(self.all[i].endpoint.weight);
                if choose < w {
                    return Some(i);
                }
                choose -= w;
            }
            return weighted.first().copied();
        }
        let next = unweighted[self.turn % unweighted.len()];
        self.turn += 1;
        Some(next)
    }
}

/// The gateway: its endpoints and how long one that failed stays aside.
pub struct Gateway {
    remotes: Arc<Mutex<Remotes>>,
    retry_delay: Duration,
}

impl Gateway {
    /// A gateway over `endpoints`, all live to begin with.
    pub fn new(endpoints: Vec<Endpoint>, retry_delay: Duration) -> Gateway {
        let all = endpoints
            .into_iter()
            .map(|endpoint| Remote {
                endpoint,
                active: true,
            })
            .collect();
        Gateway {
            remotes: Arc::new(Mutex::new(Remotes { all, turn: 0 })),
            retry_delay,
        }
    }

    /// Serves `listener` until it fails; each connection in a task of its own.
    pub async fn run(self, listener: TcpListener) -> io::Result<()> {
        let endpoints: Vec<String> = {
            let r = self.remotes.lock().expect("not poisoned");
            r.all.iter().map(|r| r.endpoint.addr()).collect()
        };
        tracing::info!(?endpoints, "ready to proxy client requests");
        tokio::spawn(monitor(self.remotes.clone(), self.retry_delay));
        loop {
            let (conn, _) = listener.accept().await?;
            let _ = conn.set_nodelay(true);
            let remotes = self.remotes.clone();
            let delay = self.retry_delay;
            tokio::spawn(async move { serve(conn, remotes, delay).await });
        }
    }
}

/// Splices `client` to the first endpoint that takes a connection; closes it if none does.
async fn serve(mut client: TcpStream, remotes: Arc<Mutex<Remotes>>, delay: Duration) {
    let mut upstream = None;
    loop {
        let picked = {
            let mut r = remotes.lock().expect("not poisoned");
            r.pick(&mut rand::thread_rng())
                .map(|i| (i, r.all[i].endpoint.addr()))
        };
        let Some((i, addr)) = picked else { break };
        match TcpStream::connect(&addr).await {
            Ok(s) => {
                upstream = Some(s);
                break;
            }
            Err(e) => {
                remotes.lock().expect("not poisoned").all[i].active = false;
                tracing::warn!(address = addr, interval = ?delay, error = %e, "deactivated endpoint");
            }
        }
    }
    let Some(mut upstream) = upstream else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Every `delay`, tries the endpoints set aside and brings back those that take a connection.
async fn monitor(remotes: Arc<Mutex<Remotes>>, delay: Duration) {
    loop {
        tokio::time::sleep(delay).await;
        let down: Vec<(usize, String)> = {
            let r = remotes.lock().expect("not poisoned");
            (0..r.all.len())
                .filter(|&i| !r.all[i].active)
                .map(|i| (i, r.all[i].endpoint.addr()))
                .collect()
        };
        for (i, addr) in down {
            let remotes = remotes.clone();
            tokio::spawn(async move {
                match TcpStream::connect(&addr).await {
                    Ok(_) => {
                        remotes.lock().expect("not poisoned").all[i].active = true;
                        tracing::info!(address = addr, "activated endpoint");
                    }
                    Err(e) => tracing::warn!(
                        address = addr,
                        error = %e,
                        "failed to activate endpoint (stay inactive for another interval)"
                    ),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ep(host: &str, priority: u16, weight: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port: 2379,
            priority,
            weight,
            tls: false,
        }
    }

    fn picks(endpoints: Vec<Endpoint>, inactive: &[usize], n: usize) -> Vec<usize> {
        let mut r = Remotes {
            all: endpoints
                .into_iter()
                .enumerate()
                .map(|(i, endpoint)| Remote {
                    endpoint,
                    active: !inactive.contains(&i),
                })
                .collect(),
            turn: 0,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut counts = vec![0; r.all.len()];
        for _ in 0..n {
            counts[r.pick(&mut rng).expect("a live endpoint")] += 1;
        }
        counts
    }

    #[test]
    fn endpoints_parse_with_or_without_a_scheme() {
        let eps = parse_endpoints("http://127.0.0.1:2379, [::1]:2380,host:1").unwrap();
        assert_eq!(
            eps.iter().map(Endpoint::addr).collect::<Vec<_>>(),
            ["127.0.0.1:2379", "[::1]:2380", "host:1"]
        );
        assert!(parse_endpoints("nohost").is_err());
        assert!(parse_endpoints("h:port").is_err());
    }

    #[test]
    fn picks_follow_priority_then_weight_and_skip_the_dead() {
        // Unweighted: in turn, the dead one skipped.
        assert_eq!(
            picks(vec![ep("a", 0, 0), ep("b", 0, 0), ep("c", 0, 0)], &[1], 10),
            [5, 0, 5]
        );
        // The best priority only.
        assert_eq!(picks(vec![ep("a", 1, 0), ep("b", 0, 0)], &[], 10), [0, 10]);
        // ... unless it is dead.
        assert_eq!(picks(vec![ep("a", 1, 0), ep("b", 0, 0)], &[1], 10), [10, 0]);
        // By weight: 3 to 1, roughly.
        let c = picks(vec![ep("a", 0, 30), ep("b", 0, 10)], &[], 4000);
        assert!((2800..3200).contains(&c[0]), "{c:?}");
        // None alive: nothing.
        let mut r = Remotes {
            all: vec![Remote {
                endpoint: ep("a", 0, 0),
                active: false,
            }],
            turn: 0,
        };
        assert_eq!(r.pick(&mut rand::thread_rng()), None);
    }
}
