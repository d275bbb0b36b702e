//! Bring-your-own data: an interactions CSV/TSV and an optional items CSV.
//!
//! * Interactions: a header line, then one click per row, with columns for the session or user
//!   id (`session_id`, else `user_id`), the item id (`item_id`) and the time (`timestamp`); other
//!   columns are ignored. The delimiter (tab, comma, semicolon or `|`) is detected from the
//!   header unless given. Fields may be quoted. Times are numbers (seconds; fractions allowed) or
//!   ISO 8601 dates / date-times (`2014-04-07`, `2014-04-07T10:51:09.277Z`,
//!   `2014-04-07 10:51:09+02:00`).
//! * Sessions: the rows of one id are sorted by time (stable: ties keep file order). With an
//!   inactivity gap (default 1800 s) a click more than the gap after the previous click of the
//!   same id starts a new session; a gap of `None` or 0 means the id already is a session id.
//! * Item ids: the original ids sorted (numerically when all are integers, else as strings) and
//!   numbered 1..n; each item keeps its original id as field `original_id`.
//! * Split: sessions sorted by their last time (stable); the last `test_fraction` of them
//!   (default 0.1; `floor((1 - f)·N)` sessions are train) are test. Sessions of length 1 give no
//!   example; the training sequences are all training sessions. Optional prefix augmentation.
//! * Items file (optional): columns `item_id` and `title` (names configurable); other columns
//!   become fields. Items without a row get an empty title.

use crate::{sessions_to_examples, Catalog, DataError, Dataset, ItemInfo, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// How to read an interactions file.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionsOptions {
    /// Field delimiter of both files; `None` detects it from each file's header line.
    pub delimiter: Option<u8>,
    /// Session or user id column; `None` uses `session_id`, or else `user_id`.
    pub session_column: Option<String>,
    pub item_column: String,
    pub time_column: String,
    /// Title column of the items file.
    pub title_column: String,
    /// Inactivity gap in seconds that starts a new session; `None` or 0: the id column already
    /// identifies sessions.
    pub session_gap_s: Option<f64>,
    /// Fraction of the (time-sorted) sessions used for testing.
    pub test_fraction: f64,
    /// Every prefix of a session gives an example (else only `s[:-1] → s[-1]`).
    pub prefix_augmentation: bool,
    /// Dataset name; `None` uses the interactions file's stem.
    pub name: Option<String>,
}

impl Default for InteractionsOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            session_column: None,
            item_column: "item_id".into(),
            time_column: "timestamp".into(),
            title_column: "title".into(),
            session_gap_s: Some(1800.0),
            test_fraction: 0.1,
            prefix_augmentation: false,
            name: None,
        }
    }
}

/// Counts along the way, for the CLI to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InteractionsReport {
    pub n_rows: usize,
    pub n_ids: usize,
    pub n_items: usize,
    pub n_sessions: usize,
    pub n_train_sessions: usize,
    pub n_test_sessions: usize,
    pub n_train_examples: usize,
    pub n_test_examples: usize,
    /// Items that got a non-empty title from the items file.
    pub n_items_with_title: usize,
}

/// The delimiter among tab, comma, semicolon and `|` that occurs most often (outside quotes) in
/// a header line; comma when none does.
pub fn detect_delimiter(header: &[u8]) -> u8 {
    let candidates = [b'\t', b',', b';', b'|'];
    let mut counts = [0usize; 4];
    let mut in_quotes = false;
    for &c in header {
        if c == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            if let Some(k) = candidates.iter().position(|&d| d == c) {
                counts[k] += 1;
            }
        }
    }
    let mut best = 1; // comma
    for k in 0..4 {
        if counts[k] > counts[best] {
            best = k;
        }
    }
    candidates[best]
}

/// Opens a CSV file: skips a UTF-8 byte-order mark and picks the delimiter.
fn open_csv(path: &Path, delimiter: Option<u8>) -> Result<::csv::Reader<BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    let bom = head.starts_with(b"\xef\xbb\xbf");
    let start = if bom { 3 } else { 0 };
    let first_line = &head[start..];
    let first_line = &first_line[..first_line.iter().position(|&b| b == b'\n').unwrap_or(first_line.len())];
    if first_line.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DataError::parse(path, 1, "empty file or header line, expected a header"));
    }
    let delim = delimiter.unwrap_or_else(|| detect_delimiter(first_line));
    if bom {
        reader.consume(3);
    }
    Ok(::csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(true)
        .trim(::csv::Trim::All)
        .from_reader(reader))
}

fn csv_error(path: &Path, e: ::csv::Error) -> DataError {
    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
    let msg = match e.kind() {
        ::csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("expected {expected_len} fields (as in the header), found {len}")
        }
        ::csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8: {err}"),
        ::csv::ErrorKind::Io(err) => {
            return DataError::io(path, std::io::Error::new(err.kind(), err.to_string()))
        }
        _ => e.to_string(),
    };
    if line == 0 {
        DataError::Other(format!("{}: {msg}", path.display()))
    } else {
        DataError::parse(path, line, msg)
    }
}

fn column(path: &Path, header: &::csv::StringRecord, name: &str) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        let cols: Vec<&str> = header.iter().collect();
        DataError::parse(path, 1, format!("header has no `{name}` column (columns: {})", cols.join(", ")))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &str, n: usize) -> Option<(i64, &str)> {
    if s.len() < n || !s.as_bytes()[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// Seconds since the Unix epoch of a number or an ISO 8601 date / date-time (UTC unless an
/// offset is given). Non-finite numbers are rejected.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let (y, rest) = digits(s, 4)?;
    let rest = rest.strip_prefix('-')?;
    let (mo, rest) = digits(rest, 2)?;
    let rest = rest.strip_prefix('-')?;
    let (d, rest) = digits(rest, 2)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = (days_from_civil(y, mo, d) * 86_400) as f64;
    if rest.is_empty() {
        return Some(secs);
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let (h, rest) = digits(rest, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (mi, mut rest) = digits(rest, 2)?;
    let mut sec = 0.0;
    if let Some(r) = rest.strip_prefix(':') {
        let (sv, r) = digits(r, 2)?;
        sec = sv as f64;
        rest = r;
        if let Some(r) = rest.strip_prefix(['.', ',']) {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            sec += format!("0.{}", &r[..n]).parse::<f64>().ok()?;
            rest = &r[n..];
        }
    }
    if h > 24 || mi > 59 || sec >= 61.0 {
        return None;
    }
    secs += (h * 3600 + mi * 60) as f64 + sec;
    match rest {
        "" | "Z" | "z" => Some(secs),
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1.0,
                b'-' => -1.0,
                _ => return None,
            };
            let r = &rest[1..];
            let (oh, r) = digits(r, 2)?;
            let r = r.strip_prefix(':').unwrap_or(r);
            let (om, r) = if r.is_empty() { (0, r) } else { digits(r, 2)? };
            if !r.is_empty() {
                return None;
            }
            Some(secs - sign * (oh * 3600 + om * 60) as f64)
        }
    }
}

/// Reads an interactions file (and optional items file) into a dataset.
pub fn read_interactions(
    interactions: &Path,
    items: Option<&Path>,
    opts: &InteractionsOptions,
) -> Result<Dataset> {
    read_interactions_with_report(interactions, items, opts).map(|(ds, _)| ds)
}

/// [`read_interactions`], also returning the counts.
pub fn read_interactions_with_report(
    interactions: &Path,
    items: Option<&Path>,
    opts: &InteractionsOptions,
) -> Result<(Dataset, InteractionsReport)> {
    crate::check_fraction("test fraction", opts.test_fraction)?;
    let gap = match opts.session_gap_s {
        Some(g) if g < 0.0 || !g.is_finite() => {
            return Err(DataError::Other(format!("session gap must be ≥ 0 seconds, got {g}")))
        }
        Some(g) if g > 0.0 => Some(g),
        _ => None,
    };
    let path = interactions;
    let mut rdr = open_csv(path, opts.delimiter)?;
    let header = rdr.headers().map_err(|e| csv_error(path, e))?.clone();
    let id_col = match &opts.session_column {
        Some(name) => column(path, &header, name)?,
        None => column(path, &header, "session_id").or_else(|_| column(path, &header, "user_id")).map_err(
            |_| {
                let cols: Vec<&str> = header.iter().collect();
                DataError::parse(
                    path,
                    1,
                    format!(
                        "header has neither `session_id` nor `user_id` column (columns: {})",
                        cols.join(", ")
                    ),
                )
            },
        )?,
    };
    let item_col = column(path, &header, &opts.item_column)?;
    let time_col = column(path, &header, &opts.time_column)?;

    // Clicks grouped by id, ids in order of first appearance.
    let mut id_index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<(f64, usize)>> = Vec::new();
    let mut item_index: HashMap<String, usize> = HashMap::new();
    let mut item_names: Vec<String> = Vec::new();
    let mut n_rows = 0;
    let mut record = ::csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        let id = &record[id_col];
        let item = &record[item_col];
        let time = &record[time_col];
        if id.is_empty() {
            return Err(DataError::parse(path, line, format!("empty `{}`", &header[id_col])));
        }
        if item.is_empty() {
            return Err(DataError::parse(path, line, format!("empty `{}`", opts.item_column)));
        }
        let t = parse_timestamp(time).ok_or_else(|| {
            DataError::parse(
                path,
                line,
                format!("`{}`: expected seconds or an ISO 8601 date-time, found {time:?}", opts.time_column),
            )
        })?;
        let item_ix = match item_index.get(item) {
            Some(&ix) => ix,
            None => {
                item_names.push(item.to_string());
                item_index.insert(item.to_string(), item_names.len() - 1);
                item_names.len() - 1
            }
        };
        let g = match id_index.get(id) {
            Some(&g) => g,
            None => {
                groups.push(Vec::new());
                id_index.insert(id.to_string(), groups.len() - 1);
                groups.len() - 1
            }
        };
        groups[g].push((t, item_ix));
        n_rows += 1;
    }
    if n_rows == 0 {
        return Err(DataError::Other(format!("{}: no interactions", path.display())));
    }

    // Item ids: original ids sorted numerically if all are integers, else as strings.
    let mut order: Vec<usize> = (0..item_names.len()).collect();
    let numeric: Option<Vec<i128>> = item_names.iter().map(|s| s.parse::<i128>().ok()).collect();
    match &numeric {
        Some(nums) => order.sort_by_key(|&i| nums[i]),
        None => order.sort_by(|&a, &b| item_names[a].cmp(&item_names[b])),
    }
    let mut new_id = vec![0u32; item_names.len()];
    for (rank, &ix) in order.iter().enumerate() {
        new_id[ix] = rank as u32 + 1;
    }

    // Sessions.
    let mut sessions: Vec<(f64, Vec<u32>)> = Vec::new();
    for events in &mut groups {
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut current: Vec<u32> = Vec::new();
        let mut prev = events[0].0;
        for &(t, ix) in events.iter() {
            if let Some(g) = gap {
                if t - prev > g && !current.is_empty() {
                    sessions.push((prev, std::mem::take(&mut current)));
                }
            }
            current.push(new_id[ix]);
            prev = t;
        }
        sessions.push((prev, current));
    }
    sessions.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sessions: Vec<Vec<u32>> = sessions.into_iter().map(|(_, s)| s).collect();
    let n_train = crate::movielens::train_count(sessions.len(), 1.0 - opts.test_fraction);
    let (train_s, test_s) = sessions.split_at(n_train);
    let train = sessions_to_examples(train_s, opts.prefix_augmentation);
    let test = sessions_to_examples(test_s, opts.prefix_augmentation);

    // Catalog.
    let (extra_cols, info) = match items {
        Some(p) => read_items_csv(p, &item_index, opts)?,
        None => (Vec::new(), HashMap::new()),
    };
    let catalog_items: Vec<ItemInfo> = order
        .iter()
        .map(|&ix| {
            let name = &item_names[ix];
            let (title, extra) = match info.get(&ix) {
                Some((t, e)) => (t.clone(), e.clone()),
                None => (String::new(), vec![String::new(); extra_cols.len()]),
            };
            let mut fields = vec![("original_id".to_string(), name.clone())];
            fields.extend(extra_cols.iter().cloned().zip(extra));
            ItemInfo { prompt_title: title.clone(), title, fields }
        })
        .collect();
    let report = InteractionsReport {
        n_rows,
        n_ids: groups.len(),
        n_items: catalog_items.len(),
        n_sessions: sessions.len(),
        n_train_sessions: train_s.len(),
        n_test_sessions: test_s.len(),
        n_train_examples: train.len(),
        n_test_examples: test.len(),
        n_items_with_title: catalog_items.iter().filter(|i| !i.title.is_empty()).count(),
    };
    let name = opts.name.clone().unwrap_or_else(|| {
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into())
    });
    let ds = Dataset {
        name,
        catalog: Catalog::new(catalog_items),
        train,
        test,
        train_sequences: train_s.to_vec(),
    };
    ds.validate()?;
    Ok((ds, report))
}

/// Titles and extra columns of the items file, keyed by the interaction item index.
#[allow(clippy::type_complexity)]
fn read_items_csv(
    path: &Path,
    item_index: &HashMap<String, usize>,
    opts: &InteractionsOptions,
) -> Result<(Vec<String>, HashMap<usize, (String, Vec<String>)>)> {
    let mut rdr = open_csv(path, opts.delimiter)?;
    let header = rdr.headers().map_err(|e| csv_error(path, e))?.clone();
    let id_col = column(path, &header, &opts.item_column)?;
    let title_col = column(path, &header, &opts.title_column)?;
    let extra: Vec<usize> = (0..header.len()).filter(|&c| c != id_col && c != title_col).collect();
    let extra_names: Vec<String> = extra.iter().map(|&c| header[c].to_string()).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashMap::new();
    let mut record = ::csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        let id = &record[id_col];
        if id.is_empty() {
            return Err(DataError::parse(path, line, format!("empty `{}`", opts.item_column)));
        }
        if let Some(first) = seen.insert(id.to_string(), line) {
            return Err(DataError::parse(
                path,
                line,
                format!("duplicate item {id:?} (first on line {first})"),
            ));
        }
        if let Some(&ix) = item_index.get(id) {
            let title = record[title_col].to_string();
            out.insert(ix, (title, extra.iter().map(|&c| record[c].to_string()).collect()));
        }
    }
    Ok((extra_names, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Example;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn no_gap() -> InteractionsOptions {
        InteractionsOptions { session_gap_s: None, ..Default::default() }
    }

    #[test]
    fn session_ids_numeric_remapping_and_time_split() {
        let d = tempfile::tempdir().unwrap();
        // Tab-separated, extra column ignored, file order != time order within session s1.
        let p = write(
            d.path(),
            "clicks.tsv",
            "session_id\titem_id\ttimestamp\tcategory\n\
             s1\t100\t50\tx\n\
             s1\t9\t10\tx\n\
             s2\t10\t5\ty\n\
             s2\t9\t6\ty\n\
             s3\t10\t7\tz\n\
             s1\t10\t10\tx\n",
        );
        let mut opts = no_gap();
        opts.test_fraction = 0.34; // floor(0.66 * 3) = 1 train session
        let (ds, rep) = read_interactions_with_report(&p, None, &opts).unwrap();
        assert_eq!(ds.name, "clicks");
        // Numeric order 9 < 10 < 100 (not string order).
        let orig: Vec<&str> = ds.catalog.iter().map(|(_, i)| i.field("original_id").unwrap()).collect();
        assert_eq!(orig, vec!["9", "10", "100"]);
        // Sessions by last time: s2 (6), s3 (7, single), s1 (50); s1 sorted by time, tie kept.
        assert_eq!(ds.train_sequences, vec![vec![2, 1]]);
        assert_eq!(ds.train, vec![Example { prefix: vec![2], target: 1 }]);
        // s3 has one click: no example; s1 = [9, 10, 100] -> [1, 2] -> 3.
        assert_eq!(ds.test, vec![Example { prefix: vec![1, 2], target: 3 }]);
        assert_eq!(
            (rep.n_rows, rep.n_ids, rep.n_items, rep.n_sessions, rep.n_train_sessions, rep.n_test_sessions),
            (6, 3, 3, 3, 1, 2)
        );
        assert_eq!((rep.n_train_examples, rep.n_test_examples), (1, 1));
    }

    #[test]
    fn user_ids_are_split_by_the_inactivity_gap() {
        let d = tempfile::tempdir().unwrap();
        // u1: 0, 1700, 3400 (each step ≤ 1800 -> one session), 5300 (gap 1900 -> new).
        // u2: 100, 1901 (gap 1801 -> new session of one click each).
        let p = write(
            d.path(),
            "log.csv",
            "user_id,item_id,timestamp\nu1,1,0\nu1,2,1700\nu2,3,100\nu1,3,3400\nu1,4,5300\nu2,4,1901\nu1,1,5400\n",
        );
        let opts = InteractionsOptions { test_fraction: 0.0, ..Default::default() };
        let ds = read_interactions(&p, None, &opts).unwrap();
        // Sessions by last time: u2 [3] (100), u2 [4] (1901), u1 [1,2,3] (3400), u1 [4,1] (5400).
        assert_eq!(ds.train_sequences, vec![vec![3], vec![4], vec![1, 2, 3], vec![4, 1]]);
        assert_eq!(ds.train.len(), 2);
        // A gap of 0 (or None) keeps one session per id.
        let ds =
            read_interactions(&p, None, &InteractionsOptions { session_gap_s: Some(0.0), ..opts.clone() })
                .unwrap();
        assert_eq!(ds.train_sequences, vec![vec![3, 4], vec![1, 2, 3, 4, 1]]);
        // Prefix augmentation.
        let ds = read_interactions(
            &p,
            None,
            &InteractionsOptions { session_gap_s: None, prefix_augmentation: true, ..opts },
        )
        .unwrap();
        assert_eq!(ds.train.len(), 1 + 4);
        assert_eq!(ds.train[0], Example { prefix: vec![3], target: 4 });
    }

    #[test]
    fn items_file_with_quotes_and_extra_columns_and_string_ids() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "clicks.csv",
            "\u{feff}session_id;item_id;timestamp\na;B07;2014-04-07T10:51:09.277Z\na;A01;2014-04-07 10:52:00\nb;A01;2014-04-08\nb;C99;2014-04-08T00:00:01+00:00\n",
        );
        let items = write(
            d.path(),
            "items.csv",
            "item_id,title,brand\nA01,\"Hello, \"\"World\"\"\",Acme\nB07,Caf\u{e9},\nZZZ,unused,x\n",
        );
        let opts = InteractionsOptions { test_fraction: 0.5, ..no_gap() };
        let (ds, rep) = read_interactions_with_report(&p, Some(&items), &opts).unwrap();
        // String order: A01 < B07 < C99.
        assert_eq!(ds.catalog.title(1), "Hello, \"World\"");
        assert_eq!(ds.catalog.title(2), "Café");
        assert_eq!(ds.catalog.title(3), "");
        assert_eq!(ds.catalog.prompt_title(1), "Hello, \"World\"");
        let it = ds.catalog.get(1).unwrap();
        assert_eq!(it.fields, vec![("original_id".into(), "A01".into()), ("brand".into(), "Acme".into())]);
        assert_eq!(ds.catalog.get(3).unwrap().field("brand"), Some(""));
        assert_eq!(rep.n_items_with_title, 2);
        assert_eq!(ds.train, vec![Example { prefix: vec![2], target: 1 }]);
        assert_eq!(ds.test, vec![Example { prefix: vec![1], target: 3 }]);
        // The dataset writes and reads back as a TSV folder.
        let out = d.path().join("out");
        crate::tsv::write_dataset(&out, &ds).unwrap();
        let back = crate::tsv::read_dataset(&out).unwrap();
        assert_eq!(back.catalog, ds.catalog);
    }

    #[test]
    fn timestamps_and_delimiters() {
        assert_eq!(parse_timestamp("1396867869"), Some(1396867869.0));
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0.0));
        assert_eq!(parse_timestamp("2014-04-07T10:51:09.277Z"), Some(1396867869.277));
        assert_eq!(parse_timestamp("2014-04-07 12:51:09+02:00"), Some(1396867869.0));
        assert_eq!(parse_timestamp("2000-03-01T00:00"), Some(951868800.0));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Some(-1.0));
        for bad in ["", "abc", "NaN", "inf", "2014-13-01", "2014-04-07X", "2014-04-07T25:00", "2014/04/07"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(detect_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(detect_delimiter(b"a;b;c"), b';');
        assert_eq!(detect_delimiter(b"a|b"), b'|');
        assert_eq!(detect_delimiter(b"\"a,b\";c"), b';');
        assert_eq!(detect_delimiter(b"abc"), b',');
    }

    #[test]
    fn explicit_delimiter_and_column_names() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "x.txt", "sid item t\n1 5 1\n1 6 2\n");
        let opts = InteractionsOptions {
            delimiter: Some(b' '),
            session_column: Some("sid".into()),
            item_column: "item".into(),
            time_column: "t".into(),
            test_fraction: 0.0,
            name: Some("mine".into()),
            ..no_gap()
        };
        let ds = read_interactions(&p, None, &opts).unwrap();
        assert_eq!(ds.name, "mine");
        assert_eq!(ds.train, vec![Example { prefix: vec![1], target: 2 }]);
    }

    #[test]
    fn malformed_input_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                "session_id,item_id,timestamp\n1,2,3\n1,2\n",
                "x.csv:3: expected 3 fields (as in the header), found 2",
            ),
            ("session_id,item_id,timestamp\n1,2,3\n1,2,soon\n", "x.csv:3: `timestamp`: expected seconds"),
            ("session_id,item_id,timestamp\n1,,3\n", "x.csv:2: empty `item_id`"),
            ("session_id,item_id,timestamp\n,4,3\n", "x.csv:2: empty `session_id`"),
            ("session_id,item,timestamp\n1,2,3\n", "x.csv:1: header has no `item_id` column"),
            ("sess,item_id,timestamp\n1,2,3\n", "x.csv:1: header has neither `session_id` nor `user_id`"),
            ("session_id,item_id,timestamp\n1,2,\"3\n4\"\n", "x.csv:2: `timestamp`"),
            ("", "x.csv:1: empty file"),
            ("session_id,item_id,timestamp\n", "x.csv: no interactions"),
        ];
        for (text, want) in cases {
            let p = write(d.path(), "x.csv", text);
            let err = read_interactions(&p, None, &no_gap()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let p = write(d.path(), "x.csv", "session_id,item_id,timestamp\n1,2,3\n1,3,4\n");
        let items_cases = [
            ("item_id,title\n2,a\n2,b\n", "items.csv:3: duplicate item \"2\" (first on line 2)"),
            ("item_id,name\n2,a\n", "items.csv:1: header has no `title` column"),
            ("item_id,title\n2,a,extra\n", "items.csv:2: expected 2 fields"),
        ];
        for (text, want) in items_cases {
            let items = write(d.path(), "items.csv", text);
            let err = read_interactions(&p, Some(&items), &no_gap()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let bad = InteractionsOptions { test_fraction: 1.5, ..no_gap() };
        assert!(read_interactions(&p, None, &bad).is_err());
        let bad = InteractionsOptions { session_gap_s: Some(-1.0), ..Default::default() };
        assert!(read_interactions(&p, None, &bad).is_err());
        assert!(matches!(
            read_interactions(&d.path().join("missing.csv"), None, &no_gap()),
            Err(DataError::Io { .. })
        ));
    }
}
