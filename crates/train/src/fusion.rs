//! LLM-DMsRec's phase III (paper §4.3–4.4), written once for every backbone.
//!
//! * Ē_e = W_p·dropout(E_e) + b and Ē_l = W_p·dropout(E_l) + b, one shared projection (the paper's
//!   w, b) from the text encoder's width to the backbone's d.
//! * S = W[G, Ē_e, Ē_l] (Eq. 9). The backbone's own final layer already gives G, so the wider layer
//!   is G plus two bias-free d×d blocks: S = G + W_e·Ē_e + W_l·Ē_l. For SR-GNN and TAGNN this is
//!   exactly the authors' one linear layer over [s_global, h_last, Ē_e, Ē_l]. S replaces G in
//!   `Encoded::session`; the backbone scores it (TAGNN adds its target attention to it).
//! * L_info = α·align(G, Ē_e) + β·align(G, Ē_l) over the examples that have that kind of intent
//!   (Eq. 10–12); the trainer adds σ·L_info to L_r.
//!
//! Two recipes ([`FusionRecipe`]): `paper` (the default) trains everything and aligns the
//! backbone's G; `authors` is what the authors' code does per backbone (`shared/notes/backbones.md`
//! §7): G is SR-GNN's/TAGNN's attention vector s_g (GCE-GNN: S), their intent dropout and KL
//! weight λ (= σ, with α = β = 1), and the intent projection frozen at its random initial value
//! because it is created after their optimizer — for GCE-GNN the whole fusion layer, including a
//! random d×d block on S, is frozen too. SHARE's copy creates them before the optimizer, so
//! they train; its G is the transformer output before the final LayerNorm (their `ht1`).
//!
//! The intents travel with each batch ([`IntentBatch`]); the fusion holds only its parameters.

use crate::align::{alignment_loss, Align};
use anyhow::{bail, ensure, Result};
use candle_core::{Device, Tensor};
use dmsrec_models::{Backbone, Dense, Encoded, Mode, ModelKind, ParamStore};
use serde::{Deserialize, Serialize};

/// Which intent kinds are fused (Table 3's "w/o Latent-Intent" is `Explicit`, "w/o
/// Explicit-Intent" is `Latent`, "w/o Semantic" is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
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

impl std::fmt::Display for IntentUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        f.write_str(self.to_possible_value().expect("no skipped variants").get_name())
    }
}

/// The paper's description of the fusion, or what the authors' code does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FusionRecipe {
    #[default]
    Paper,
    Authors,
}

/// What the authors' code does with the intents of one backbone (`backbones.md` §7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthorsSettings {
    /// Dropout on E_e, E_l before the projection.
    pub intent_dropout: f64,
    /// Their KL weight λ (used as σ, with α = β = 1).
    pub lambda: f64,
    /// Whether their intent projection trains: only where it is created before the optimizer
    /// (SHARE); elsewhere it stays at its random initial value.
    pub projection_trained: bool,
    /// Whether their whole fusion layer is frozen (GCE-GNN, including a d×d block on S).
    pub fusion_frozen: bool,
}

/// The authors' settings for one backbone.
pub fn authors_settings(kind: ModelKind) -> AuthorsSettings {
    let (intent_dropout, lambda, projection_trained, fusion_frozen) = match kind {
        ModelKind::Srgnn => (0.2, 0.0, false, false),
        ModelKind::Tagnn => (0.2, 0.3, false, false),
        ModelKind::Gcegnn => (0.6, 0.7, false, true),
        ModelKind::Share => (0.3, 0.2, true, false),
    };
    AuthorsSettings { intent_dropout, lambda, projection_trained, fusion_frozen }
}

/// Hyper-parameters of the fusion and alignment; recorded with every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionConfig {
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
    #[serde(default)]
    pub recipe: FusionRecipe,
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            intents: IntentUse::Both,
            align: Align::Kl,
            alpha: 1.0,
            beta: 1.0,
            sigma: 0.2,
            intent_dropout: 0.2,
            intent_dim: 384,
            recipe: FusionRecipe::Paper,
        }
    }
}

impl FusionConfig {
    /// The authors' recipe for `kind`: their intent dropout, KL alignment weighted by their λ.
    pub fn authors(kind: ModelKind, intents: IntentUse, intent_dim: usize) -> Self {
        let authors = authors_settings(kind);
        Self {
            intents,
            align: Align::Kl,
            alpha: 1.0,
            beta: 1.0,
            sigma: authors.lambda,
            intent_dropout: authors.intent_dropout,
            intent_dim,
            recipe: FusionRecipe::Authors,
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

/// The intents of one batch's examples, in batch order.
#[derive(Debug, Clone)]
pub struct IntentBatch {
    pub explicit: Tensor,
    pub latent: Tensor,
    pub explicit_mask: Vec<bool>,
    pub latent_mask: Vec<bool>,
}

/// Intent features of the training and test examples of a dataset.
#[derive(Debug, Clone)]
pub struct SplitIntents {
    pub train: IntentFeatures,
    pub test: IntentFeatures,
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

    /// The intents of the examples `rows`, on `device`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> Result<IntentBatch> {
        let index =
            Tensor::from_vec(rows.iter().map(|&r| r as u32).collect(), rows.len(), self.explicit.device())?;
        Ok(IntentBatch {
            explicit: self.explicit.index_select(&index, 0)?.to_device(device)?,
            latent: self.latent.index_select(&index, 0)?.to_device(device)?,
            explicit_mask: rows.iter().map(|&r| self.explicit_mask[r]).collect(),
            latent_mask: rows.iter().map(|&r| self.latent_mask[r]).collect(),
        })
    }
}

impl IntentBatch {
    /// No intents for any of `n` examples (a request without intents, as an intent-less
    /// training example: zero vectors).
    pub fn empty(n: usize, dim: usize, device: &Device) -> Result<Self> {
        let zeros = Tensor::zeros((n, dim), candle_core::DType::F32, device)?;
        Ok(Self {
            explicit: zeros.clone(),
            latent: zeros,
            explicit_mask: vec![false; n],
            latent_mask: vec![false; n],
        })
    }
}

/// A backbone with LLM intents fused into its session representation.
pub struct IntentFusion {
    backbone: Box<dyn Backbone>,
    cfg: FusionConfig,
    projection: Dense,
    fuse_explicit: Option<Dense>,
    fuse_latent: Option<Dense>,
    /// The authors' GCE-GNN fusion layer's (frozen, random) block on S.
    fuse_session: Option<Dense>,
}

impl IntentFusion {
    /// Creates the fusion parameters in `ps` (after the backbone's, so a plain run with the same
    /// seed starts from the same backbone weights).
    pub fn new(backbone: Box<dyn Backbone>, cfg: FusionConfig, ps: &ParamStore) -> Result<Self> {
        if cfg.intents == IntentUse::None {
            bail!("intents = none is the plain backbone: train it without intent features");
        }
        let d = backbone.dim();
        let bound = 1.0 / (d as f64).sqrt();
        let ps = ps.pp("intent");
        let authors = cfg.recipe == FusionRecipe::Authors;
        let settings = authors_settings(backbone.kind());
        let fusion_frozen = authors && settings.fusion_frozen;
        let projection_ps = if authors && !settings.projection_trained { ps.frozen() } else { ps.clone() };
        let fusion_ps = if fusion_frozen { ps.frozen() } else { ps.clone() };
        let projection = Dense::new(&projection_ps, cfg.intent_dim, d, true, "projection", bound)?;
        let block = |on: bool, name: &str| -> Result<Option<Dense>> {
            Ok(if on { Some(Dense::new(&fusion_ps, d, d, false, name, bound)?) } else { None })
        };
        let fuse_session = block(fusion_frozen, "fuse_session")?;
        let fuse_explicit = block(cfg.intents.explicit(), "fuse_explicit")?;
        let fuse_latent = block(cfg.intents.latent(), "fuse_latent")?;
        Ok(Self { backbone, cfg, projection, fuse_explicit, fuse_latent, fuse_session })
    }
}

/// G's alignment loss with one projected intent kind, over the examples in `mask`.
fn aligned(align: Align, g: &Tensor, e_bar: &Tensor, mask: &[bool]) -> Result<Tensor> {
    let keep: Vec<u32> = mask.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| i as u32).collect();
    let n = keep.len();
    let keep = Tensor::from_vec(keep, n, g.device())?;
    Ok(alignment_loss(align, &g.index_select(&keep, 0)?, &e_bar.index_select(&keep, 0)?)?)
}

/// What the trainer fits and evaluates: a backbone alone ([`Plain`]) or a backbone with intents
/// ([`IntentFusion`]).
pub trait Recommender: Send + Sync {
    fn backbone(&self) -> &dyn Backbone;
    /// Encodes a batch (its sessions and, for a fusion, its intents) and returns the auxiliary
    /// loss that training adds to the recommendation loss.
    fn encode(
        &self,
        sessions: &[&[u32]],
        intents: Option<&IntentBatch>,
        mode: &mut Mode,
    ) -> Result<(Encoded, Option<Tensor>)>;
    fn backbone_device(&self) -> Device {
        self.backbone().device().clone()
    }
}

/// A backbone trained on session ids alone.
pub struct Plain(pub Box<dyn Backbone>);

impl Recommender for Plain {
    fn backbone(&self) -> &dyn Backbone {
        self.0.as_ref()
    }

    fn encode(
        &self,
        sessions: &[&[u32]],
        _intents: Option<&IntentBatch>,
        mode: &mut Mode,
    ) -> Result<(Encoded, Option<Tensor>)> {
        Ok((self.0.encode(sessions, mode)?, None))
    }
}

impl Recommender for IntentFusion {
    fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    fn encode(
        &self,
        sessions: &[&[u32]],
        intents: Option<&IntentBatch>,
        mode: &mut Mode,
    ) -> Result<(Encoded, Option<Tensor>)> {
        let mut enc = self.backbone.encode(sessions, mode)?;
        let empty;
        let intents = match intents {
            Some(i) => i,
            None => {
                empty = IntentBatch::empty(sessions.len(), self.cfg.intent_dim, enc.session.device())?;
                &empty
            }
        };
        let g = match self.cfg.recipe {
            FusionRecipe::Paper => enc.session.clone(),
            FusionRecipe::Authors => enc.authors_alignment().clone(),
        };
        let mut session = match &self.fuse_session {
            Some(w) => w.forward(&enc.session)?,
            None => enc.session.clone(),
        };
        let training = mode.is_train();
        let mut info: Option<Tensor> = None;
        let kinds = [
            (&self.fuse_explicit, &intents.explicit, &intents.explicit_mask, self.cfg.alpha),
            (&self.fuse_latent, &intents.latent, &intents.latent_mask, self.cfg.beta),
        ];
        for (fuse, embeddings, mask, weight) in kinds {
            let Some(fuse) = fuse else { continue };
            let e = mode.dropout(embeddings, self.cfg.intent_dropout)?;
            let e_bar = self.projection.forward(&e)?;
            session = (session + fuse.forward(&e_bar)?)?;
            if training && self.cfg.align != Align::None && self.cfg.sigma * weight != 0.0 {
                let term = (aligned(self.cfg.align, &g, &e_bar, mask)? * weight)?;
                info = Some(match info {
                    Some(total) => (total + term)?,
                    None => term,
                });
            }
        }
        let aux = info.map(|l| l * self.cfg.sigma).transpose()?;
        enc.session = session;
        Ok((enc, aux))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmsrec_models::{BuildCtx, ModelConfig, SrGnnConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const N_ITEMS: usize = 12;
    const D: usize = 8;
    const E: usize = 6;

    fn srgnn(ps: &ParamStore) -> Box<dyn Backbone> {
        ModelConfig::Srgnn(SrGnnConfig { n_items: N_ITEMS, dim: D, step: 1, nonhybrid: false })
            .build(ps, &BuildCtx::default())
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

    fn cfg(align: Align, sigma: f64) -> FusionConfig {
        FusionConfig { align, sigma, intent_dim: E, intent_dropout: 0.0, ..Default::default() }
    }

    fn scores_of(r: &dyn Recommender, batch: Option<&IntentBatch>) -> Tensor {
        let (enc, _) = r.encode(&sessions(), batch, &mut Mode::Eval).unwrap();
        r.backbone().scores(&enc, &mut Mode::Eval).unwrap()
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
        let b = f.batch(&[2, 1], &Device::Cpu).unwrap();
        assert_eq!(b.explicit_mask, [true, false]);
    }

    #[test]
    fn zeroed_intent_columns_and_sigma_zero_give_the_plain_backbone() {
        let plain = Plain(srgnn(&ParamStore::new(3, &Device::Cpu)));
        let ps = ParamStore::new(3, &Device::Cpu);
        let joint = IntentFusion::new(srgnn(&ps), cfg(Align::Kl, 0.0), &ps).unwrap();
        for (name, var) in ps.vars() {
            if name.starts_with("intent.fuse_") {
                var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            }
        }
        let batch = features(IntentUse::Both).batch(&[0, 1, 2, 3], &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (_, aux) = joint.encode(&sessions(), Some(&batch), &mut Mode::Train(&mut rng)).unwrap();
        assert!(aux.is_none(), "σ = 0 adds no loss");
        let diff = (scores_of(&plain, None) - scores_of(&joint, Some(&batch)))
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "scores differ by {diff}");
    }

    #[test]
    fn masks_remove_the_alignment_loss() {
        let ps = ParamStore::new(5, &Device::Cpu);
        let joint = IntentFusion::new(srgnn(&ps), cfg(Align::Kl, 1.0), &ps).unwrap();
        let f = features(IntentUse::Explicit);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut loss = |rows: &[usize]| -> f32 {
            let s: Vec<&[u32]> = rows.iter().map(|&r| sessions()[r]).collect();
            let b = f.batch(rows, &Device::Cpu).unwrap();
            let (_, aux) = joint.encode(&s, Some(&b), &mut Mode::Train(&mut rng)).unwrap();
            aux.unwrap().to_scalar::<f32>().unwrap()
        };
        // Examples 1 (no explicit intent) and 3 (none) add nothing: the mean over {0, 2} is kept.
        let kept = loss(&[0, 2]);
        assert!(kept > 0.0);
        assert!((loss(&[0, 1, 2, 3]) - kept).abs() < 1e-6);
        assert_eq!(loss(&[1, 3]), 0.0);
        // At evaluation there is no auxiliary loss.
        let b = f.batch(&[0, 1, 2, 3], &Device::Cpu).unwrap();
        let (_, aux) = joint.encode(&sessions(), Some(&b), &mut Mode::Eval).unwrap();
        assert!(aux.is_none());
    }

    #[test]
    fn gradients_reach_the_shared_projection() {
        for align in [Align::Kl, Align::None] {
            let ps = ParamStore::new(7, &Device::Cpu);
            let joint = IntentFusion::new(srgnn(&ps), cfg(align, 0.5), &ps).unwrap();
            let b = features(IntentUse::Both).batch(&[0, 1, 2, 3], &Device::Cpu).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let mut mode = Mode::Train(&mut rng);
            let (enc, aux) = joint.encode(&sessions(), Some(&b), &mut mode).unwrap();
            let mut loss =
                joint.backbone().scores(&enc, &mut mode).unwrap().sqr().unwrap().mean_all().unwrap();
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

    #[test]
    fn the_authors_recipe_freezes_what_their_code_never_trains() {
        let ps = ParamStore::new(7, &Device::Cpu);
        let cfg = FusionConfig::authors(ModelKind::Srgnn, IntentUse::Both, E);
        assert_eq!((cfg.intent_dropout, cfg.sigma), (0.2, 0.0));
        let _ = IntentFusion::new(srgnn(&ps), cfg, &ps).unwrap();
        let trainable: Vec<String> = ps.vars().into_iter().map(|(n, _)| n).collect();
        assert!(!trainable.iter().any(|n| n.starts_with("intent.projection")), "projection is frozen");
        assert!(trainable.iter().any(|n| n == "intent.fuse_explicit.weight"), "SR-GNN's fusion layer trains");
        let stored = ps.snapshot().unwrap();
        assert!(stored.contains_key("intent.projection.weight"), "frozen values are saved");
        assert!(!stored.contains_key("intent.fuse_session.weight"));
        let gce = authors_settings(ModelKind::Gcegnn);
        assert_eq!((gce.intent_dropout, gce.lambda, gce.fusion_frozen), (0.6, 0.7, true));
        assert!(
            authors_settings(ModelKind::Share).projection_trained,
            "SHARE creates it before the optimizer"
        );
    }
}
