//! Tables and sizes as etcdctl prints them (`-w table`: olekukonko/tablewriter with headers
//! upper-cased and centred, cells right-aligned; sizes as go-humanize's SI bytes).

/// Renders `header` and `rows` as etcdctl's `-w table` does.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            "| {}{}{} ",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for row in rows {
        for (c, w) in widths.iter().enumerate() {
            let cell = row.get(c).map(String::as_str).unwrap_or("");
            out.push_str(&format!("| {cell:>w$} "));
        }
        out.push_str("|\n");
    }
    out.push_str(&rule);
    out
}

/// A byte count in SI units, as go-humanize's `Bytes` writes it ("25 kB", "2.1 GB").
pub fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let exp = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let exp = exp.min(UNITS.len() - 1);
    let value = ((n as f64) / 1000f64.powi(exp as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(24576), "25 kB");
        assert_eq!(humanize_bytes(2_147_483_648), "2.1 GB");
    }

    #[test]
    fn tables_centre_headers_and_right_align_cells() {
        let t = render(
            &["endpoint", "hash"],
            &[vec!["127.0.0.1:2379".into(), "12".into()]],
        );
        assert_eq!(
            t,
            "+----------------+------+\n\
             |    ENDPOINT    | HASH |\n\
             +----------------+------+\n\
             | 127.0.0.1:2379 |   12 |\n\
             +----------------+------+\n"
        );
    }
}
