//! The contract every registered backbone keeps, checked on tiny configs of each: a new model
//! gets these checks by being added to `ModelKind::ALL`.

use candle_core::{Device, Tensor};
use dmsrec_models::{ops, BuildCtx, DataShape, Mode, ModelConfig, ModelKind, ParamStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const N_ITEMS: usize = 14;
const D: usize = 6;

fn tiny(kind: ModelKind) -> ModelConfig {
    let shape = DataShape { n_items: N_ITEMS, train_max_len: 7, test_max_len: 5 };
    let overrides = serde_json::json!({ "dim": D });
    ModelConfig::with_overrides(kind, &shape, overrides.as_object().unwrap()).unwrap()
}

fn training_sessions() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3, 4, 5], vec![2, 6, 2, 7], vec![8, 9, 10, 11, 12, 13, 14], vec![3, 1, 4, 1, 5]]
}

fn batch() -> Vec<&'static [u32]> {
    vec![&[1, 2, 3], &[4], &[5, 6, 5, 7, 8], &[9, 10], &[14, 13, 2, 2]]
}

fn build(kind: ModelKind, seed: u64, with_data: bool) -> (ParamStore, Box<dyn dmsrec_models::Backbone>) {
    let ps = ParamStore::new(seed, &Device::Cpu);
    let sessions = training_sessions();
    let ctx = BuildCtx { sessions: with_data.then_some(sessions.as_slice()), seed };
    let model = tiny(kind).build(&ps, &ctx).unwrap();
    (ps, model)
}

fn scores(model: &dyn dmsrec_models::Backbone, sessions: &[&[u32]], mode: &mut Mode) -> Vec<Vec<f32>> {
    let enc = model.encode(sessions, mode).unwrap();
    assert_eq!(enc.session.dims(), &[sessions.len(), model.dim()], "{}: session shape", model.kind());
    let s = model.scores(&enc, mode).unwrap();
    assert_eq!(s.dims(), &[sessions.len(), N_ITEMS], "{}: scores shape", model.kind());
    s.to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A scalar training loss: cross-entropy of fixed targets.
fn loss(model: &dyn dmsrec_models::Backbone, mode: &mut Mode) -> Tensor {
    let enc = model.encode(&batch(), mode).unwrap();
    let s = model.scores(&enc, mode).unwrap();
    let targets = Tensor::new(&[3u32, 0, 9, 12, 5], &Device::Cpu).unwrap();
    ops::softmax_cross_entropy(&s, &targets).unwrap()
}

#[test]
fn shapes_and_batch_order_invariance() {
    for kind in ModelKind::ALL {
        let (_, m) = build(kind, 1, true);
        assert_eq!(m.kind(), kind);
        let forward = scores(m.as_ref(), &batch(), &mut Mode::Eval);
        let mut reversed = batch();
        reversed.reverse();
        let mut backward = scores(m.as_ref(), &reversed, &mut Mode::Eval);
        backward.reverse();
        assert!(max_diff(&forward, &backward) < 1e-5, "{kind}: scores depend on the batch order");
        let alone = scores(m.as_ref(), &batch()[2..3], &mut Mode::Eval);
        assert!(max_diff(&forward[2..3], &alone) < 1e-5, "{kind}: scores depend on the other sessions");
        assert!(forward.iter().flatten().all(|v| v.is_finite()), "{kind}: non-finite scores");
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    for kind in ModelKind::ALL {
        let (ps, m) = build(kind, 2, true);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let grads = loss(m.as_ref(), &mut Mode::Train(&mut rng)).backward().unwrap();
        for (name, var) in ps.vars() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{kind}: no gradient for {name}"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{kind}: gradient of {name} is {norm}");
        }
    }
}

#[test]
fn gradient_matches_finite_differences() {
    for kind in ModelKind::ALL {
        let (ps, m) = build(kind, 3, true);
        let grads = loss(m.as_ref(), &mut Mode::Eval).backward().unwrap();
        for (name, var) in ps.vars() {
            let g: Vec<f32> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            // The entry with the largest gradient: finite differences in f32 need a clear signal.
            let i = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
            let eps = 1e-2f32;
            let at = |delta: f32| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                loss(m.as_ref(), &mut Mode::Eval).to_scalar::<f32>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base, var.shape(), &Device::Cpu).unwrap()).unwrap();
            let tol = 2e-3 + 0.03 * g[i].abs();
            assert!((fd - g[i]).abs() < tol, "{kind}: d loss/d {name}[{i}]: fd {fd} vs autograd {}", g[i]);
        }
    }
}

#[test]
fn save_then_load_gives_identical_scores() {
    for kind in ModelKind::ALL {
        let (ps, m) = build(kind, 4, true);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        ps.save_safetensors(&path).unwrap();
        // A fresh store with another seed and no data (buffers are placeholders until loaded).
        let (ps2, m2) = build(kind, 99, false);
        ps2.load_safetensors(&path).unwrap();
        let a = scores(m.as_ref(), &batch(), &mut Mode::Eval);
        let b = scores(m2.as_ref(), &batch(), &mut Mode::Eval);
        assert_eq!(a, b, "{kind}: a loaded checkpoint scores differently");
    }
}

#[test]
fn training_randomness_comes_from_the_seeded_stream() {
    for kind in ModelKind::ALL {
        let (_, m) = build(kind, 5, true);
        let run = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            scores(m.as_ref(), &batch(), &mut Mode::Train(&mut rng))
        };
        assert_eq!(run(1), run(1), "{kind}: training mode does not repeat for the same seed");
        let differs = max_diff(&run(1), &run(2)) > 1e-6;
        assert_eq!(differs, tiny(kind).uses_dropout(), "{kind}: dropout and seeds disagree");
    }
}

#[test]
fn backbones_are_send_and_sync() {
    fn shared<T: Send + Sync + ?Sized>(_: &T) {}
    for kind in ModelKind::ALL {
        let (_, m) = build(kind, 6, true);
        shared(m.as_ref());
    }
}
