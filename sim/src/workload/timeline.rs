//! The HTML timeline of a failing run: one lane per client, a bar per operation, the
//! operations that show a violation marked, the fault log and the violations below.

use super::registers::{Recorded, describe};

/// What a timeline page shows.
pub struct Page<'a> {
    pub seed: u64,
    /// The command that replays (or reruns) the run.
    pub replay: &'a str,
    /// Register clients: one lane each.
    pub lanes: usize,
    pub history: &'a [Recorded],
    /// The operations that show a violation.
    pub marked: &'a [usize],
    /// Fault intervals, nanoseconds from the start, and what each was.
    pub shaded: &'a [(u64, u64, String)],
    pub faults: &'a [String],
    pub violations: &'a [String],
}

/// A self-contained HTML page: one lane per client, a bar per operation from its call to its
/// return (green: done; grey: resolved from the store; red outline: the operations that show
/// the violation), faults shaded behind, the fault log and the violations below.
pub fn page(p: &Page) -> String {
    let Page {
        seed,
        replay,
        lanes,
        history,
        marked,
        shaded,
        faults,
        violations,
    } = *p;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let end = history.iter().map(|r| r.op.ret).max().unwrap_or(1).max(1) as f64;
    let (width, lane) = (1800.0, 28.0);
    let lanes = lanes.max(1);
    let mut svg = String::new();
    // Fault intervals (nanoseconds from the start), shaded behind the operations.
    for (from, to, what) in shaded.iter() {
        let x = 70.0 + *from as f64 / end * width;
        let w = ((to.max(from) - from) as f64 / end * width).max(1.0);
        svg += &format!(
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"#fcc\" opacity=\"0.6\"><title>{}</title></rect>",
            lanes as f64 * lane + 10.0,
            esc(what)
        );
    }
    for c in 0..lanes {
        svg += &format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">client {c}</text>",
            c as f64 * lane + 18.0
        );
    }
    for (i, r) in history.iter().enumerate() {
        let x = 70.0 + r.op.call as f64 / end * width;
        let w = ((r.op.ret.max(r.op.call) - r.op.call) as f64 / end * width).max(2.0);
        let y = r.op.client as f64 * lane + 4.0;
        let fill = if r.resolved { "#bbb" } else { "#7c7" };
        let stroke = if marked.contains(&i) {
            "stroke=\"red\" stroke-width=\"3\""
        } else {
            ""
        };
        svg += &format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"{fill}\" {stroke}><title>{}</title></rect>",
            esc(&describe(r))
        );
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>oxcd seed {seed}</title>\
         <h1>seed {seed}: {n} violation(s)</h1><p>replay: <code>{replay}</code></p>\
         <svg width=\"{w}\" height=\"{h}\">{svg}</svg>\
         <h2>violations</h2><pre>{v}</pre><h2>faults</h2><pre>{f}</pre>",
        n = violations.len(),
        replay = esc(replay),
        w = width + 80.0,
        h = lanes as f64 * lane + 10.0,
        v = esc(&violations.join("\n")),
        f = esc(&faults.join("\n")),
    )
}
