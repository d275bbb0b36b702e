//! Parameters: a seeded store, and the dense layer every backbone uses.
//!
//! candle cannot seed its CPU generator, so parameters are drawn here from a ChaCha stream in
//! creation order: the same seed gives the same model on every machine.

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct StoreInner {
    vars: Vec<(String, Var)>,
    /// Non-trainable tensors (e.g. GCE-GNN's sampled global-graph neighbours): saved and restored
    /// with the weights, so a checkpoint is self-contained, but never optimized.
    buffers: Vec<(String, Var)>,
    rng: ChaCha8Rng,
}

/// Named trainable variables, created with seeded initial values.
#[derive(Debug, Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<StoreInner>>,
    prefix: String,
    device: Device,
    /// Values created through this view are buffers: stored, never optimized.
    frozen: bool,
}

impl ParamStore {
    pub fn new(seed: u64, device: &Device) -> Self {
        let inner =
            StoreInner { vars: Vec::new(), buffers: Vec::new(), rng: ChaCha8Rng::seed_from_u64(seed) };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            prefix: String::new(),
            device: device.clone(),
            frozen: false,
        }
    }

    /// A view whose names are prefixed with `name.`.
    pub fn pp(&self, name: &str) -> Self {
        let prefix =
            if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Self { inner: self.inner.clone(), prefix, device: self.device.clone(), frozen: self.frozen }
    }

    /// A view whose new values are frozen (buffers), drawn from the same seeded stream.
    pub fn frozen(&self) -> Self {
        Self { frozen: true, ..self.clone() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// A new variable drawn from uniform(−bound, bound) (a buffer in a [`ParamStore::frozen`] view).
    pub fn uniform(&self, shape: &[usize], name: &str, bound: f64) -> Result<Tensor> {
        let full = self.full_name(name);
        let mut inner = self.inner.lock().expect("parameter store lock");
        inner.refuse_duplicate(&full)?;
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| inner.rng.gen_range(-bound..=bound) as f32).collect();
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, &self.device)?)?;
        let t = var.as_tensor().clone();
        if self.frozen {
            inner.buffers.push((full, var));
        } else {
            inner.vars.push((full, var));
        }
        Ok(t)
    }

    /// A non-trainable tensor stored with the weights (any dtype). Its value can be replaced by
    /// [`ParamStore::restore`]; the returned tensor shares that storage.
    pub fn buffer(&self, name: &str, value: Tensor) -> Result<Tensor> {
        let full = self.full_name(name);
        let mut inner = self.inner.lock().expect("parameter store lock");
        inner.refuse_duplicate(&full)?;
        let var = Var::from_tensor(&value.to_device(&self.device)?)?;
        let t = var.as_tensor().clone();
        inner.buffers.push((full, var));
        Ok(t)
    }

    /// All trainable variables, in creation order (buffers excluded).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.inner.lock().expect("parameter store lock").vars.clone()
    }

    /// Trainable variables and buffers: everything a checkpoint holds.
    fn stored(&self) -> Vec<(String, Var)> {
        let inner = self.inner.lock().expect("parameter store lock");
        inner.vars.iter().chain(&inner.buffers).cloned().collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Current values of variables and buffers by name (a copy that later steps do not change).
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.stored().into_iter().map(|(n, v)| Ok((n, v.as_tensor().copy()?))).collect()
    }

    /// Sets every variable and buffer from `values`; a missing name or a shape mismatch is an error.
    pub fn restore(&self, values: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.stored() {
            let v = values
                .get(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no value for parameter {name}")))?;
            if v.dims() != var.dims() {
                candle_core::bail!("parameter {name}: shape {:?} expected, found {:?}", var.dims(), v.dims());
            }
            var.set(&v.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Writes all variables as safetensors (the caller makes the write atomic).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.snapshot()?, path)
    }

    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        let values = candle_core::safetensors::load(path, &self.device)?;
        self.restore(&values)
    }
}

impl StoreInner {
    fn refuse_duplicate(&self, full: &str) -> Result<()> {
        if self.vars.iter().chain(&self.buffers).any(|(n, _)| n == full) {
            candle_core::bail!("parameter {full} created twice");
        }
        Ok(())
    }
}

/// A dense layer `y = x·Wᵀ + b` over the last dimension of inputs of any rank.
#[derive(Debug, Clone)]
pub struct Dense {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Dense {
    /// Weight and bias uniform(±bound), as SR-GNN initialises everything.
    pub fn new(
        ps: &ParamStore,
        d_in: usize,
        d_out: usize,
        bias: bool,
        name: &str,
        bound: f64,
    ) -> Result<Self> {
        let ps = ps.pp(name);
        let weight = ps.uniform(&[d_out, d_in], "weight", bound)?;
        let bias = if bias { Some(ps.uniform(&[d_out], "bias", bound)?) } else { None };
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let d_in = dims[dims.len() - 1];
        let rows = x.elem_count() / d_in;
        let y = x.reshape((rows, d_in))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => crate::ops::add_bias(&y, b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank ≥ 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_round_trip() {
        let a = ParamStore::new(7, &Device::Cpu);
        let b = ParamStore::new(7, &Device::Cpu);
        let c = ParamStore::new(8, &Device::Cpu);
        let ta = a.pp("x").uniform(&[3, 4], "w", 0.5).unwrap();
        let tb = b.pp("x").uniform(&[3, 4], "w", 0.5).unwrap();
        let tc = c.pp("x").uniform(&[3, 4], "w", 0.5).unwrap();
        let va: Vec<f32> = ta.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, tb.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_ne!(va, tc.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a.vars()[0].0, "x.w");
        assert!(a.uniform(&[1], "x.w", 0.1).is_err(), "duplicate names are refused");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        a.save_safetensors(&p).unwrap();
        c.load_safetensors(&p).unwrap();
        assert_eq!(va, tc.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
