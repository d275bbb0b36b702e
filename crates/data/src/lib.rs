//! Session datasets for dmsrec.
//!
//! Items are numbered `1..=n_items`; id 0 is padding and never a real item. A [`Dataset`] holds
//! the item [`Catalog`], the train and test [`Example`]s (session prefix → next item) and the full
//! training sessions, from which later stages build global item graphs.
//!
//! The canonical on-disk form is a folder of TSV files (see [`tsv`]), the same layout as the
//! paper authors' splits in `shared/data/*-paper`. Every reader (`pickle`, `movielens`, `amazon`,
//! `csv`) produces a [`Dataset`] that [`tsv::write_dataset`] stores in that form.

pub mod amazon;
pub mod atomic;
pub mod csv;
pub mod download;
pub mod error;
pub mod movielens;
pub mod per_session;
pub mod pickle;
pub mod sample;
pub mod stats;
pub mod synth;
pub mod tsv;

pub use error::{DataError, Result};

/// One training or test case: the clicked items so far, and the item clicked next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub prefix: Vec<u32>,
    pub target: u32,
}

/// What is known about one item. `title` is the display title; `prompt_title` is the text given to
/// an LLM (e.g. MovieLens titles without the year, as the paper's authors did).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemInfo {
    pub title: String,
    pub prompt_title: String,
    /// Extra columns of `items.tsv` (e.g. `movie_id`, `genres`, `asin`), in file order.
    pub fields: Vec<(String, String)>,
}

impl ItemInfo {
    pub fn new(title: impl Into<String>) -> Self {
        let title = title.into();
        Self { prompt_title: title.clone(), title, fields: Vec::new() }
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Item id → information; `items[i]` describes item `i + 1`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    items: Vec<ItemInfo>,
}

impl Catalog {
    pub fn new(items: Vec<ItemInfo>) -> Self {
        Self { items }
    }

    /// A catalog of `n` items without titles (for data that comes without metadata).
    pub fn untitled(n: usize) -> Self {
        Self { items: vec![ItemInfo::default(); n] }
    }

    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    pub fn get(&self, id: u32) -> Option<&ItemInfo> {
        (id as usize).checked_sub(1).and_then(|i| self.items.get(i))
    }

    pub fn title(&self, id: u32) -> &str {
        self.get(id).map(|i| i.title.as_str()).unwrap_or("")
    }

    pub fn prompt_title(&self, id: u32) -> &str {
        self.get(id).map(|i| i.prompt_title.as_str()).unwrap_or("")
    }

    /// `(id, info)` for every item, ids ascending from 1.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &ItemInfo)> {
        self.items.iter().enumerate().map(|(i, info)| (i as u32 + 1, info))
    }

    pub fn has_titles(&self) -> bool {
        self.items.iter().any(|i| !i.title.is_empty())
    }
}

/// A complete session-recommendation dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub catalog: Catalog,
    pub train: Vec<Example>,
    pub test: Vec<Example>,
    /// Full training sessions (including single-item ones), for global item graphs.
    pub train_sequences: Vec<Vec<u32>>,
}

impl Dataset {
    pub fn n_items(&self) -> usize {
        self.catalog.n_items()
    }

    /// Checks that every id is a real item (1..=n_items) and every prefix is non-empty.
    pub fn validate(&self) -> Result<()> {
        let n = self.n_items() as u32;
        let check = |what: &str, idx: usize, ids: &mut dyn Iterator<Item = u32>| -> Result<()> {
            for id in ids {
                if id == 0 || id > n {
                    return Err(DataError::Invalid(format!(
                        "{what} #{}: item id {id} outside 1..={n}",
                        idx + 1
                    )));
                }
            }
            Ok(())
        };
        for (split, examples) in [("train example", &self.train), ("test example", &self.test)] {
            for (i, ex) in examples.iter().enumerate() {
                if ex.prefix.is_empty() {
                    return Err(DataError::Invalid(format!("{split} #{}: empty session", i + 1)));
                }
                check(split, i, &mut ex.prefix.iter().copied().chain([ex.target]))?;
            }
        }
        for (i, s) in self.train_sequences.iter().enumerate() {
            check("train sequence", i, &mut s.iter().copied())?;
        }
        Ok(())
    }
}

/// Checks that a split fraction option lies in [0, 1].
pub(crate) fn check_fraction(what: &str, value: f64) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(DataError::Other(format!("{what} must be in [0, 1], got {value}")))
    }
}

/// The examples of a list of sessions.
///
/// Without augmentation every session of length ≥ 2 gives `s[:-1] → s[-1]` (the paper's ML-1M);
/// with it, every prefix gives one example `s[:k] → s[k]` for k ≥ 1 (the paper's Beauty).
pub fn sessions_to_examples(sessions: &[Vec<u32>], prefix_augmentation: bool) -> Vec<Example> {
    let mut out = Vec::new();
    for s in sessions.iter().filter(|s| s.len() >= 2) {
        if prefix_augmentation {
            for k in 1..s.len() {
                out.push(Example { prefix: s[..k].to_vec(), target: s[k] });
            }
        } else {
            let last = s.len() - 1;
            out.push(Example { prefix: s[..last].to_vec(), target: s[last] });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_to_examples_last_item_and_augmented() {
        let sessions = vec![vec![1, 2, 3], vec![4], vec![5, 6]];
        let plain = sessions_to_examples(&sessions, false);
        assert_eq!(
            plain,
            vec![Example { prefix: vec![1, 2], target: 3 }, Example { prefix: vec![5], target: 6 }]
        );
        let aug = sessions_to_examples(&sessions, true);
        assert_eq!(aug.len(), 3);
        assert_eq!(aug[0], Example { prefix: vec![1], target: 2 });
        assert_eq!(aug[1], Example { prefix: vec![1, 2], target: 3 });
    }

    #[test]
    fn validate_rejects_padding_and_out_of_range() {
        let mut d = Dataset {
            catalog: Catalog::untitled(3),
            train: vec![Example { prefix: vec![1, 2], target: 3 }],
            ..Default::default()
        };
        assert!(d.validate().is_ok());
        d.test.push(Example { prefix: vec![0], target: 1 });
        assert!(d.validate().unwrap_err().to_string().contains("test example #1"));
        d.test[0] = Example { prefix: vec![1], target: 4 };
        assert!(d.validate().is_err());
    }

    #[test]
    fn catalog_lookup() {
        let c = Catalog::new(vec![ItemInfo::new("A"), ItemInfo::new("B")]);
        assert_eq!(c.title(2), "B");
        assert_eq!(c.title(0), "");
        assert_eq!(c.title(3), "");
        assert_eq!(c.iter().map(|(id, _)| id).collect::<Vec<_>>(), vec![1, 2]);
    }
}
