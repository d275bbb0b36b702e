//! Seeded example samples of a dataset: the "mini protocol" that runs every phase of the method
//! (pre-training, candidates, LLM intents, joint training) on a few thousand examples.
//!
//! The catalog is kept whole so that item ids (and candidate files) mean the same thing in the
//! sample and in the full dataset. Training sequences are the sampled training examples' full
//! sequences (prefix + target), so item graphs built from them see only the sample.

use crate::{DataError, Dataset, Example, Result};
use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Which examples a sample kept: 0-based indices into the source splits, ascending.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SampleIndex {
    pub source: String,
    pub seed: u64,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// `n` distinct indices of `0..len`, drawn with `rng`, in ascending order.
fn ascending_sample(rng: &mut ChaCha8Rng, len: usize, n: usize, what: &str) -> Result<Vec<usize>> {
    if n > len {
        return Err(DataError::Other(format!("cannot sample {n} {what} examples out of {len}")));
    }
    let mut picked = index::sample(rng, len, n).into_vec();
    picked.sort_unstable();
    Ok(picked)
}

/// The file in a sampled dataset folder that lists which source examples it holds.
pub const SAMPLE_INDEX: &str = "sample.json";

/// A seeded sample of `n_train` training and `n_test` test examples (one RNG, train drawn first).
pub fn sample(ds: &Dataset, n_train: usize, n_test: usize, seed: u64) -> Result<(Dataset, SampleIndex)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let train_idx = ascending_sample(&mut rng, ds.train.len(), n_train, "training")?;
    let test_idx = ascending_sample(&mut rng, ds.test.len(), n_test, "test")?;
    let pick = |examples: &[Example], idx: &[usize]| idx.iter().map(|&i| examples[i].clone()).collect();
    let train: Vec<Example> = pick(&ds.train, &train_idx);
    let train_sequences =
        train.iter().map(|e| e.prefix.iter().copied().chain([e.target]).collect()).collect();
    let sampled = Dataset {
        name: format!("{}-sample", ds.name),
        catalog: ds.catalog.clone(),
        test: pick(&ds.test, &test_idx),
        train,
        train_sequences,
    };
    let index = SampleIndex { source: ds.name.clone(), seed, train: train_idx, test: test_idx };
    Ok((sampled, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn numbered(n: usize, offset: u32) -> Vec<Example> {
        (0..n as u32)
            .map(|i| Example { prefix: vec![offset + i % 7 + 1], target: offset + i % 5 + 1 })
            .collect()
    }

    fn dataset() -> Dataset {
        Dataset {
            name: "toy".into(),
            catalog: Catalog::untitled(20),
            train: numbered(100, 0),
            test: numbered(30, 10),
            train_sequences: vec![],
        }
    }

    #[test]
    fn sample_is_seeded_ascending_and_keeps_the_catalog() {
        let ds = dataset();
        let (a, ia) = sample(&ds, 10, 4, 2024).unwrap();
        let (b, ib) = sample(&ds, 10, 4, 2024).unwrap();
        let (_, ic) = sample(&ds, 10, 4, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(ia, ib);
        assert_ne!(ia.train, ic.train, "another seed draws other examples");
        assert!(ia.train.windows(2).all(|w| w[0] < w[1]));
        assert!(ia.test.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a.catalog, ds.catalog);
        for (ex, &i) in a.train.iter().zip(&ia.train) {
            assert_eq!(ex, &ds.train[i]);
        }
        for (ex, &i) in a.test.iter().zip(&ia.test) {
            assert_eq!(ex, &ds.test[i]);
        }
        assert_eq!(a.train_sequences[0], [a.train[0].prefix.clone(), vec![a.train[0].target]].concat());
        a.validate().unwrap();
    }

    #[test]
    fn asking_for_more_than_there_is_fails() {
        let err = sample(&dataset(), 101, 1, 1).unwrap_err().to_string();
        assert!(err.contains("101 training examples out of 100"), "{err}");
    }
}
