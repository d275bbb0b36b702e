//! LLM-DMsRec's phase III (paper §4.3–4.4), written once for every backbone.
//!
//! * Ē_e = W_p·dropout(E_e) + b and Ē_l = W_p·dropout(E_l) + b, one shared projection (the paper's
//!   w, b) from the text encoder's width to the backbone's d.
//! * S = W[readout, Ē_e, Ē_l] (Eq. 9). The backbone's own final layer already is W[readout], so the
//!   wider layer is that layer plus two bias-free d×d blocks: S = project(readout) + W_e·Ē_e + W_l·Ē_l.
//!   For SR-GNN this is exactly the authors' one linear layer over [s_global, h_last, Ē_e, Ē_l].
//! * G = project(readout), the structural intent; L_info = α·align(G, Ē_e) + β·align(G, Ē_l) over
//!   the examples that have that kind of intent (Eq. 10–12); the trainer adds σ·L_info to L_r.

use crate::align::{alignment_loss, Align};
use crate::trainer::{dropout, Recommender, Split};
use anyhow::{bail, ensure, Result};
use candle_core::{Device, Tensor};
use dmsrec_models::{Backbone, Dense, ParamStore};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which intent kinds are fused (Table 3's "w/o Latent-Intent" is `Explicit`, "w/o
/// Explicit-Intent" is `Latent`, "w/o Semantic" is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentUse {
    Both,
    Explicit,
    Latent,
    None,
}

impl IntentUse {
    fn explicit(self) -> bool {
        matches!(self, IntentUse::Both | IntentUse::Explicit)
    }
    fn latent(self) -> bool {
        matches!(self, IntentUse::Both | IntentUse::Latent)
    }
}

impl std::str::FromStr for IntentUse {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "both" => Ok(IntentUse::Both),
            "explicit" => Ok(IntentUse::Explicit),
            "latent" => Ok(IntentUse::Latent),
            "none" => Ok(IntentUse::None),
            _ => Err(format!("unknown intent use {s:?} (both|explicit|latent|none)")),
        }
    }
}

/// Hyper-parameters of the fusion and alignment; recorded with every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointConfig {
    pub intents: IntentUse,
    pub align: Align,
    /// Weight of the explicit alignment term L_e.
    pub alpha: f64,
    /// Weight of the latent alignment term L_l.
    pub beta: f64,
    /// Weight of L_info in the total loss.
    pub sigma: f64,
    /// Dropout on E_e, E_l before the projection (the authors: 0.2 with SR-GNN, 0.6 with GCE-GNN).
    pub intent_dropout: f64,
    /// Width of the text encoder's embeddings.
    pub intent_dim: usize,
}

impl Default for JointConfig {
    fn default() -> Self {
        Self {
            intents: IntentUse::Both,
            align: Align::Kl,
            alpha: 1.0,
            beta: 1.0,
            sigma: 0.2,
            intent_dropout: 0.2,
            intent_dim: 384,
        }
    }
}

/// One example's intent embeddings as the intent stage stores them.
pub struct IntentRow<'a> {
    pub explicit: &'a [f32],
    pub latent: &'a [f32],
    /// The example had an explicit intent of its own (E_e is not a copy of E_l).
    pub has_explicit: bool,
    /// The example had a latent intent of its own.
    pub has_latent: bool,
}

/// E_e, E_l of every example of one split, as used under one [`IntentUse`], with alignment masks.
#[derive(Debug, Clone)]
pub struct IntentFeatures {
    explicit: Tensor,
    latent: Tensor,
    explicit_mask: Vec<bool>,
    latent_mask: Vec<bool>,
}

impl IntentFeatures {
    /// Features of `n` examples; `rows` gives `(example index, row)` for the examples that have
    /// intents, every other example gets zero vectors and no alignment loss.
    ///
    /// With both kinds fused, an example missing one kind keeps the stage's fallback (the other
    /// kind's mean, as the authors did) and is aligned on both. With one kind only, an example
    /// without an intent of that kind gets zeros and no alignment.
    pub fn new<'a>(
        n: usize,
        dim: usize,
        usage: IntentUse,
        rows: impl IntoIterator<Item = (usize, IntentRow<'a>)>,
        device: &Device,
    ) -> Result<Self> {
        let mut explicit = vec![0f32; n * dim];
        let mut latent = vec![0f32; n * dim];
        let mut explicit_mask = vec![false; n];
        let mut latent_mask = vec![false; n];
        for (i, row) in rows {
            ensure!(i < n, "intent row for example {i}, but the split has {n} examples");
            ensure!(
                row.explicit.len() == dim && row.latent.len() == dim,
                "intent embeddings of example {i} are not {dim} wide"
            );
            let any = row.has_explicit || row.has_latent;
            let (use_e, use_l) = match usage {
                IntentUse::Both => (any, any),
                IntentUse::Explicit => (row.has_explicit, false),
                IntentUse::Latent => (false, row.has_latent),
                IntentUse::None => (false, false),
            };
            if use_e {
                explicit[i * dim..(i + 1) * dim].copy_from_slice(row.explicit);
                explicit_mask[i] = true;
            }
            if use_l {
                latent[i * dim..(i + 1) * dim].copy_from_slice(row.latent);
                latent_mask[i] = true;
            }
        }
        Ok(Self {
            explicit: Tensor::from_vec(explicit, (n, dim), device)?,
            latent: Tensor::from_vec(latent, (n, dim), device)?,
            explicit_mask,
            latent_mask,
        })
    }

    /// Share of examples aligned on (explicit, latent).
    pub fn coverage(&self) -> (f64, f64) {
        let share = |m: &[bool]| m.iter().filter(|&&b| b).count() as f64 / m.len().max(1) as f64;
        (share(&self.explicit_mask), share(&self.latent_mask))
    }
}

/// A backbone with LLM intents fused into its session representation.
pub struct IntentFusion<'a> {
    backbone: &'a dyn Backbone,
    cfg: JointConfig,
    projection: Dense,
    fuse_explicit: Option<Dense>,
    fuse_latent: Option<Dense>,
    train: IntentFeatures,
    test: IntentFeatures,
}

impl<'a> IntentFusion<'a> {
    /// Creates the fusion parameters in `ps` (after the backbone's, so a plain run with the same
    /// seed starts from the same backbone weights).
    pub fn new(
        backbone: &'a dyn Backbone,
        cfg: JointConfig,
        ps: &ParamStore,
        train: IntentFeatures,
        test: IntentFeatures,
    ) -> Result<Self> {
        if cfg.intents == IntentUse::None {
            bail!("intents = none is the plain backbone: train it without intent features");
        }
        let d = backbone.dim();
        let bound = 1.0 / (d as f64).sqrt();
        let ps = ps.pp("intent");
        let projection = Dense::new(&ps, cfg.intent_dim, d, true, "projection", bound)?;
        let block = |on: bool, name: &str| -> Result<Option<Dense>> {
            Ok(if on { Some(Dense::new(&ps, d, d, false, name, bound)?) } else { None })
        };
        let fuse_explicit = block(cfg.intents.explicit(), "fuse_explicit")?;
        let fuse_latent = block(cfg.intents.latent(), "fuse_latent")?;
        Ok(Self { backbone, cfg, projection, fuse_explicit, fuse_latent, train, test })
    }

    fn features(&self, split: Split) -> &IntentFeatures {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// G's alignment loss with one projected intent kind, over the examples in `mask`.
    fn aligned(&self, g: &Tensor, e_bar: &Tensor, mask: &[bool], rows: &[usize]) -> Result<Tensor> {
        let keep: Vec<u32> =
            rows.iter().enumerate().filter(|(_, &r)| mask[r]).map(|(i, _)| i as u32).collect();
        let n = keep.len();
        let keep = Tensor::from_vec(keep, n, g.device())?;
        Ok(alignment_loss(self.cfg.align, &g.index_select(&keep, 0)?, &e_bar.index_select(&keep, 0)?)?)
    }
}

impl Recommender for IntentFusion<'_> {
    fn backbone(&self) -> &dyn Backbone {
        self.backbone
    }

    fn represent(
        &self,
        sessions: &[&[u32]],
        split: Split,
        rows: &[usize],
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let training = rng.is_some();
        let g = self.backbone.session(sessions, training)?;
        let features = self.features(split);
        let index = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect(), rows.len(), g.device())?;
        let mut session = g.clone();
        let mut info: Option<Tensor> = None;
        let kinds = [
            (&self.fuse_explicit, &features.explicit, &features.explicit_mask, self.cfg.alpha),
            (&self.fuse_latent, &features.latent, &features.latent_mask, self.cfg.beta),
        ];
        for (fuse, embeddings, mask, weight) in kinds {
            let Some(fuse) = fuse else { continue };
            let mut e = embeddings.index_select(&index, 0)?;
            if let Some(rng) = rng.as_deref_mut() {
                e = dropout(&e, self.cfg.intent_dropout, rng)?;
            }
            let e_bar = self.projection.forward(&e)?;
            session = (session + fuse.forward(&e_bar)?)?;
            if training && self.cfg.align != Align::None && self.cfg.sigma * weight != 0.0 {
                let term = (self.aligned(&g, &e_bar, mask, rows)? * weight)?;
                info = Some(match info {
                    Some(total) => (total + term)?,
                    None => term,
                });
            }
        }
        let aux = info.map(|l| l * self.cfg.sigma).transpose()?;
        Ok((session, aux))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmsrec_models::{ModelConfig, SrGnnConfig};
    use rand::SeedableRng;

    const N_ITEMS: usize = 12;
    const D: usize = 8;
    const E: usize = 6;

    fn srgnn(ps: &ParamStore) -> Box<dyn Backbone> {
        ModelConfig::Srgnn(SrGnnConfig { n_items: N_ITEMS, dim: D, step: 1, nonhybrid: false })
            .build(ps)
            .unwrap()
    }

    /// Four examples; example 3 has no intents, example 1 only latent, example 2 only explicit.
    fn features(usage: IntentUse) -> IntentFeatures {
        let vec = |seed: f32| (0..E).map(|k| ((k as f32 + 1.0) * seed).sin()).collect::<Vec<f32>>();
        let (e0, l0, l1, e2) = (vec(0.7), vec(1.3), vec(2.1), vec(-0.4));
        let rows = vec![
            (0, IntentRow { explicit: &e0, latent: &l0, has_explicit: true, has_latent: true }),
            (1, IntentRow { explicit: &l1, latent: &l1, has_explicit: false, has_latent: true }),
            (2, IntentRow { explicit: &e2, latent: &e2, has_explicit: true, has_latent: false }),
        ];
        IntentFeatures::new(4, E, usage, rows, &Device::Cpu).unwrap()
    }

    fn sessions() -> Vec<&'static [u32]> {
        vec![&[1, 2, 3], &[4, 5, 4], &[6], &[7, 8, 9, 10]]
    }

    fn cfg(align: Align, sigma: f64) -> JointConfig {
        JointConfig { align, sigma, intent_dim: E, intent_dropout: 0.0, ..Default::default() }
    }

    #[test]
    fn masks_follow_the_intent_use() {
        assert_eq!(features(IntentUse::Both).explicit_mask, [true, true, true, false]);
        assert_eq!(features(IntentUse::Both).latent_mask, [true, true, true, false]);
        assert_eq!(features(IntentUse::Explicit).explicit_mask, [true, false, true, false]);
        assert_eq!(features(IntentUse::Explicit).latent_mask, [false; 4]);
        assert_eq!(features(IntentUse::Latent).latent_mask, [true, true, false, false]);
        let f = features(IntentUse::Explicit);
        // A masked-out example's features are zeros.
        let row1: Vec<f32> = f.explicit.get(1).unwrap().to_vec1().unwrap();
        assert!(row1.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn zeroed_intent_columns_and_sigma_zero_give_the_plain_backbone() {
        let plain_ps = ParamStore::new(3, &Device::Cpu);
        let plain = srgnn(&plain_ps);
        let ps = ParamStore::new(3, &Device::Cpu);
        let backbone = srgnn(&ps);
        let joint = IntentFusion::new(
            backbone.as_ref(),
            cfg(Align::Kl, 0.0),
            &ps,
            features(IntentUse::Both),
            features(IntentUse::Both),
        )
        .unwrap();
        for (name, var) in ps.vars() {
            if name.starts_with("intent.fuse_") {
                var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            }
        }
        let rows = [0, 1, 2, 3];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (s, aux) = joint.represent(&sessions(), Split::Train, &rows, Some(&mut rng)).unwrap();
        assert!(aux.is_none(), "σ = 0 adds no loss");
        let expected = plain.scores(&plain.session(&sessions(), false).unwrap()).unwrap();
        let got = joint.backbone().scores(&s).unwrap();
        let diff = (expected - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "scores differ by {diff}");
    }

    #[test]
    fn masks_remove_the_alignment_loss() {
        let ps = ParamStore::new(5, &Device::Cpu);
        let backbone = srgnn(&ps);
        let joint = IntentFusion::new(
            backbone.as_ref(),
            cfg(Align::Kl, 1.0),
            &ps,
            features(IntentUse::Explicit),
            features(IntentUse::Explicit),
        )
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let loss = |rows: &[usize], rng: &mut ChaCha8Rng| -> f32 {
            let s: Vec<&[u32]> = rows.iter().map(|&r| sessions()[r]).collect();
            let (_, aux) = joint.represent(&s, Split::Train, rows, Some(rng)).unwrap();
            aux.unwrap().to_scalar::<f32>().unwrap()
        };
        // Examples 1 (no explicit intent) and 3 (none) add nothing: the mean over {0, 2} is kept.
        let kept = loss(&[0, 2], &mut rng);
        assert!(kept > 0.0);
        assert!((loss(&[0, 1, 2, 3], &mut rng) - kept).abs() < 1e-6);
        assert_eq!(loss(&[1, 3], &mut rng), 0.0);
        // At evaluation there is no auxiliary loss.
        let (_, aux) = joint.represent(&sessions(), Split::Test, &[0, 1, 2, 3], None).unwrap();
        assert!(aux.is_none());
    }

    #[test]
    fn gradients_reach_the_shared_projection() {
        for align in [Align::Kl, Align::None] {
            let ps = ParamStore::new(7, &Device::Cpu);
            let backbone = srgnn(&ps);
            let joint = IntentFusion::new(
                backbone.as_ref(),
                cfg(align, 0.5),
                &ps,
                features(IntentUse::Both),
                features(IntentUse::Both),
            )
            .unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let (s, aux) = joint.represent(&sessions(), Split::Train, &[0, 1, 2, 3], Some(&mut rng)).unwrap();
            let mut loss = joint.backbone().scores(&s).unwrap().sqr().unwrap().mean_all().unwrap();
            if let Some(aux) = aux {
                loss = (loss + aux).unwrap();
            }
            let grads = loss.backward().unwrap();
            for name in ["intent.projection.weight", "intent.projection.bias", "intent.fuse_latent.weight"] {
                let var = ps.vars().into_iter().find(|(n, _)| n == name).expect(name).1;
                let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
                let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(norm > 0.0, "{name} gets a zero gradient ({align})");
            }
        }
    }
}
