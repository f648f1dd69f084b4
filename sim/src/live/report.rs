//! A live run's report, in its results directory:
//! - `index.html`: the seed and command line, each checker's verdict, the fault timeline,
//!   the plots, and links to the rest;
//! - `history.jsonl`: one JSON line per operation (register operations, transactions, lock
//!   holds);
//! - `checks.txt` and `faults.txt`: the verdicts and the fault timeline as text;
//! - `throughput.svg` and `latency.svg` (plotters): operations per second and latency over
//!   time, fault intervals shaded;
//! - `timeline.html`: every register operation as a bar per client, faults shaded, the
//!   operations that show a violation outlined;
//! - `logs/`: each member's output.

use super::Options;
use super::nemesis::Fault;
use crate::checker::history_files::{RegisterInput, RegisterOutput};
use crate::workload::{Findings, appends, timeline};
use plotters::prelude::*;
use serde_json::json;
use std::fmt::Write as _;
use std::io::{self, Write};

/// One line of a chart: its legend label, its color, its points (second, value).
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

pub struct Report<'a> {
    pub opts: &'a Options,
    pub version: &'a str,
    pub found: &'a Findings,
    pub faults: &'a [Fault],
    pub netem: bool,
    pub clock_ok: bool,
    pub disk_ok: bool,
    pub logs_bytes: u64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Report<'_> {
    pub fn write(&self) -> io::Result<()> {
        let dir = &self.opts.report;
        self.history(&mut io::BufWriter::new(std::fs::File::create(
            dir.join("history.jsonl"),
        )?))?;
        std::fs::write(dir.join("checks.txt"), self.checks_text())?;
        std::fs::write(dir.join("faults.txt"), self.faults_text())?;
        self.plots().map_err(|e| io::Error::other(e.to_string()))?;
        let shaded: Vec<(u64, u64, String)> = self
            .faults
            .iter()
            .map(|f| (f.from_ms * 1_000_000, f.to_ms * 1_000_000, f.what.clone()))
            .collect();
        let violations = self.found.violations();
        std::fs::write(
            dir.join("timeline.html"),
            timeline::page(&timeline::Page {
                seed: self.opts.seed,
                replay: &self.opts.command,
                lanes: self.opts.clients,
                history: &self.found.recorded,
                marked: &self.found.marked,
                shaded: &shaded,
                faults: &self.faults_lines(),
                violations: &violations,
            }),
        )?;
        std::fs::write(dir.join("index.html"), self.index())?;
        Ok(())
    }

    fn history(&self, out: &mut impl Write) -> io::Result<()> {
        let ms = |ns: u64| ns as f64 / 1e6;
        for r in &self.found.recorded {
            let (op, value) = match r.op.input.op {
                RegisterInput::Read => ("read", json!(null)),
                RegisterInput::Write(v) => ("write", json!(v)),
                RegisterInput::Cas { from, to } => ("cas", json!([from, to])),
            };
            let output = match r.op.output {
                None => json!(null),
                Some(RegisterOutput::Read(v)) => json!({ "read": v }),
                Some(RegisterOutput::Write) => json!("ok"),
                Some(RegisterOutput::Cas { ok }) => json!({ "cas": ok }),
            };
            let line = json!({
                "kind": "register", "client": r.op.client, "member": r.member,
                "key": format!("reg/{}", r.op.input.key), "op": op, "value": value,
                "call_ms": ms(r.op.call),
                "ret_ms": if r.op.output.is_some() { json!(ms(r.op.ret)) } else { json!(null) },
                "output": output, "revision": r.revision, "resolved": r.resolved,
            });
            writeln!(out, "{line}")?;
        }
        for t in &self.found.txns {
            let ops: Vec<String> = t
                .ops
                .iter()
                .map(|o| match o {
                    appends::MicroOp::Append(k, v) => format!("append la/{k} {v}"),
                    appends::MicroOp::Read(k) => format!("read la/{k}"),
                })
                .collect();
            let outcome = match &t.outcome {
                appends::Outcome::Committed { revision, reads } => {
                    json!({ "committed": revision, "reads": reads })
                }
                appends::Outcome::Aborted => json!("aborted"),
                appends::Outcome::Unknown => json!(null),
            };
            let line = json!({
                "kind": "txn", "client": t.client, "ops": ops,
                "call_ms": ms(t.call_ns), "ret_ms": ms(t.ret_ns), "outcome": outcome,
            });
            writeln!(out, "{line}")?;
        }
        for a in &self.found.acquired {
            let line = json!({
                "kind": "lock", "client": a.client, "key": a.key, "created": a.created,
                "observed": a.observed, "via": [a.via.0, a.via.1],
            });
            writeln!(out, "{line}")?;
        }
        out.flush()
    }

    fn checks_text(&self) -> String {
        let mut s = String::new();
        for c in &self.found.checks {
            let verdict = match (c.violations.is_empty(), c.informational) {
                (true, _) => "ok".to_string(),
                (false, true) => format!("{} finding(s) (informational)", c.violations.len()),
                (false, false) => format!("{} VIOLATION(S)", c.violations.len()),
            };
            let _ = writeln!(s, "{:<26} looked at {:>7}: {verdict}", c.name, c.looked_at);
            for v in c.violations.iter().take(20) {
                let _ = writeln!(s, "    {v}");
            }
            if c.violations.len() > 20 {
                let _ = writeln!(s, "    ... {} more", c.violations.len() - 20);
            }
        }
        for n in &self.found.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if self.found.undecided > 0 {
            let _ = writeln!(
                s,
                "linearizability: {} partition(s) undecided (search budget)",
                self.found.undecided
            );
        }
        s
    }

    fn faults_lines(&self) -> Vec<String> {
        self.faults
            .iter()
            .map(|f| {
                format!(
                    "{:>9.3} s - {:>9.3} s  {:<9} {}",
                    f.from_ms as f64 / 1e3,
                    f.to_ms as f64 / 1e3,
                    f.kind,
                    f.what
                )
            })
            .collect()
    }

    fn faults_text(&self) -> String {
        let mut s = self.faults_lines().join("\n");
        s.push('\n');
        s
    }

    /// Per second of the run: operations answered, operations with no answer, and the
    /// 50th and 99th percentile latency of the answered ones (ms).
    fn buckets(&self) -> Vec<(u64, u64, f64, f64)> {
        let secs = self.opts.duration.as_secs() + 1;
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); secs as usize];
        let mut failed = vec![0u64; secs as usize];
        let mut add = |call_ns: u64, ret_ns: Option<u64>| {
            let b = (call_ns / 1_000_000_000) as usize;
            if b >= lat.len() {
                return;
            }
            match ret_ns {
                Some(r) => lat[b].push(r.saturating_sub(call_ns) as f64 / 1e6),
                None => failed[b] += 1,
            }
        };
        for r in &self.found.recorded {
            let answered = r.op.output.is_some() && !r.resolved;
            add(r.op.call, answered.then_some(r.op.ret));
        }
        for t in &self.found.txns {
            let answered = !matches!(t.outcome, appends::Outcome::Unknown);
            add(t.call_ns, answered.then_some(t.ret_ns));
        }
        lat.into_iter()
            .zip(failed)
            .map(|(mut l, f)| {
                l.sort_by(f64::total_cmp);
                let pct = |p: f64| {
                    if l.is_empty() {
                        0.0
                    } else {
                        l[((l.len() - 1) as f64 * p) as usize]
                    }
                };
                (l.len() as u64, f, pct(0.5), pct(0.99))
            })
            .collect()
    }

    fn plots(&self) -> Result<(), Box<dyn std::error::Error>> {
        let b = self.buckets();
        let per_second = |f: fn(&(u64, u64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
            b.iter()
                .enumerate()
                .map(|(i, x)| (i as f64, f(x)))
                .collect()
        };
        self.plot(
            "throughput.svg",
            "operations per second (red bands: faults)",
            &[
                ("answered", BLUE, per_second(|x| x.0 as f64)),
                (
                    "no answer (timeout or error)",
                    RED,
                    per_second(|x| x.1 as f64),
                ),
            ],
        )?;
        self.plot(
            "latency.svg",
            "latency of answered operations, ms (red bands: faults)",
            &[
                ("p50", BLUE, per_second(|x| x.2)),
                ("p99", MAGENTA, per_second(|x| x.3)),
            ],
        )
    }

    /// One SVG chart over the run's seconds: the fault intervals shaded and named, then each
    /// series as a line with its label in the legend.
    fn plot(
        &self,
        file: &str,
        caption: &str,
        series: &[Series],
    ) -> Result<(), Box<dyn std::error::Error>> {
        let path = self.opts.report.join(file);
        let root = SVGBackend::new(&path, (1200, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let secs = series.iter().map(|s| s.2.len()).max().unwrap_or(1) as f64;
        let top = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..secs, 0.0..top)?;
        chart.configure_mesh().x_desc("s").draw()?;
        chart.draw_series(self.faults.iter().map(|f| {
            Rectangle::new(
                [(f.from_ms as f64 / 1e3, 0.0), (f.to_ms as f64 / 1e3, top)],
                RGBColor(255, 190, 190).mix(0.5).filled(),
            )
        }))?;
        chart.draw_series(self.faults.iter().map(|f| {
            Text::new(
                f.kind,
                (f.from_ms as f64 / 1e3, top * 0.99),
                ("sans-serif", 11).into_font().color(&RGBColor(150, 0, 0)),
            )
        }))?;
        for (label, color, points) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color))?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    }

    fn index(&self) -> String {
        let o = self.opts;
        let violations = self.found.violations();
        let mut rows = String::new();
        for c in &self.found.checks {
            let (verdict, color) = match (c.violations.is_empty(), c.informational) {
                (true, _) => ("ok".to_string(), "#7c7"),
                (false, true) => (
                    format!("{} finding(s), informational", c.violations.len()),
                    "#fc6",
                ),
                (false, false) => (format!("{} violation(s)", c.violations.len()), "#f66"),
            };
            let first = c
                .violations
                .first()
                .map(|v| format!("<pre>{}</pre>", esc(v)))
                .unwrap_or_default();
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td style=\"background:{color}\">{verdict}</td><td>{first}</td></tr>",
                esc(c.name),
                c.looked_at
            );
        }
        let reach = format!(
            "net faults: {}; clock: time namespaces (CLOCK_MONOTONIC/BOOTTIME offset per start) {}; disk: {}",
            if self.netem {
                "netem"
            } else {
                "nftables loss + tbf queueing (no netem in this kernel)"
            },
            if self.clock_ok {
                "and libfaketime (CLOCK_REALTIME jumps)"
            } else {
                "only (libfaketime does not reach a static binary)"
            },
            if self.disk_ok {
                "fsync/fdatasync shim (delay, EIO)"
            } else {
                "not reached (static binary: the preload shim does not apply)"
            }
        );
        format!(
            "<!doctype html><meta charset=\"utf-8\"><title>live run, seed {seed}</title>\
             <style>body{{font-family:sans-serif}} td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}} table{{border-collapse:collapse}} pre{{margin:0;white-space:pre-wrap}}</style>\
             <h1>live run: {verdict}</h1>\
             <p>seed <b>{seed}</b>; command: <code>{cmd}</code></p>\
             <p>server: <code>{server}</code> ({version}); {nodes} members; {dur:?} of faults ({kinds}); {clients} register clients; member logs {logs} KiB</p>\
             <p>{reach}</p>\
             <h2>checks</h2><table><tr><th>checker</th><th>looked at</th><th>verdict</th><th>first</th></tr>{rows}</table>\
             <p>{notes}</p>\
             <p><a href=\"checks.txt\">checks.txt</a> · <a href=\"history.jsonl\">history.jsonl</a> · <a href=\"timeline.html\">operation timeline</a> · <a href=\"faults.txt\">faults.txt</a> · <a href=\"logs/\">member logs</a></p>\
             <h2>throughput and latency</h2><img src=\"throughput.svg\"><br><img src=\"latency.svg\">\
             <h2>faults</h2><pre>{faults}</pre>",
            seed = o.seed,
            verdict = if violations.is_empty() {
                "no violations".to_string()
            } else {
                format!("{} violation(s)", violations.len())
            },
            cmd = esc(&o.command),
            server = esc(&o.server.display().to_string()),
            version = esc(self.version),
            nodes = o.nodes,
            dur = o.duration,
            kinds = o.faults.join(","),
            clients = o.clients,
            logs = self.logs_bytes / 1024,
            faults = esc(&self.faults_text()),
            notes = esc(&self.found.notes.join("; ")),
        )
    }

    /// For a failing run: the seed, each violation with the smallest window that shows it
    /// (for linearizability, the operations of the counterexample) and the faults around it.
    pub fn details(&self) -> String {
        let mut s = format!(
            "live run FAILED: seed {} against {} ({} members, faults {})\n",
            self.opts.seed,
            self.opts.server.display(),
            self.opts.nodes,
            self.opts.faults.join(",")
        );
        for c in self.found.checks.iter().filter(|c| !c.informational) {
            for v in c.violations.iter().take(3) {
                let _ = writeln!(s, "violation ({}): {v}", c.name);
            }
        }
        if !self.found.marked.is_empty() {
            let window: Vec<_> = self
                .found
                .marked
                .iter()
                .map(|&i| &self.found.recorded[i].op)
                .collect();
            let from = window.iter().map(|o| o.call).min().unwrap_or(0) / 1_000_000;
            let to = window.iter().map(|o| o.ret).max().unwrap_or(0) / 1_000_000;
            let _ = writeln!(
                s,
                "the linearizability window: {:.3} s to {:.3} s; faults around it:",
                from as f64 / 1e3,
                to as f64 / 1e3
            );
            for f in self
                .faults
                .iter()
                .filter(|f| f.to_ms + 2_000 >= from && f.from_ms <= to + 2_000)
            {
                let _ = writeln!(
                    s,
                    "    {:.3} s - {:.3} s {}: {}",
                    f.from_ms as f64 / 1e3,
                    f.to_ms as f64 / 1e3,
                    f.kind,
                    f.what
                );
            }
        }
        let _ = writeln!(
            s,
            "faults of the run: {}",
            self.opts.report.join("faults.txt").display()
        );
        let _ = writeln!(
            s,
            "report: {}",
            self.opts.report.join("index.html").display()
        );
        s
    }
}
