//! Eq. 6–7: per example, E_e = mean of the embeddings of its explicit intents and E_l = mean of
//! the embeddings of its latent intents.
//!
//! Rules when a kind is missing (as the authors' code did):
//! - no explicit intent but some latent ones: E_e := E_l (flag `explicit_from_latent`);
//! - no latent intent but some explicit ones: E_l := E_e (flag `latent_from_explicit`);
//! - no intent at all: E_e = E_l = 0 and `mask` = 0 (`mask` = 1 for every other example).
//!
//! Each distinct intent string is encoded once ([`TextEncoder::ensure_cached`]). The result is
//! stored as safetensors: `explicit` and `latent` F32 `[n, dim]`, `mask`, `explicit_from_latent`
//! and `latent_from_explicit` U8 `[n]`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};

use crate::encoder::TextEncoder;

/// E_e and E_l of n examples, row-major `[n, dim]`, with the mask and fallback flags (0/1 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct IntentEmbeddings {
    /// E_e, `[n, dim]`.
    pub e_explicit: Vec<f32>,
    /// E_l, `[n, dim]`.
    pub e_latent: Vec<f32>,
    /// 1 when the example has at least one intent, 0 when both rows are zeros.
    pub mask: Vec<u8>,
    /// 1 when the example had no explicit intent and E_e is a copy of E_l.
    pub explicit_from_latent: Vec<u8>,
    /// 1 when the example had no latent intent and E_l is a copy of E_e.
    pub latent_from_explicit: Vec<u8>,
    pub dim: usize,
}

/// Counts over the examples, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntentEmbeddingStats {
    pub examples: usize,
    /// Examples with no intent at all (mask 0).
    pub empty: usize,
    pub explicit_from_latent: usize,
    pub latent_from_explicit: usize,
}

impl IntentEmbeddings {
    /// n examples of width `dim`, all zeros and masked out.
    pub fn zeros(n: usize, dim: usize) -> Self {
        Self {
            e_explicit: vec![0.0; n * dim],
            e_latent: vec![0.0; n * dim],
            mask: vec![0; n],
            explicit_from_latent: vec![0; n],
            latent_from_explicit: vec![0; n],
            dim,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.mask.len()
    }
    pub fn is_empty(&self) -> bool {
        self.mask.is_empty()
    }
    /// E_e of example `i`.
    pub fn explicit_row(&self, i: usize) -> &[f32] {
        &self.e_explicit[i * self.dim..(i + 1) * self.dim]
    }
    /// E_l of example `i`.
    pub fn latent_row(&self, i: usize) -> &[f32] {
        &self.e_latent[i * self.dim..(i + 1) * self.dim]
    }

    pub fn stats(&self) -> IntentEmbeddingStats {
        let count = |v: &[u8]| v.iter().filter(|&&b| b != 0).count();
        IntentEmbeddingStats {
            examples: self.len(),
            empty: self.mask.iter().filter(|&&b| b == 0).count(),
            explicit_from_latent: count(&self.explicit_from_latent),
            latent_from_explicit: count(&self.latent_from_explicit),
        }
    }

    fn check(&self) -> Result<()> {
        let n = self.mask.len();
        ensure!(self.dim > 0, "dim must be positive");
        ensure!(
            self.e_explicit.len() == n * self.dim,
            "explicit has {} floats, want {n}×{}",
            self.e_explicit.len(),
            self.dim
        );
        ensure!(
            self.e_latent.len() == n * self.dim,
            "latent has {} floats, want {n}×{}",
            self.e_latent.len(),
            self.dim
        );
        ensure!(
            self.explicit_from_latent.len() == n,
            "explicit_from_latent has {} entries, want {n}",
            self.explicit_from_latent.len()
        );
        ensure!(
            self.latent_from_explicit.len() == n,
            "latent_from_explicit has {} entries, want {n}",
            self.latent_from_explicit.len()
        );
        Ok(())
    }

    /// The tensors of the file layout: `explicit`, `latent`, `mask`, `explicit_from_latent`,
    /// `latent_from_explicit`.
    fn tensors(&self) -> Result<HashMap<&'static str, Tensor>> {
        self.check()?;
        let (n, dim) = (self.len(), self.dim);
        let dev = Device::Cpu;
        let mut tensors: HashMap<&str, Tensor> = HashMap::new();
        tensors.insert("explicit", Tensor::from_slice(&self.e_explicit, (n, dim), &dev)?);
        tensors.insert("latent", Tensor::from_slice(&self.e_latent, (n, dim), &dev)?);
        tensors.insert("mask", Tensor::from_slice(&self.mask, n, &dev)?);
        tensors.insert("explicit_from_latent", Tensor::from_slice(&self.explicit_from_latent, n, &dev)?);
        tensors.insert("latent_from_explicit", Tensor::from_slice(&self.latent_from_explicit, n, &dev)?);
        Ok(tensors)
    }

    /// Write as safetensors (the tensors of [`Self::tensors`]), atomically.
    pub fn write_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        save_atomic(path.as_ref(), &self.tensors()?)
    }

    /// Read a file written by [`Self::write_safetensors`].
    pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::from_tensors(tensors, path)
    }

    /// The tensors of a file written by [`Self::write_safetensors`], already loaded (other tensors
    /// in the map are ignored); `path` names the file in errors.
    pub fn from_tensors(mut tensors: HashMap<String, Tensor>, path: &Path) -> Result<Self> {
        let mut take = |name: &str| {
            tensors.remove(name).with_context(|| format!("{}: no tensor {name:?}", path.display()))
        };
        let explicit = take("explicit")?;
        let latent = take("latent")?;
        let mask = take("mask")?;
        let e_from_l = take("explicit_from_latent")?;
        let l_from_e = take("latent_from_explicit")?;

        let (n, dim) =
            explicit.dims2().with_context(|| format!("{}: explicit must be [n, dim]", path.display()))?;
        ensure!(
            latent.dims() == [n, dim],
            "{}: latent is {:?}, explicit [{n}, {dim}]",
            path.display(),
            latent.dims()
        );
        for (name, t) in
            [("mask", &mask), ("explicit_from_latent", &e_from_l), ("latent_from_explicit", &l_from_e)]
        {
            ensure!(t.dims() == [n], "{}: {name} is {:?}, want [{n}]", path.display(), t.dims());
        }
        let floats =
            |t: &Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?) };
        let bytes = |t: &Tensor| -> Result<Vec<u8>> { Ok(t.to_dtype(DType::U8)?.to_vec1::<u8>()?) };
        let out = Self {
            e_explicit: floats(&explicit)?,
            e_latent: floats(&latent)?,
            mask: bytes(&mask)?,
            explicit_from_latent: bytes(&e_from_l)?,
            latent_from_explicit: bytes(&l_from_e)?,
            dim,
        };
        out.check()?;
        Ok(out)
    }
}

/// Writes `tensors` as safetensors through a temporary file renamed into place.
fn save_atomic(path: &Path, tensors: &HashMap<&str, Tensor>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    dmsrec_data::atomic::write_via_path(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).map_err(std::io::Error::other)
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// The intent stage's `embeddings_<split>.safetensors`: E_e / E_l of some of a split's examples,
/// row `r` belonging to example `index[r]` (whose target is `targets[r]`, kept to catch a file
/// used with another split). The layout of [`IntentEmbeddings`] plus U32 `index` and `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitEmbeddings {
    pub embeddings: IntentEmbeddings,
    pub index: Vec<u32>,
    pub targets: Vec<u32>,
}

impl SplitEmbeddings {
    pub fn write(&self, path: &Path) -> Result<()> {
        let n = self.embeddings.len();
        ensure!(
            self.index.len() == n && self.targets.len() == n,
            "{} embedding rows but {} example indices and {} targets",
            n,
            self.index.len(),
            self.targets.len()
        );
        let mut tensors = self.embeddings.tensors()?;
        tensors.insert("index", Tensor::from_slice(&self.index, n, &Device::Cpu)?);
        tensors.insert("target", Tensor::from_slice(&self.targets, n, &Device::Cpu)?);
        save_atomic(path, &tensors)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut take = |name: &str| -> Result<Vec<u32>> {
            let t =
                tensors.remove(name).with_context(|| format!("{}: no tensor {name:?}", path.display()))?;
            t.to_vec1().with_context(|| format!("{}: {name} must be a U32 vector", path.display()))
        };
        let (index, targets) = (take("index")?, take("target")?);
        let embeddings = IntentEmbeddings::from_tensors(tensors, path)?;
        ensure!(
            index.len() == embeddings.len() && targets.len() == embeddings.len(),
            "{}: {} index entries and {} targets for {} rows",
            path.display(),
            index.len(),
            targets.len(),
            embeddings.len()
        );
        Ok(Self { embeddings, index, targets })
    }
}

/// Aggregate per-example intents given a way to look up each intent's embedding (`dim` floats).
/// `examples[i]` lists example i's intents as `(text, explicit)`. This is the pure part of
/// [`embed_intents`]; intents listed twice count twice in the mean.
pub fn aggregate_intents<'a, E, S, F>(examples: &[E], dim: usize, mut lookup: F) -> Result<IntentEmbeddings>
where
    E: AsRef<[(S, bool)]>,
    S: AsRef<str>,
    F: FnMut(&str) -> Option<&'a [f32]>,
{
    ensure!(dim > 0, "dim must be positive");
    let n = examples.len();
    let mut out = IntentEmbeddings::zeros(n, dim);
    let mut sum_e = vec![0f64; dim];
    let mut sum_l = vec![0f64; dim];
    for (i, intents) in examples.iter().enumerate() {
        sum_e.fill(0.0);
        sum_l.fill(0.0);
        let (mut q, mut d) = (0usize, 0usize);
        for (text, explicit) in intents.as_ref() {
            let text = text.as_ref();
            let v = lookup(text).with_context(|| format!("no embedding for intent {text:?}"))?;
            ensure!(v.len() == dim, "embedding of {text:?} has {} floats, want {dim}", v.len());
            let (sum, count) = if *explicit { (&mut sum_e, &mut q) } else { (&mut sum_l, &mut d) };
            for (s, &x) in sum.iter_mut().zip(v) {
                *s += x as f64;
            }
            *count += 1;
        }
        if q == 0 && d == 0 {
            continue; // zeros, mask 0
        }
        out.mask[i] = 1;
        let row = i * dim..(i + 1) * dim;
        let e_mean: Vec<f32> =
            if q > 0 { sum_e.iter().map(|s| (s / q as f64) as f32).collect() } else { Vec::new() };
        let l_mean: Vec<f32> =
            if d > 0 { sum_l.iter().map(|s| (s / d as f64) as f32).collect() } else { Vec::new() };
        match (q > 0, d > 0) {
            (true, true) => {
                out.e_explicit[row.clone()].copy_from_slice(&e_mean);
                out.e_latent[row].copy_from_slice(&l_mean);
            }
            (true, false) => {
                out.e_explicit[row.clone()].copy_from_slice(&e_mean);
                out.e_latent[row].copy_from_slice(&e_mean);
                out.latent_from_explicit[i] = 1;
            }
            (false, true) => {
                out.e_explicit[row.clone()].copy_from_slice(&l_mean);
                out.e_latent[row].copy_from_slice(&l_mean);
                out.explicit_from_latent[i] = 1;
            }
            (false, false) => unreachable!(),
        }
    }
    Ok(out)
}

/// Eq. 6–7 with a sentence encoder: encode every distinct intent once (cached across calls), then
/// [`aggregate_intents`].
pub fn embed_intents<E, S>(encoder: &mut TextEncoder, examples: &[E]) -> Result<IntentEmbeddings>
where
    E: AsRef<[(S, bool)]>,
    S: AsRef<str>,
{
    let texts: Vec<&str> = examples.iter().flat_map(|e| e.as_ref().iter().map(|(t, _)| t.as_ref())).collect();
    encoder.ensure_cached(&texts)?;
    let dim = encoder.dim();
    let enc: &TextEncoder = encoder;
    aggregate_intents(examples, dim, |t| enc.cached(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HashMap<&'static str, Vec<f32>> {
        HashMap::from([
            ("a", vec![1.0, 0.0, 2.0]),
            ("b", vec![3.0, 4.0, 0.0]),
            ("c", vec![0.0, 2.0, -2.0]),
            ("d", vec![-1.0, 1.0, 1.0]),
        ])
    }

    fn agg(examples: &[Vec<(&str, bool)>]) -> IntentEmbeddings {
        let t = table();
        aggregate_intents(examples, 3, |s| t.get(s).map(|v| v.as_slice())).unwrap()
    }

    #[test]
    fn embed_hand_computed_means() {
        let out = agg(&[vec![("a", true), ("b", true), ("c", false), ("d", false), ("a", false)]]);
        assert_eq!(out.len(), 1);
        assert_eq!(out.explicit_row(0), &[2.0, 2.0, 1.0]); // (a+b)/2
        let want_l = [0.0, 1.0, 1.0 / 3.0]; // (c+d+a)/3
        for (x, y) in out.latent_row(0).iter().zip(want_l) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        assert_eq!(out.mask, vec![1]);
        assert_eq!(out.explicit_from_latent, vec![0]);
        assert_eq!(out.latent_from_explicit, vec![0]);
    }

    #[test]
    fn embed_fallback_rules() {
        let out = agg(&[
            vec![("c", false), ("d", false)], // no explicit: E_e := E_l
            vec![("b", true)],                // no latent: E_l := E_e
            vec![("a", true), ("c", false)],  // both
        ]);
        assert_eq!(out.explicit_row(0), &[-0.5, 1.5, -0.5]);
        assert_eq!(out.latent_row(0), &[-0.5, 1.5, -0.5]);
        assert_eq!(out.explicit_row(1), &[3.0, 4.0, 0.0]);
        assert_eq!(out.latent_row(1), &[3.0, 4.0, 0.0]);
        assert_eq!(out.explicit_row(2), &[1.0, 0.0, 2.0]);
        assert_eq!(out.latent_row(2), &[0.0, 2.0, -2.0]);
        assert_eq!(out.mask, vec![1, 1, 1]);
        assert_eq!(out.explicit_from_latent, vec![1, 0, 0]);
        assert_eq!(out.latent_from_explicit, vec![0, 1, 0]);
        let s = out.stats();
        assert_eq!((s.examples, s.empty, s.explicit_from_latent, s.latent_from_explicit), (3, 0, 1, 1));
    }

    #[test]
    fn embed_no_intents_gives_zeros_and_mask_zero() {
        let out = agg(&[vec![], vec![("a", true)], vec![]]);
        assert_eq!(out.mask, vec![0, 1, 0]);
        assert_eq!(out.explicit_row(0), &[0.0; 3]);
        assert_eq!(out.latent_row(0), &[0.0; 3]);
        assert_eq!(out.explicit_row(2), &[0.0; 3]);
        assert_eq!(out.latent_row(2), &[0.0; 3]);
        assert_eq!(out.explicit_from_latent, vec![0, 0, 0]);
        assert_eq!(out.latent_from_explicit, vec![0, 1, 0]);
        assert_eq!(out.stats().empty, 2);
        // An unknown intent is an error, not a silent zero.
        let t = table();
        let err =
            aggregate_intents(&[vec![("zzz", true)]], 3, |s| t.get(s).map(|v| v.as_slice())).unwrap_err();
        assert!(format!("{err:#}").contains("zzz"));
    }

    #[test]
    fn embed_safetensors_round_trip() {
        let out = agg(&[vec![("a", true), ("c", false)], vec![], vec![("d", false)], vec![("b", true)]]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/intents.safetensors");
        out.write_safetensors(&path).unwrap();
        let back = IntentEmbeddings::read_safetensors(&path).unwrap();
        assert_eq!(back, out);
        // Overwrite in place; no temporary file left behind.
        let other = agg(&[vec![("a", false)]]);
        other.write_safetensors(&path).unwrap();
        assert_eq!(IntentEmbeddings::read_safetensors(&path).unwrap(), other);
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // The tensors carry the documented names, dtypes and shapes.
        let raw = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(raw["explicit"].dims(), &[1, 3]);
        assert_eq!(raw["explicit"].dtype(), DType::F32);
        assert_eq!(raw["mask"].dtype(), DType::U8);
        assert_eq!(raw["latent_from_explicit"].dims(), &[1]);
        // Zero examples also round-trip.
        let empty = IntentEmbeddings::zeros(0, 3);
        let p0 = dir.path().join("empty.safetensors");
        empty.write_safetensors(&p0).unwrap();
        assert_eq!(IntentEmbeddings::read_safetensors(&p0).unwrap(), empty);
    }

    #[test]
    fn split_embeddings_round_trip_and_refuse_mismatched_rows() {
        let embeddings = agg(&[vec![("a", true)], vec![("d", false)]]);
        let file = SplitEmbeddings { embeddings: embeddings.clone(), index: vec![4, 9], targets: vec![7, 1] };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embeddings_test.safetensors");
        file.write(&path).unwrap();
        assert_eq!(SplitEmbeddings::read(&path).unwrap(), file);
        // Readers of the plain layout still read the file.
        assert_eq!(IntentEmbeddings::read_safetensors(&path).unwrap(), embeddings);
        let short = SplitEmbeddings { embeddings: embeddings.clone(), index: vec![4], targets: vec![7, 1] };
        assert!(short.write(&dir.path().join("short.safetensors")).is_err());
        // A plain embeddings file has no index: the error names the file and the tensor.
        let plain = dir.path().join("plain.safetensors");
        embeddings.write_safetensors(&plain).unwrap();
        let err = format!("{:#}", SplitEmbeddings::read(&plain).unwrap_err());
        assert!(err.contains("plain.safetensors") && err.contains("index"), "{err}");
    }

    #[test]
    fn embed_with_minilm_encodes_distinct_once() {
        let Some(dir) = crate::encoder::tests::minilm_dir_or_skip("embed_with_minilm_encodes_distinct_once")
        else {
            return;
        };
        let mut enc = TextEncoder::load(dir, Default::default()).unwrap();
        let examples: Vec<Vec<(String, bool)>> = vec![
            vec![
                ("camping tent".into(), true),
                ("sleeping bag".into(), false),
                ("hiking boots".into(), false),
            ],
            vec![("sleeping bag".into(), true)],
            vec![],
            vec![("camping tent".into(), false), ("hiking boots".into(), false)],
        ];
        let out = embed_intents(&mut enc, &examples).unwrap();
        assert_eq!(enc.sentences_encoded(), 3);
        assert_eq!(out.dim, 384);
        assert_eq!(out.mask, vec![1, 1, 0, 1]);
        assert_eq!(out.latent_from_explicit, vec![0, 1, 0, 0]);
        assert_eq!(out.explicit_from_latent, vec![0, 0, 0, 1]);
        let v = enc.encode(&["camping tent", "sleeping bag", "hiking boots"]).unwrap();
        for k in 0..384 {
            assert!((out.explicit_row(0)[k] - v[0][k]).abs() < 1e-5);
            assert!((out.latent_row(0)[k] - (v[1][k] + v[2][k]) / 2.0).abs() < 1e-5);
            assert!((out.latent_row(1)[k] - v[1][k]).abs() < 1e-5);
            assert!((out.explicit_row(3)[k] - (v[0][k] + v[2][k]) / 2.0).abs() < 1e-5);
        }
        // A second call reuses the cache.
        embed_intents(&mut enc, &examples[..2]).unwrap();
        assert_eq!(enc.sentences_encoded(), 3 + 3);
    }
}
