//! Phase I (paper section 4.1, Eq. 2–3): the pre-trained backbone's top-K items per example.
//!
//! The candidate file is aligned with the examples: line `i` holds the K candidate item ids of
//! example `i`, space-separated, best first — the format of the authors' candidate sets in
//! `shared/data/*-paper/test_candidates.tsv`. Nothing is excluded except padding (id 0): the
//! session's own items stay candidates (the authors' files contain the last clicked item for
//! ~98% of examples), so that the LLM can name them and Eq. 5 can call such intents explicit.

use anyhow::{bail, Context, Result};
use dmsrec_data::atomic::write_atomic;
use dmsrec_data::Example;
use dmsrec_models::{Backbone, Mode};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::io::Write;
use std::path::Path;

/// The paper's candidate set size (Prompt 2 lists 50 candidates).
pub const DEFAULT_K: usize = 50;
/// Examples scored per forward pass.
pub const DEFAULT_BATCH: usize = 500;

/// Descending score, ties broken by the smaller item id; NaN ranks last.
fn by_score_desc(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    key(b.0).partial_cmp(&key(a.0)).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1))
}

/// The `k` best items of one score row (column `i` is item `i + 1`), best first.
pub fn top_k_of_row(row: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    let mut scored: Vec<(f32, u32)> = row.iter().enumerate().map(|(i, &s)| (s, i as u32 + 1)).collect();
    if k < scored.len() {
        scored.select_nth_unstable_by(k - 1, by_score_desc);
        scored.truncate(k);
    }
    scored.sort_by(by_score_desc);
    scored.into_iter().map(|(_, id)| id).collect()
}

/// Scores `[batch, n_items]` in evaluation mode of a batch of sessions, which are the examples
/// in the given index range (so that a model with intents can look them up).
pub type BatchScorer<'a> =
    dyn FnMut(&[&[u32]], std::ops::Range<usize>) -> candle_core::Result<candle_core::Tensor> + 'a;

/// The scorer of a plain backbone.
pub fn backbone_scorer(
    model: &dyn Backbone,
) -> impl FnMut(&[&[u32]], std::ops::Range<usize>) -> candle_core::Result<candle_core::Tensor> + '_ {
    move |sessions, _| {
        let enc = model.encode(sessions, &mut Mode::Eval)?;
        model.scores(&enc, &mut Mode::Eval)
    }
}

/// Eq. 2: the top-`k` item ids of every example (best first, padding never included), scoring
/// `batch_size` examples per forward pass. `k` larger than the catalog gives every item.
pub fn top_k_candidates(
    score: &mut BatchScorer,
    examples: &[Example],
    k: usize,
    batch_size: usize,
) -> Result<Vec<Vec<u32>>> {
    if k == 0 {
        bail!("candidate count K must be at least 1");
    }
    let batch_size = batch_size.max(1);
    let mut out = Vec::with_capacity(examples.len());
    for (b, chunk) in examples.chunks(batch_size).enumerate() {
        if let Some((i, _)) = chunk.iter().enumerate().find(|(_, e)| e.prefix.is_empty()) {
            bail!("example #{} has an empty session", b * batch_size + i + 1);
        }
        let sessions: Vec<&[u32]> = chunk.iter().map(|e| e.prefix.as_slice()).collect();
        let start = b * batch_size;
        let scores = score(&sessions, start..start + chunk.len())
            .and_then(|s| s.to_dtype(candle_core::DType::F32))
            .and_then(|s| s.to_vec2::<f32>())
            .with_context(|| format!("scores of batch {}", b + 1))?;
        if scores.len() != chunk.len() {
            bail!("{} score rows for a batch of {}", scores.len(), chunk.len());
        }
        out.extend(scores.iter().map(|row| top_k_of_row(row, k)));
    }
    Ok(out)
}

/// Writes one line of space-separated ids per example, atomically (all or nothing).
pub fn write_candidates(path: &Path, candidates: &[Vec<u32>]) -> Result<()> {
    write_atomic(path, |w: &mut dyn Write| {
        let mut line = String::new();
        for ids in candidates {
            line.clear();
            for (j, id) in ids.iter().enumerate() {
                if j > 0 {
                    line.push(' ');
                }
                line.push_str(&id.to_string());
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    })
    .with_context(|| format!("writing candidates {}", path.display()))
}

/// Reads a candidate file written by [`write_candidates`] (or the authors' converted files).
/// Every line is one example; errors name `file:line`.
pub fn read_candidates(path: &Path) -> Result<Vec<Vec<u32>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let mut ids = Vec::new();
        for tok in line.split_ascii_whitespace() {
            let id: u32 = tok.parse().map_err(|_| {
                anyhow::anyhow!("{}:{line_no}: expected an item id, found {tok:?}", path.display())
            })?;
            if id == 0 {
                bail!("{}:{line_no}: item id 0 is padding, not a candidate", path.display());
            }
            ids.push(id);
        }
        if ids.is_empty() {
            bail!("{}:{line_no}: no candidate ids (one line per example expected)", path.display());
        }
        out.push(ids);
    }
    Ok(out)
}

/// Checks that a candidate list belongs to these examples (one row each).
pub fn check_aligned(candidates: &[Vec<u32>], examples: &[Example]) -> Result<()> {
    if candidates.len() != examples.len() {
        bail!(
            "{} candidate rows for {} examples: the file does not belong to this split",
            candidates.len(),
            examples.len()
        );
    }
    Ok(())
}

/// How often the candidate set contains the target, the last clicked item and the session's items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CandidateCoverage {
    /// Share of examples whose target (next item) is among the candidates.
    pub target: f64,
    /// Share of examples whose last clicked item is among the candidates.
    pub last_item: f64,
    /// Share of examples whose last clicked item is the first candidate.
    pub last_item_first: f64,
    /// Mean share of a session's distinct items that are among its candidates (the items an
    /// intent can be explicit about, Eq. 5).
    pub session_items: f64,
    /// Number of examples counted.
    pub examples: usize,
}

/// Coverage of aligned candidate rows (all of each row is used). Zero examples give 0 shares.
pub fn coverage(examples: &[Example], candidates: &[Vec<u32>]) -> Result<CandidateCoverage> {
    check_aligned(candidates, examples)?;
    let (mut target, mut last, mut last_first, mut session_share) = (0usize, 0usize, 0usize, 0.0);
    for (ex, ids) in examples.iter().zip(candidates) {
        target += ids.contains(&ex.target) as usize;
        last += ex.prefix.last().is_some_and(|l| ids.contains(l)) as usize;
        last_first += (ex.prefix.last().is_some() && ex.prefix.last() == ids.first()) as usize;
        let mut distinct = ex.prefix.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if !distinct.is_empty() {
            session_share +=
                distinct.iter().filter(|i| ids.contains(i)).count() as f64 / distinct.len() as f64;
        }
    }
    let n = examples.len();
    let share = |c: f64| if n == 0 { 0.0 } else { c / n as f64 };
    Ok(CandidateCoverage {
        target: share(target as f64),
        last_item: share(last as f64),
        last_item_first: share(last_first as f64),
        session_items: share(session_share),
        examples: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use dmsrec_models::{ModelConfig, ParamStore, SrGnnConfig};

    fn ex(prefix: &[u32], target: u32) -> Example {
        Example { prefix: prefix.to_vec(), target }
    }

    #[test]
    fn top_k_of_row_sorts_and_breaks_ties_by_id() {
        let row = [0.5, 2.0, f32::NAN, 2.0, -1.0, 3.0];
        assert_eq!(top_k_of_row(&row, 3), vec![6, 2, 4]);
        assert_eq!(top_k_of_row(&row, 10), vec![6, 2, 4, 1, 5, 3]);
        assert!(top_k_of_row(&row, 0).is_empty());
    }

    #[test]
    fn srgnn_candidates_are_the_top_scored_items() {
        let n_items = 40;
        let ps = ParamStore::new(7, &Device::Cpu);
        let model = ModelConfig::Srgnn(SrGnnConfig { n_items, dim: 8, step: 1, nonhybrid: false })
            .build(&ps, &Default::default())
            .unwrap();
        let examples: Vec<Example> = (0..23u32)
            .map(|i| {
                ex(
                    &[1 + i % 40, 1 + (i * 7) % 40, 1 + (i * 13 + 5) % 40][..(1 + i as usize % 3)],
                    1 + (i * 3) % 40,
                )
            })
            .collect();
        let k = 10;
        // Batches of 4 leave a partial last batch; results must not depend on the batch size.
        let cands = top_k_candidates(&mut backbone_scorer(model.as_ref()), &examples, k, 4).unwrap();
        assert_eq!(cands, top_k_candidates(&mut backbone_scorer(model.as_ref()), &examples, k, 500).unwrap());
        assert_eq!(cands.len(), examples.len());
        for (e, ids) in examples.iter().zip(&cands) {
            let sessions = [e.prefix.as_slice()];
            let g = model.encode(&sessions, &mut Mode::Eval).unwrap();
            let row = model.scores(&g, &mut Mode::Eval).unwrap().to_vec2::<f32>().unwrap().remove(0);
            assert_eq!(row.len(), n_items);
            assert_eq!(ids.len(), k);
            assert!(
                ids.iter().all(|&id| id >= 1 && id as usize <= n_items),
                "padding or out of range: {ids:?}"
            );
            let mut uniq = ids.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), k, "duplicate candidates");
            let s: Vec<f32> = ids.iter().map(|&id| row[id as usize - 1]).collect();
            assert!(s.windows(2).all(|w| w[0] >= w[1]), "not sorted by score: {s:?}");
            // Nothing is excluded: every item outside the list scores no higher than the last kept.
            let kth = *s.last().unwrap();
            for id in 1..=n_items as u32 {
                if !ids.contains(&id) {
                    assert!(row[id as usize - 1] <= kth, "item {id} scores above the K-th candidate");
                }
            }
        }
        // The session's own items are not filtered out: the full ranking contains them.
        let all =
            top_k_candidates(&mut backbone_scorer(model.as_ref()), &examples[..1], n_items + 5, 500).unwrap();
        assert_eq!(all[0].len(), n_items);
        assert!(all[0].contains(&examples[0].prefix[0]));
    }

    #[test]
    fn write_read_round_trip_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cands.tsv");
        let rows = vec![vec![3, 1, 2], vec![10, 20, 30]];
        write_candidates(&p, &rows).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "3 1 2\n10 20 30\n");
        assert_eq!(read_candidates(&p).unwrap(), rows);

        std::fs::write(&p, "1 2 3\n4 x 6\n").unwrap();
        let err = read_candidates(&p).unwrap_err().to_string();
        assert!(err.contains("cands.tsv:2") && err.contains("\"x\""), "{err}");
        std::fs::write(&p, "1 2 3\n\n").unwrap();
        assert!(read_candidates(&p).unwrap_err().to_string().contains("cands.tsv:2"));
        std::fs::write(&p, "1 0\n").unwrap();
        assert!(read_candidates(&p).unwrap_err().to_string().contains("cands.tsv:1: item id 0"));
    }

    #[test]
    fn reads_the_authors_candidate_file_when_present() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/ml-1m-paper/test_candidates.tsv");
        if !p.exists() {
            eprintln!("SKIP: {} not found", p.display());
            return;
        }
        let rows = read_candidates(&p).unwrap();
        assert_eq!(rows.len(), 5979);
        assert!(rows.iter().all(|r| r.len() == DEFAULT_K));
    }

    #[test]
    fn coverage_hand_case() {
        let examples = vec![ex(&[1, 2], 3), ex(&[4], 5), ex(&[6, 7], 8), ex(&[9], 1)];
        let cands = vec![vec![3, 2, 9], vec![1, 2, 3], vec![7, 8], vec![2, 3]];
        let c = coverage(&examples, &cands).unwrap();
        // Targets found: ex 1 (3), ex 3 (8) → 2/4. Last items found: ex 1 (2), ex 3 (7) → 2/4;
        // first candidate: ex 3 only (7) → 1/4. Session items found: 1/2, 0/1, 1/2, 0/1 → 0.25.
        assert_eq!(
            c,
            CandidateCoverage {
                target: 0.5,
                last_item: 0.5,
                last_item_first: 0.25,
                session_items: 0.25,
                examples: 4
            }
        );
        let c = coverage(&examples[..1], &[vec![2]]).unwrap();
        assert_eq!((c.target, c.last_item, c.last_item_first, c.session_items), (0.0, 1.0, 1.0, 0.5));
        assert!(coverage(&examples, &cands[..3]).is_err());
        assert_eq!(coverage(&[], &[]).unwrap().target, 0.0);
    }
}
