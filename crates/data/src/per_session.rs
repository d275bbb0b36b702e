//! One example per session, as the LLM-DMsRec authors' MSGIFSR run used on Beauty
//! (`shared/notes/backbones.md` §4.6): its `train.txt` holds each training user's session minus
//! its final item and its `test.txt` each test user's session minus its final item, and its data
//! loader keeps one example per line (all but the line's last item → that item). With
//! `drop_last = 1` that is `s[..n−2] → s[n−2]`, the second-to-last item of every session, never
//! the final one; with `drop_last = 0`, `s[..n−1] → s[n−1]`.
//!
//! The training sessions come from the dataset's full training sequences; the test sessions are
//! rebuilt from its prefix-augmented test split (rows `[a] → b`, `[a b] → c`, … session by
//! session, as the paper's Beauty test file).

use crate::{DataError, Dataset, Example, Result};

/// The sessions of a prefix-augmented split: a row continues the session of the row before when
/// its prefix is that row's prefix plus its target; any other row starts a new session.
pub fn sessions_of_augmented(examples: &[Example]) -> Vec<Vec<u32>> {
    let mut sessions: Vec<Vec<u32>> = Vec::new();
    let mut previous: Option<&Example> = None;
    for ex in examples {
        let continues = previous.is_some_and(|p| {
            ex.prefix.len() == p.prefix.len() + 1
                && ex.prefix[..p.prefix.len()] == p.prefix[..]
                && ex.prefix[p.prefix.len()] == p.target
        });
        if continues {
            sessions.last_mut().expect("a session is open").push(ex.target);
        } else {
            sessions.push(ex.prefix.iter().copied().chain([ex.target]).collect());
        }
        previous = Some(ex);
    }
    sessions
}

/// What [`one_per_session`] kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerSessionReport {
    pub train_sessions: usize,
    pub test_sessions: usize,
    /// Sessions too short to leave a non-empty prefix after dropping `drop_last` items.
    pub skipped_train: usize,
    pub skipped_test: usize,
}

/// The dataset with one example per session, the last `drop_last` items of each dropped first.
/// Its training sequences are the truncated training sessions (what the authors' file holds).
pub fn one_per_session(ds: &Dataset, drop_last: usize) -> Result<(Dataset, PerSessionReport)> {
    if ds.train_sequences.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no full training sequences (all_train_seq.tsv) to take one example per session from",
            ds.name
        )));
    }
    let test_sessions = sessions_of_augmented(&ds.test);
    let keep = |sessions: &[Vec<u32>]| -> (Vec<Example>, Vec<Vec<u32>>, usize) {
        let (mut examples, mut truncated, mut skipped) = (Vec::new(), Vec::new(), 0);
        for s in sessions {
            if s.len() < drop_last + 2 {
                skipped += 1;
                continue;
            }
            let kept = &s[..s.len() - drop_last];
            let last = kept.len() - 1;
            examples.push(Example { prefix: kept[..last].to_vec(), target: kept[last] });
            truncated.push(kept.to_vec());
        }
        (examples, truncated, skipped)
    };
    let (train, train_sequences, skipped_train) = keep(&ds.train_sequences);
    let (test, _, skipped_test) = keep(&test_sessions);
    let report = PerSessionReport {
        train_sessions: ds.train_sequences.len(),
        test_sessions: test_sessions.len(),
        skipped_train,
        skipped_test,
    };
    let name = format!("{}-per-session-drop{drop_last}", ds.name);
    Ok((Dataset { name, catalog: ds.catalog.clone(), train, test, train_sequences }, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sessions_to_examples, Catalog};

    #[test]
    fn rebuilds_sessions_and_keeps_the_second_to_last_item() {
        let train_sessions = vec![vec![1, 2, 3, 4], vec![5, 6], vec![7, 8, 9]];
        // Two test sessions whose prefix rows follow each other, and a third that starts with
        // the same item as the previous row's target (a new session all the same: length 1).
        let test_sessions = vec![vec![1, 3, 5], vec![2, 4, 6, 8], vec![8, 9, 1]];
        let ds = Dataset {
            name: "toy".into(),
            catalog: Catalog::untitled(9),
            train: sessions_to_examples(&train_sessions, true),
            test: sessions_to_examples(&test_sessions, true),
            train_sequences: train_sessions.clone(),
        };
        assert_eq!(sessions_of_augmented(&ds.test), test_sessions);
        let (one, report) = one_per_session(&ds, 1).unwrap();
        let pairs = |ex: &[Example]| ex.iter().map(|e| (e.prefix.clone(), e.target)).collect::<Vec<_>>();
        assert_eq!(pairs(&one.train), vec![(vec![1, 2], 3), (vec![7], 8)]);
        assert_eq!(pairs(&one.test), vec![(vec![1], 3), (vec![2, 4], 6), (vec![8], 9)]);
        assert_eq!(one.train_sequences, vec![vec![1, 2, 3], vec![7, 8]]);
        assert_eq!((report.skipped_train, report.skipped_test), (1, 0), "5 6 has no prefix left");
        let (last, _) = one_per_session(&ds, 0).unwrap();
        assert_eq!(pairs(&last.test), vec![(vec![1, 3], 5), (vec![2, 4, 6], 8), (vec![8, 9], 1)]);
        let no_sequences = Dataset { train_sequences: Vec::new(), ..ds };
        assert!(one_per_session(&no_sequences, 1).is_err());
    }
}
