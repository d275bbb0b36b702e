//! Alignment losses between the structural intent G (the backbone's session representation) and a
//! projected semantic intent Ē (paper Eq. 10–12 and the variants of its Fig. 4).
//!
//! Every loss takes the rows of the examples that have the intent kind (the caller drops the
//! others, so a masked example contributes nothing) and returns a scalar: a mean over rows.

use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// Which alignment loss ties G to Ē_e and Ē_l (CLI and serde names: the variants in lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// KL(softmax(G) ‖ softmax(Ē)), the paper's Eq. 10–11.
    Kl,
    /// Pairwise contrastive: a logistic loss on cosine similarity that pulls each example's own pair
    /// together and pushes one in-batch negative (the next example's Ē) apart.
    Contrastive,
    /// InfoNCE (van den Oord et al. 2018): cross-entropy of each G against all Ē of the batch.
    Infonce,
    /// DirectAU (Wang et al. KDD 2022): alignment ‖ĝ − ê‖² plus uniformity of ĝ and of ê.
    Directau,
    /// No alignment loss (the paper's "w/o KL").
    None,
}

/// Temperature of the cosine-similarity logits of `contrastive` and `infonce`.
pub const TEMPERATURE: f64 = 0.2;
/// Weight of the uniformity terms of DirectAU (the DirectAU paper's γ = 1).
pub const DIRECTAU_GAMMA: f64 = 1.0;

impl std::fmt::Display for Align {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        f.write_str(self.to_possible_value().expect("no skipped variants").get_name())
    }
}

/// The alignment loss of `g` and `e`, both `[rows, d]`; zero when there are no rows.
pub fn alignment_loss(kind: Align, g: &Tensor, e: &Tensor) -> Result<Tensor> {
    let rows = g.dim(0)?;
    let zero = || Tensor::zeros((), g.dtype(), g.device());
    match kind {
        Align::None => zero(),
        _ if rows == 0 => zero(),
        Align::Kl => kl_loss(g, e),
        // The batch losses need at least one negative.
        Align::Contrastive | Align::Infonce | Align::Directau if rows < 2 => zero(),
        Align::Contrastive => contrastive_loss(g, e),
        Align::Infonce => infonce_loss(g, e),
        Align::Directau => directau_loss(g, e),
    }
}

/// Mean over rows of KL(softmax(g) ‖ softmax(e)) = Σ_k p_k (log p_k − log q_k).
///
/// Computed with log-softmax, which is exact where the authors' `log(p + ε)` needed an epsilon.
pub fn kl_loss(g: &Tensor, e: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(g, D::Minus1)?;
    let log_q = candle_nn::ops::log_softmax(e, D::Minus1)?;
    let p = log_p.exp()?;
    (p * (log_p - log_q)?)?.sum(D::Minus1)?.mean_all()
}

fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

/// Cosine similarities `[rows, rows]` of every ĝ_i with every ê_j.
fn cosine_matrix(g: &Tensor, e: &Tensor) -> Result<Tensor> {
    normalize_rows(g)?.matmul(&normalize_rows(e)?.t()?)
}

/// −log σ(x) = softplus(−x), written stably as max(−x, 0) + log(1 + e^(−|x|)).
fn neg_log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let relu = x.neg()?.relu()?;
    relu + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?
}

fn contrastive_loss(g: &Tensor, e: &Tensor) -> Result<Tensor> {
    let rows = g.dim(0)?;
    let (gn, en) = (normalize_rows(g)?, normalize_rows(e)?);
    let positive = (&gn * &en)?.sum(D::Minus1)?;
    // The negative of row i is row i + 1 (cyclically): a different example of the same batch.
    let shifted: Vec<u32> = (0..rows as u32).map(|i| (i + 1) % rows as u32).collect();
    let en_next = en.index_select(&Tensor::from_vec(shifted, rows, g.device())?, 0)?;
    let negative = (&gn * en_next)?.sum(D::Minus1)?;
    let pull = neg_log_sigmoid(&(positive / TEMPERATURE)?)?;
    let push = neg_log_sigmoid(&(negative / TEMPERATURE)?.neg()?)?;
    (pull + push)?.mean_all()
}

fn infonce_loss(g: &Tensor, e: &Tensor) -> Result<Tensor> {
    let rows = g.dim(0)?;
    let logits = (cosine_matrix(g, e)? / TEMPERATURE)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let eye = Tensor::eye(rows, DType::F32, g.device())?.to_dtype(g.dtype())?;
    (log_probs * eye)?.sum_all()?.neg()? / rows as f64
}

/// log of the mean over pairs i ≠ j of exp(−2‖x̂_i − x̂_j‖²).
fn uniformity(x: &Tensor) -> Result<Tensor> {
    let rows = x.dim(0)?;
    let xn = normalize_rows(x)?;
    // For unit vectors ‖a − b‖² = 2 − 2 a·b.
    let sq_dist = xn.matmul(&xn.t()?)?.affine(-2.0, 2.0)?;
    let kernel = sq_dist.affine(-2.0, 0.0)?.exp()?;
    let eye = Tensor::eye(rows, DType::F32, x.device())?.to_dtype(x.dtype())?;
    let off_diagonal = (kernel.sum_all()? - (kernel * eye)?.sum_all()?)?;
    (off_diagonal / (rows * (rows - 1)) as f64)?.log()
}

fn directau_loss(g: &Tensor, e: &Tensor) -> Result<Tensor> {
    let align = (normalize_rows(g)? - normalize_rows(e)?)?.sqr()?.sum(D::Minus1)?.mean_all()?;
    let uniform = ((uniformity(g)? + uniformity(e)?)? * (DIRECTAU_GAMMA / 2.0))?;
    align + uniform
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(rows: &[&[f32]]) -> Tensor {
        let d = rows[0].len();
        Tensor::from_vec(rows.concat(), (rows.len(), d), &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f64 {
        x.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn kl_matches_a_hand_computed_value() {
        // p = softmax([0, ln 3]) = [1/4, 3/4], q = softmax([0, 0]) = [1/2, 1/2]:
        // KL = 1/4·ln(1/2) + 3/4·ln(3/2) = 0.130812.
        let g = t(&[&[0.0, 3f32.ln()]]);
        let e = t(&[&[0.0, 0.0]]);
        let expected = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        assert!((scalar(kl_loss(&g, &e).unwrap()) - expected).abs() < 1e-6);
        // Batch mean: a second row with identical distributions adds 0.
        let g2 = t(&[&[0.0, 3f32.ln()], &[1.0, 2.0]]);
        let e2 = t(&[&[0.0, 0.0], &[11.0, 12.0]]);
        assert!((scalar(kl_loss(&g2, &e2).unwrap()) - expected / 2.0).abs() < 1e-6);
    }

    #[test]
    fn infonce_and_directau_match_hand_computed_values() {
        // Orthonormal pairs: cos(g_i, e_j) = δ_ij.
        let g = t(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let e = t(&[&[2.0, 0.0], &[0.0, 3.0]]);
        // InfoNCE: −log(e^5 / (e^5 + e^0)) per row.
        let expected = -(5f64.exp() / (5f64.exp() + 1.0)).ln();
        assert!((scalar(alignment_loss(Align::Infonce, &g, &e).unwrap()) - expected).abs() < 1e-5);
        // DirectAU: aligned (0) + uniformity log(exp(−2·2)) for each side, times γ/2 each.
        let expected = -4.0 * DIRECTAU_GAMMA;
        assert!((scalar(alignment_loss(Align::Directau, &g, &e).unwrap()) - expected).abs() < 1e-5);
        // Contrastive: softplus(−5) for the pull, softplus(0 − ...) = softplus(0) = ln 2 for the push.
        let expected = (1.0 + (-5f64).exp()).ln() + 2f64.ln();
        assert!((scalar(alignment_loss(Align::Contrastive, &g, &e).unwrap()) - expected).abs() < 1e-5);
    }

    #[test]
    fn no_rows_or_none_gives_zero() {
        let g = Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap();
        for kind in [Align::Kl, Align::Contrastive, Align::Infonce, Align::Directau, Align::None] {
            assert_eq!(scalar(alignment_loss(kind, &g, &g).unwrap()), 0.0, "{kind}");
        }
        let one = t(&[&[1.0, 2.0]]);
        assert_eq!(scalar(alignment_loss(Align::Infonce, &one, &one).unwrap()), 0.0);
        assert_eq!(scalar(alignment_loss(Align::None, &one, &t(&[&[5.0, -2.0]])).unwrap()), 0.0);
    }

    #[test]
    fn every_loss_is_differentiable_towards_alignment() {
        // One gradient step on g along −∇ lowers each loss.
        let g = candle_core::Var::from_tensor(&t(&[&[0.3, -0.2, 0.9], &[-0.5, 0.4, 0.1], &[0.2, 0.2, -0.7]]))
            .unwrap();
        let e = t(&[&[0.1, 0.5, -0.3], &[0.8, -0.1, 0.2], &[-0.4, 0.3, 0.6]]);
        for kind in [Align::Kl, Align::Contrastive, Align::Infonce, Align::Directau] {
            let before = alignment_loss(kind, g.as_tensor(), &e).unwrap();
            let grad = before.backward().unwrap().remove(g.as_tensor()).expect("gradient reaches g");
            let stepped = (g.as_tensor() - (grad * 0.05).unwrap()).unwrap();
            let after = alignment_loss(kind, &stepped, &e).unwrap();
            assert!(scalar(after) < scalar(before), "{kind}");
        }
    }
}
