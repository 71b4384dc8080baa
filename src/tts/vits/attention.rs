//! Multi-head self-attention with windowed relative positions, the text encoder's mixing
//! step (VITS, after Shaw et al.): besides query·key, each query also scores learned
//! embeddings of the key's offset from it, for offsets within ±window; the attention weights
//! likewise read a learned value per offset. Offsets outside the window contribute nothing.
//!
//! The offset scores are computed only for the 2·window+1 offsets (`[t, 2w+1]`), zero-padded
//! to all 2t-1 offsets, and moved between the "per offset" and "per key" layouts with the
//! pad-and-reshape skew that VITS uses, so everything stays whole-tensor work.

use candle_core::{Device, Module, Result, Tensor, D};

use super::layers::{dim_of, Conv1d};
use super::VitsError;
use crate::tts::onnx::OnnxWeights;

#[derive(Debug, Clone)]
pub struct RelativeAttention {
    /// Query (pre-scaled by 1/√head_dim), key and value projections.
    projections: Projections,
    conv_o: Conv1d,
    /// `[2w+1, head_dim]`, shared by all heads.
    emb_rel_k: Tensor,
    emb_rel_v: Tensor,
    heads: usize,
    head_dim: usize,
    window: usize,
}

impl RelativeAttention {
    pub fn load(
        w: &OnnxWeights,
        module: &str,
        channels: usize,
        device: &Device,
    ) -> std::result::Result<Self, VitsError> {
        let rel_k = format!("{module}.emb_rel_k");
        let (shared, span, head_dim) = (dim_of(w, &rel_k, 0)?, dim_of(w, &rel_k, 1)?, dim_of(w, &rel_k, 2)?);
        if shared != 1 || span.is_multiple_of(2) || head_dim == 0 || !channels.is_multiple_of(head_dim) {
            return Err(VitsError::arch(
                w,
                format!("{rel_k} has shape [{shared}, {span}, {head_dim}]; expected one shared table of an odd number of offsets whose width divides {channels}"),
            ));
        }
        let load_emb = |name: &str| -> std::result::Result<Tensor, VitsError> {
            Ok(w.tensor_shaped(name, &[1, span, head_dim], device)?.reshape((span, head_dim))?)
        };
        let conv = |c: &str| Conv1d::load(w, &format!("{module}.{c}"), channels, channels, device);
        let q = conv("conv_q")?.scaled(1.0 / (head_dim as f64).sqrt())?;
        let (k, v) = (conv("conv_k")?, conv("conv_v")?);
        let projections = match Conv1d::stacked(&[&q, &k, &v])? {
            Some(qkv) => Projections::Stacked(qkv),
            None => Projections::Separate(q, k, v),
        };
        Ok(Self {
            projections,
            conv_o: conv("conv_o")?,
            emb_rel_k: load_emb(&rel_k)?,
            emb_rel_v: load_emb(&format!("{module}.emb_rel_v"))?,
            heads: channels / head_dim,
            head_dim,
            window: span / 2,
        })
    }

    /// `x` plus self-attention over `x` `[1, channels, t]` (one sequence, no padding); the
    /// residual is added by the output projection's kernel.
    pub fn forward_residual(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let heads = |y: Tensor| y.reshape((b, self.heads, self.head_dim, t))?.transpose(2, 3)?.contiguous();
        let (q, k, v) = match &self.projections {
            Projections::Stacked(qkv) => {
                let qkv = qkv.forward(x)?;
                (qkv.narrow(1, 0, c)?, qkv.narrow(1, c, c)?, qkv.narrow(1, 2 * c, c)?)
            }
            Projections::Separate(q, k, v) => (q.forward(x)?, k.forward(x)?, v.forward(x)?),
        };
        let (q, k, v) = (heads(q)?, heads(k)?, heads(v)?);

        // Offsets that exist in a sequence this short: at most t-1 either way.
        let reach = self.window.min(t - 1);
        let band = |emb: &Tensor| emb.narrow(0, self.window - reach, 2 * reach + 1);
        let pad = t - 1 - reach;

        let scores = q.matmul(&k.t()?)?;
        let offset_scores = q.broadcast_matmul(&band(&self.emb_rel_k)?.t()?)?;
        let offset_scores = offset_scores.pad_with_zeros(D::Minus1, pad, pad)?;
        let scores = (scores + offsets_to_keys(&offset_scores)?)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;

        let out = weights.matmul(&v)?;
        let per_offset = keys_to_offsets(&weights)?.narrow(D::Minus1, pad, 2 * reach + 1)?;
        let out = (out + per_offset.contiguous()?.broadcast_matmul(&band(&self.emb_rel_v)?)?)?;

        let out = out.transpose(2, 3)?.reshape((b, c, t))?;
        self.conv_o.forward_fused(&out, None, Some(x))
    }
}

/// The three input projections, as one convolution where the kernels allow it.
#[derive(Debug, Clone)]
enum Projections {
    Stacked(Conv1d),
    Separate(Conv1d, Conv1d, Conv1d),
}

/// `[.., t, 2t-1]` indexed by offset (column `t-1+j-i` for key j) to `[.., t, t]` indexed by
/// key: pad one column, flatten, pad t-1, and re-read as rows of 2t-1 shifted by one each.
fn offsets_to_keys(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, _) = x.dims4()?;
    let x = x.pad_with_zeros(D::Minus1, 0, 1)?;
    let x = x.reshape((b, h, t * 2 * t))?.pad_with_zeros(D::Minus1, 0, t - 1)?;
    x.reshape((b, h, t + 1, 2 * t - 1))?.narrow(2, 0, t)?.narrow(3, t - 1, t)
}

/// The inverse skew: `[.., t, t]` by key to `[.., t, 2t-1]` by offset.
fn keys_to_offsets(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, _) = x.dims4()?;
    let x = x.pad_with_zeros(D::Minus1, 0, t - 1)?;
    let x = x.reshape((b, h, t * (2 * t - 1)))?.pad_with_zeros(D::Minus1, t, 0)?;
    x.reshape((b, h, t, 2 * t))?.narrow(3, 1, 2 * t - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skews_put_offset_j_minus_i_where_it_belongs() {
        let t = 4;
        // offsets[i][o] = 10*i + o, o = t-1 + (j-i).
        let offsets: Vec<f32> = (0..t).flat_map(|i| (0..2 * t - 1).map(move |o| (10 * i + o) as f32)).collect();
        let offsets = Tensor::from_vec(offsets, (1, 1, t, 2 * t - 1), &Device::Cpu).unwrap();
        let keys = offsets_to_keys(&offsets).unwrap().squeeze(0).unwrap().squeeze(0).unwrap();
        let keys = keys.to_vec2::<f32>().unwrap();
        for (i, row) in keys.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, (10 * i + t - 1 + j - i) as f32, "i={i} j={j}");
            }
        }
        let back = keys_to_offsets(&Tensor::new(keys, &Device::Cpu).unwrap().reshape((1, 1, t, t)).unwrap()).unwrap();
        let back = back.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in back.iter().enumerate() {
            for (o, &v) in row.iter().enumerate() {
                let in_range = o + i >= t - 1 && o + i - (t - 1) < t;
                let expected = if in_range { (10 * i + o) as f32 } else { 0.0 };
                assert_eq!(v, expected, "i={i} o={o}");
            }
        }
    }
}
