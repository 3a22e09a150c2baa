//! Output for people: aligned tables, and timestamps in RFC 3339 (UTC).

use std::fmt::Write as _;

/// A table with a header row, printed with columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Starts a table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table; cells are separated by at least two spaces and
    /// the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders `key: value` lines with the keys aligned, for one object.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"), width = width);
    }
    out
}

/// Formats a protobuf timestamp as RFC 3339 in UTC, with the fraction only
/// when there is one (3, 6 or 9 digits, as Go and protobuf print it).
pub fn rfc3339(t: &prost_types::Timestamp) -> String {
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let nanos = t.nanos.clamp(0, 999_999_999);
    let fraction = if nanos == 0 {
        String::new()
    } else if nanos % 1_000_000 == 0 {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{fraction}Z")
}

/// Formats an optional timestamp, `-` when absent.
pub fn when(t: Option<&prost_types::Timestamp>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "-".to_owned())
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are in range by construction: 1..=12 and 1..=31.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        assert_eq!(rfc3339(&ts(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(&ts(951_782_400, 0)), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(&ts(1_700_000_000, 5_000_000)),
            "2023-11-14T22:13:20.005Z"
        );
        assert_eq!(
            rfc3339(&ts(1_700_000_000, 1_000)),
            "2023-11-14T22:13:20.000001Z"
        );
        assert_eq!(
            rfc3339(&ts(1_700_000_000, 7)),
            "2023-11-14T22:13:20.000000007Z"
        );
        assert_eq!(rfc3339(&ts(-1, 0)), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn table_columns_are_aligned_and_the_last_is_not_padded() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["a".into(), "prod".into()]);
        t.row(vec!["long-id".into(), "x".into()]);
        assert_eq!(t.render(), "ID       NAME\na        prod\nlong-id  x\n");
    }
}
