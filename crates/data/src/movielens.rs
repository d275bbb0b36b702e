//! Raw MovieLens-1M (`ratings.dat`, `movies.dat`) turned into sessions with the protocol of the
//! LLM-DMsRec authors (`dataset/process_ml-1m.ipynb`):
//!
//! 1. movies with fewer than 5 ratings (counted over all ratings) are dropped;
//! 2. each user's ratings are sorted by timestamp (stable: ties keep file order);
//! 3. ratings are grouped by UTC calendar day (`timestamp div 86400`), and only days on which the
//!    user has more than one rating are kept;
//! 4. within a day, a session starts at its first rating, and a rating more than 300 s after the
//!    session's *first* rating starts a new session;
//! 5. the sessions of all users (in user-id order, then time) are stably sorted by their last
//!    timestamp;
//! 6. the first `floor(0.9·N)` sessions are train, the rest test; every session of length ≥ 2
//!    gives one example `s[:-1] → s[-1]`; all train sessions (also single-item ones) are the
//!    training sequences;
//! 7. item id = 1 + rank of the MovieLens movie id among the kept movies (ascending).
//!
//! On the real files this gives 77,674 sessions (69,906 train / 7,768 test), 65,664 / 5,979
//! examples and 3,416 items.

use crate::{sessions_to_examples, Catalog, DataError, Dataset, ItemInfo, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const RATINGS: &str = "ratings.dat";
pub const MOVIES: &str = "movies.dat";

/// Parameters of the protocol; the defaults are the paper authors'.
#[derive(Debug, Clone, PartialEq)]
pub struct MovielensOptions {
    /// Movies with fewer ratings than this (over all ratings) are dropped.
    pub min_ratings: usize,
    /// A rating more than this many seconds after its session's first rating starts a new session.
    pub session_gap_s: i64,
    /// Fraction of the time-sorted sessions used for training (`floor(fraction·N)` sessions).
    pub train_fraction: f64,
}

impl Default for MovielensOptions {
    fn default() -> Self {
        Self { min_ratings: 5, session_gap_s: 300, train_fraction: 0.9 }
    }
}

/// Counts along the way, for the CLI to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovielensReport {
    pub n_ratings: usize,
    pub n_movies_rated: usize,
    pub n_movies_kept: usize,
    pub n_ratings_kept: usize,
    pub n_sessions: usize,
    pub n_train_sessions: usize,
    pub n_test_sessions: usize,
    pub n_train_examples: usize,
    pub n_test_examples: usize,
}

/// One line of `ratings.dat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating {
    pub user: u32,
    pub movie: u32,
    pub rating: u32,
    pub timestamp: i64,
}

/// One line of `movies.dat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    pub id: u32,
    pub title: String,
    pub genres: String,
}

/// ISO-8859-1: every byte is the code point of the same value.
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// The prompt title of the authors: the text before the first `" ("` (Python's
/// `title.split(' (')[0]`), i.e. the title without the year.
pub fn short_title(title: &str) -> &str {
    title.split(" (").next().unwrap_or(title)
}

fn read_latin1(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(decode_latin1(&bytes))
}

/// Non-empty lines with their 1-based numbers, `\r` stripped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

fn parse_num<T: std::str::FromStr>(path: &Path, line: usize, name: &str, s: &str) -> Result<T> {
    s.trim()
        .parse()
        .map_err(|_| DataError::parse(path, line, format!("{name}: expected an integer, found {s:?}")))
}

/// Parses `UserID::MovieID::Rating::Timestamp` lines.
pub fn read_ratings(path: &Path) -> Result<Vec<Rating>> {
    let text = read_latin1(path)?;
    let mut out = Vec::new();
    for (line_no, line) in lines(&text) {
        let f: Vec<&str> = line.split("::").collect();
        if f.len() != 4 {
            return Err(DataError::parse(
                path,
                line_no,
                format!("expected 4 fields `UserID::MovieID::Rating::Timestamp`, found {}", f.len()),
            ));
        }
        out.push(Rating {
            user: parse_num(path, line_no, "UserID", f[0])?,
            movie: parse_num(path, line_no, "MovieID", f[1])?,
            rating: parse_num(path, line_no, "Rating", f[2])?,
            timestamp: parse_num(path, line_no, "Timestamp", f[3])?,
        });
    }
    Ok(out)
}

/// Parses `MovieID::Title::Genres` lines (ISO-8859-1). The title is everything between the first
/// and the last `::`.
pub fn read_movies(path: &Path) -> Result<Vec<Movie>> {
    let text = read_latin1(path)?;
    let mut out = Vec::new();
    for (line_no, line) in lines(&text) {
        let bad = || DataError::parse(path, line_no, "expected 3 fields `MovieID::Title::Genres`");
        let (id, rest) = line.split_once("::").ok_or_else(bad)?;
        let (title, genres) = rest.rsplit_once("::").ok_or_else(bad)?;
        out.push(Movie {
            id: parse_num(path, line_no, "MovieID", id)?,
            title: title.to_string(),
            genres: genres.to_string(),
        });
    }
    Ok(out)
}

/// Sessions of item ids (already remapped) and the last timestamp of each, from ratings.
///
/// `ratings` must already be restricted to the kept movies; `item_of` maps a movie id to its item
/// id. Returns the sessions in the final order (sorted by last timestamp).
pub fn sessionize(
    ratings: &[Rating],
    item_of: &HashMap<u32, u32>,
    session_gap_s: i64,
) -> Vec<(i64, Vec<u32>)> {
    // Per user (ascending user id), ratings in file order, then a stable sort by time.
    let mut by_user: BTreeMap<u32, Vec<(i64, u32)>> = BTreeMap::new();
    for r in ratings {
        if let Some(&item) = item_of.get(&r.movie) {
            by_user.entry(r.user).or_default().push((r.timestamp, item));
        }
    }
    let mut sessions: Vec<(i64, Vec<u32>)> = Vec::new();
    for events in by_user.values_mut() {
        events.sort_by_key(|&(t, _)| t);
        // Days are contiguous runs once sorted by time.
        let mut start = 0;
        while start < events.len() {
            let day = events[start].0.div_euclid(86_400);
            let mut end = start + 1;
            while end < events.len() && events[end].0.div_euclid(86_400) == day {
                end += 1;
            }
            let day_events = &events[start..end];
            if day_events.len() > 1 {
                let mut session_start = day_events[0].0;
                let mut current: Vec<u32> = Vec::new();
                let mut last_t = session_start;
                for &(t, item) in day_events {
                    if t - session_start > session_gap_s {
                        sessions.push((last_t, std::mem::take(&mut current)));
                        session_start = t;
                    }
                    current.push(item);
                    last_t = t;
                }
                sessions.push((last_t, current));
            }
            start = end;
        }
    }
    sessions.sort_by_key(|&(last, _)| last);
    sessions
}

/// Number of training sessions out of `n`: `floor(fraction·n)`, computed in f64 as Python's
/// `int(n * fraction)` does.
pub fn train_count(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).floor().max(0.0) as usize).min(n)
}

/// Builds the dataset from the two files with explicit options.
pub fn read_movielens_files(
    ratings_path: &Path,
    movies_path: &Path,
    opts: &MovielensOptions,
) -> Result<(Dataset, MovielensReport)> {
    crate::check_fraction("train fraction", opts.train_fraction)?;
    let ratings = read_ratings(ratings_path)?;
    let movies = read_movies(movies_path)?;

    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for r in &ratings {
        *counts.entry(r.movie).or_default() += 1;
    }
    let kept: Vec<u32> = counts.iter().filter(|(_, &c)| c >= opts.min_ratings).map(|(&m, _)| m).collect();
    let item_of: HashMap<u32, u32> = kept.iter().enumerate().map(|(i, &m)| (m, i as u32 + 1)).collect();

    let mut movie_info: HashMap<u32, &Movie> = HashMap::new();
    for m in &movies {
        if movie_info.insert(m.id, m).is_some() {
            return Err(DataError::Other(format!(
                "{}: movie id {} listed more than once",
                movies_path.display(),
                m.id
            )));
        }
    }
    let mut items = Vec::with_capacity(kept.len());
    for &m in &kept {
        let info = movie_info.get(&m).ok_or_else(|| {
            DataError::Other(format!(
                "{}: movie id {m} has ratings in {} but no line here",
                movies_path.display(),
                ratings_path.display()
            ))
        })?;
        items.push(ItemInfo {
            title: info.title.clone(),
            prompt_title: short_title(&info.title).to_string(),
            fields: vec![
                ("movie_id".to_string(), m.to_string()),
                ("genres".to_string(), info.genres.clone()),
            ],
        });
    }

    let sessions: Vec<Vec<u32>> =
        sessionize(&ratings, &item_of, opts.session_gap_s).into_iter().map(|(_, s)| s).collect();
    let n_train = train_count(sessions.len(), opts.train_fraction);
    let (train_s, test_s) = sessions.split_at(n_train);
    let train = sessions_to_examples(train_s, false);
    let test = sessions_to_examples(test_s, false);
    let report = MovielensReport {
        n_ratings: ratings.len(),
        n_movies_rated: counts.len(),
        n_movies_kept: kept.len(),
        n_ratings_kept: ratings.iter().filter(|r| item_of.contains_key(&r.movie)).count(),
        n_sessions: sessions.len(),
        n_train_sessions: train_s.len(),
        n_test_sessions: test_s.len(),
        n_train_examples: train.len(),
        n_test_examples: test.len(),
    };
    let ds = Dataset {
        name: "ml-1m".into(),
        catalog: Catalog::new(items),
        train,
        test,
        train_sequences: train_s.to_vec(),
    };
    ds.validate()?;
    Ok((ds, report))
}

/// Reads `dir/ratings.dat` and `dir/movies.dat` with the paper's protocol.
pub fn read_movielens(dir: &Path) -> Result<Dataset> {
    read_movielens_with(dir, &MovielensOptions::default()).map(|(ds, _)| ds)
}

/// [`read_movielens`] with explicit options, also returning the counts.
pub fn read_movielens_with(dir: &Path, opts: &MovielensOptions) -> Result<(Dataset, MovielensReport)> {
    read_movielens_files(&dir.join(RATINGS), &dir.join(MOVIES), opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Example;

    const DAY: i64 = 86_400;

    /// Writes ratings (user, movie, t) with rating 3, and movies (id, title) for the given ids.
    fn fixture(ratings: &[(u32, u32, i64)], movies: &[(u32, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let mut r = String::new();
        for (u, m, t) in ratings {
            r.push_str(&format!("{u}::{m}::3::{t}\n"));
        }
        std::fs::write(d.path().join(RATINGS), r).unwrap();
        let mut mv: Vec<u8> = Vec::new();
        for (id, title) in movies {
            mv.extend_from_slice(format!("{id}::").as_bytes());
            mv.extend_from_slice(title);
            mv.extend_from_slice(b"::Drama|Comedy\n");
        }
        std::fs::write(d.path().join(MOVIES), mv).unwrap();
        d
    }

    fn movies_for(ids: &[u32]) -> Vec<(u32, Vec<u8>)> {
        ids.iter().map(|&i| (i, format!("Movie {i} (1999)").into_bytes())).collect()
    }

    fn run(
        ratings: &[(u32, u32, i64)],
        movie_ids: &[u32],
        opts: &MovielensOptions,
    ) -> (Dataset, MovielensReport) {
        let movies = movies_for(movie_ids);
        let movies: Vec<(u32, &[u8])> = movies.iter().map(|(i, t)| (*i, t.as_slice())).collect();
        let d = fixture(ratings, &movies);
        read_movielens_with(d.path(), opts).unwrap()
    }

    /// With min_ratings 1 the item id of movie m is its rank among all rated movies.
    fn loose() -> MovielensOptions {
        MovielensOptions { min_ratings: 1, ..Default::default() }
    }

    #[test]
    fn drops_movies_with_fewer_than_min_ratings_and_remaps_ids() {
        // Movie 50 has 5 ratings, movie 7 has 4, movie 300 has 6 -> kept: 50, 300 -> ids 1, 2.
        let mut r = Vec::new();
        for k in 0..5 {
            r.push((1, 50, 1000 + k * 10));
        }
        for k in 0..4 {
            r.push((2, 7, 1000 + k * 10));
        }
        for k in 0..6 {
            r.push((3, 300, 2000 + k * 10));
        }
        r.push((3, 50, 2100));
        let (ds, rep) =
            run(&r, &[7, 50, 300], &MovielensOptions { train_fraction: 1.0, ..Default::default() });
        assert_eq!(rep.n_movies_rated, 3);
        assert_eq!(rep.n_movies_kept, 2);
        assert_eq!(rep.n_ratings, 16);
        assert_eq!(rep.n_ratings_kept, 12);
        assert_eq!(ds.n_items(), 2);
        assert_eq!(ds.catalog.get(1).unwrap().field("movie_id"), Some("50"));
        assert_eq!(ds.catalog.get(2).unwrap().field("movie_id"), Some("300"));
        // User 2's day only had the dropped movie: no session; users 1 and 3 one session each.
        assert_eq!(ds.train_sequences, vec![vec![1, 1, 1, 1, 1], vec![2, 2, 2, 2, 2, 2, 1]]);
    }

    #[test]
    fn the_count_is_over_all_ratings_not_only_kept_days() {
        // Movie 9 is rated 5 times, but 4 of those are single-rating days; it is still kept.
        let r = vec![
            (1, 9, 0),
            (1, 8, 10),
            (2, 9, 5 * DAY),
            (3, 9, 6 * DAY),
            (4, 9, 7 * DAY),
            (5, 9, 8 * DAY),
            (6, 8, 9 * DAY),
            (7, 8, 10 * DAY),
            (8, 8, 11 * DAY),
            (9, 8, 12 * DAY),
        ];
        let (ds, rep) = run(&r, &[8, 9], &MovielensOptions { train_fraction: 1.0, ..Default::default() });
        assert_eq!(rep.n_movies_kept, 2);
        assert_eq!(ds.train_sequences, vec![vec![2, 1]]);
    }

    #[test]
    fn sorts_each_users_ratings_by_time_stably() {
        // File order is not time order; ties (t=100) keep file order (movie 3 before movie 1).
        let r = vec![(1, 2, 200), (1, 3, 100), (1, 1, 100), (1, 4, 50)];
        let (ds, _) = run(&r, &[1, 2, 3, 4], &MovielensOptions { train_fraction: 1.0, ..loose() });
        assert_eq!(ds.train_sequences, vec![vec![4, 3, 1, 2]]);
        assert_eq!(ds.train, vec![Example { prefix: vec![4, 3, 1], target: 2 }]);
    }

    #[test]
    fn utc_midnight_splits_days_and_single_rating_days_are_dropped() {
        let opts = MovielensOptions { train_fraction: 1.0, session_gap_s: 10_000, ..loose() };
        // 23:59:00 and 00:01:00 the next day: 120 s apart but on two days, each with one rating
        // -> both dropped. Day 3 has two ratings -> one session.
        let r = vec![(1, 1, DAY - 60), (1, 2, DAY + 60), (1, 3, 3 * DAY + 10), (1, 4, 3 * DAY + 20)];
        let (ds, rep) = run(&r, &[1, 2, 3, 4], &opts);
        assert_eq!(rep.n_sessions, 1);
        assert_eq!(ds.train_sequences, vec![vec![3, 4]]);
        // Two ratings on each side of midnight -> two sessions, though only 100 s apart overall.
        let r = vec![(1, 1, DAY - 50), (1, 2, DAY - 10), (1, 3, DAY + 10), (1, 4, DAY + 50)];
        let (ds, _) = run(&r, &[1, 2, 3, 4], &opts);
        assert_eq!(ds.train_sequences, vec![vec![1, 2], vec![3, 4]]);
    }

    #[test]
    fn a_new_session_starts_300s_after_the_sessions_first_rating() {
        let opts = MovielensOptions { train_fraction: 1.0, ..loose() };
        // 0, 200, 350: 350 - 0 > 300 -> new session, though 350 - 200 = 150.
        let r = vec![(1, 1, 0), (1, 2, 200), (1, 3, 350)];
        let (ds, _) = run(&r, &[1, 2, 3], &opts);
        assert_eq!(ds.train_sequences, vec![vec![1, 2], vec![3]]);
        // Exactly 300 s stays in the session; the new session's start is 301.
        let r = vec![(1, 1, 0), (1, 2, 300), (1, 3, 301), (1, 4, 601), (1, 5, 602)];
        let (ds, _) = run(&r, &[1, 2, 3, 4, 5], &opts);
        assert_eq!(ds.train_sequences, vec![vec![1, 2], vec![3, 4], vec![5]]);
        // Single-item sessions give no example but stay in the training sequences.
        assert_eq!(
            ds.train,
            vec![Example { prefix: vec![1], target: 2 }, Example { prefix: vec![3], target: 4 }]
        );
    }

    #[test]
    fn sessions_are_sorted_by_last_timestamp_across_users() {
        let opts = MovielensOptions { train_fraction: 1.0, ..loose() };
        // User 1: session ending at 1000. User 2: session ending at 500. User 3: also ending at
        // 1000 -> after user 1 (stable, user order). User 4 (listed first in the file) ends at 10.
        let r = vec![
            (4, 7, 0),
            (4, 8, 10),
            (1, 1, 900),
            (1, 2, 1000),
            (2, 3, 400),
            (2, 4, 500),
            (3, 5, 990),
            (3, 6, 1000),
        ];
        let (ds, _) = run(&r, &[1, 2, 3, 4, 5, 6, 7, 8], &opts);
        assert_eq!(ds.train_sequences, vec![vec![7, 8], vec![3, 4], vec![1, 2], vec![5, 6]]);
    }

    #[test]
    fn splits_90_10_with_floor_and_makes_one_example_per_session() {
        // 11 sessions (one per day of user 1, each of two ratings), floor(0.9 * 11) = 9 train.
        let mut r = Vec::new();
        for d in 0..11i64 {
            r.push((1, (2 * d + 1) as u32, d * DAY));
            r.push((1, (2 * d + 2) as u32, d * DAY + 5));
        }
        let ids: Vec<u32> = (1..=22).collect();
        let (ds, rep) = run(&r, &ids, &loose());
        assert_eq!((rep.n_sessions, rep.n_train_sessions, rep.n_test_sessions), (11, 9, 2));
        assert_eq!((rep.n_train_examples, rep.n_test_examples), (9, 2));
        assert_eq!(ds.train_sequences.len(), 9);
        assert_eq!(ds.train[0], Example { prefix: vec![1], target: 2 });
        assert_eq!(
            ds.test,
            vec![Example { prefix: vec![19], target: 20 }, Example { prefix: vec![21], target: 22 }]
        );
        assert_eq!(train_count(77_674, 0.9), 69_906);
        assert_eq!(train_count(10, 0.9), 9);
        assert_eq!(train_count(3, 0.0), 0);
    }

    #[test]
    fn latin1_titles_short_titles_and_fields() {
        let d = fixture(
            &[(1, 10, 0), (1, 20, 10)],
            &[(10, b"Caf\xe9 (Le) (1990)"), (20, b"Nothing In Brackets"), (30, b"Unrated (2000)")],
        );
        let (ds, _) =
            read_movielens_with(d.path(), &MovielensOptions { min_ratings: 1, ..Default::default() })
                .unwrap();
        let it = ds.catalog.get(1).unwrap();
        assert_eq!(it.title, "Café (Le) (1990)");
        assert_eq!(it.prompt_title, "Café");
        assert_eq!(
            it.fields,
            vec![("movie_id".into(), "10".into()), ("genres".into(), "Drama|Comedy".into())]
        );
        assert_eq!(ds.catalog.prompt_title(2), "Nothing In Brackets");
        assert_eq!(ds.n_items(), 2);
        assert_eq!(short_title("Toy Story (1995)"), "Toy Story");
        assert_eq!(short_title(""), "");
        assert_eq!(decode_latin1(&[0x41, 0xe9, 0xff]), "Aéÿ");
    }

    #[test]
    fn read_movielens_uses_the_defaults() {
        // Movie 1 has 5 ratings, movie 2 only 2: it is dropped.
        let r = vec![(1, 1, 0), (1, 2, 10), (1, 1, 20), (2, 1, 0), (2, 1, 100), (2, 2, 100), (3, 1, 0)];
        let d = fixture(&r, &[(1, b"A (1)"), (2, b"B (2)")]);
        let ds = read_movielens(d.path()).unwrap();
        assert_eq!(ds.name, "ml-1m");
        assert_eq!(ds.n_items(), 1);
        // Sessions: user 1 [1,1] (ends 20), user 2 [1,1] (ends 100): floor(0.9*2) = 1 train.
        assert_eq!(ds.train_sequences, vec![vec![1, 1]]);
        assert_eq!(ds.test, vec![Example { prefix: vec![1], target: 1 }]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let rp = d.path().join(RATINGS);
        let mp = d.path().join(MOVIES);
        std::fs::write(&mp, "1::A (1)::Drama\n").unwrap();
        let cases: [(&str, &str); 4] = [
            ("1::1::3::0\n1::1::3\n", ":2: expected 4 fields"),
            ("1::1::3::0\n\n1::x::3::5\n", ":3: MovieID: expected an integer, found \"x\""),
            ("1::1::3::0::9\n", ":1: expected 4 fields"),
            ("1::1::3::1.5\n", ":1: Timestamp"),
        ];
        for (text, want) in cases {
            std::fs::write(&rp, text).unwrap();
            let err = read_movielens(d.path()).unwrap_err().to_string();
            assert!(err.contains("ratings.dat") && err.contains(want), "{text:?}: {err}");
        }
        std::fs::write(&rp, "1::1::3::0\n1::1::3::5\n").unwrap();
        std::fs::write(&mp, "1::A (1)::Drama\nfoo\n").unwrap();
        let err = read_movielens(d.path()).unwrap_err().to_string();
        assert!(err.contains("movies.dat:2: expected 3 fields"), "{err}");
        std::fs::write(&mp, "one::A (1)::Drama\n").unwrap();
        let err = read_movielens(d.path()).unwrap_err().to_string();
        assert!(err.contains("movies.dat:1: MovieID"), "{err}");
        // A kept movie missing from movies.dat.
        std::fs::write(&mp, "2::B (1)::Drama\n").unwrap();
        let err = read_movielens_with(d.path(), &loose()).unwrap_err().to_string();
        assert!(err.contains("movies.dat") && err.contains("movie id 1"), "{err}");
        // Duplicate movie line.
        std::fs::write(&mp, "1::A (1)::Drama\n1::A (1)::Drama\n").unwrap();
        assert!(read_movielens_with(d.path(), &loose()).unwrap_err().to_string().contains("more than once"));
        // Missing file.
        std::fs::remove_file(&rp).unwrap();
        assert!(matches!(read_movielens(d.path()), Err(DataError::Io { .. })));
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(RATINGS), "1::1::3::0\r\n1::2::3::5\r\n").unwrap();
        std::fs::write(d.path().join(MOVIES), "1::A (1)::Drama\r\n2::B::Comedy\r\n").unwrap();
        let (ds, _) =
            read_movielens_with(d.path(), &MovielensOptions { train_fraction: 1.0, ..loose() }).unwrap();
        assert_eq!(ds.catalog.get(2).unwrap().field("genres"), Some("Comedy"));
        assert_eq!(ds.train_sequences, vec![vec![1, 2]]);
    }
}
