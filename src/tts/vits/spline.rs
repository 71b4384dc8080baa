//! Monotonic rational-quadratic splines with linear tails (Durkan et al., "Neural Spline
//! Flows"), the invertible map inside the duration predictor's coupling flows. Inside
//! [-B, B] the map is piecewise rational-quadratic over K bins whose widths, heights and
//! knot derivatives the network predicts; outside it is the identity. Written as whole-tensor
//! work over `[n, K]`, so it runs on any Candle device.

use candle_core::{DType, Result, Tensor, D};

/// The floors VITS's spline uses, which keep every bin and slope away from zero.
const MIN_BIN_WIDTH: f64 = 1e-3;
const MIN_BIN_HEIGHT: f64 = 1e-3;
const MIN_DERIVATIVE: f64 = 1e-3;
/// Added to the last knot while searching so that x = B lands in the last bin.
const SEARCH_EPS: f64 = 1e-6;

/// Which way to run the spline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The training direction; inference only inverts, the tests check both.
    #[cfg_attr(not(test), allow(dead_code))]
    Forward,
    Inverse,
}

/// Applies the spline to `x` `[n]`. `widths` and `heights` are unnormalized `[n, K]`,
/// `derivatives` unnormalized `[n, K-1]` (the interior knots; the outer two are fixed so the
/// slope meets the identity tails at 1).
pub fn rational_quadratic(
    x: &Tensor,
    widths: &Tensor,
    heights: &Tensor,
    derivatives: &Tensor,
    tail_bound: f64,
    direction: Direction,
) -> Result<Tensor> {
    let (n, bins) = widths.dims2()?;
    // softplus(c) = 1 - MIN_DERIVATIVE, so the outer knots' slope is exactly 1.
    let edge = (1.0 - MIN_DERIVATIVE).exp_m1().ln();
    let edge = Tensor::full(edge as f32, (n, 1), x.device())?;
    let derivatives = Tensor::cat(&[&edge, derivatives, &edge], 1)?;
    let derivatives = (softplus(&derivatives)? + MIN_DERIVATIVE)?;

    let (cum_w, bin_w) = knots(widths, MIN_BIN_WIDTH, tail_bound)?;
    let (cum_h, bin_h) = knots(heights, MIN_BIN_HEIGHT, tail_bound)?;

    let inside = x.ge(-tail_bound)?.mul(&x.le(tail_bound)?)?;
    let xc = x.clamp(-tail_bound, tail_bound)?.unsqueeze(1)?;
    let search = match direction {
        Direction::Forward => &cum_w,
        Direction::Inverse => &cum_h,
    };
    let bin = search_bins(search, &xc, bins)?;
    let pick = |t: &Tensor| t.contiguous()?.gather(&bin, 1);
    let x0 = pick(&cum_w.narrow(1, 0, bins)?)?;
    let w = pick(&bin_w)?;
    let y0 = pick(&cum_h.narrow(1, 0, bins)?)?;
    let h = pick(&bin_h)?;
    let slope = (&h / &w)?;
    let d0 = pick(&derivatives.narrow(1, 0, bins)?)?;
    let d1 = pick(&derivatives.narrow(1, 1, bins)?)?;
    let curve = ((&d0 + &d1)? - (&slope * 2.0)?)?;

    let y = match direction {
        Direction::Forward => {
            let theta = ((&xc - &x0)? / &w)?;
            let tt = (&theta * (1.0 - &theta)?)?;
            let num = (&h * ((&slope * theta.sqr()?)? + (&d0 * &tt)?)?)?;
            let den = (&slope + (&curve * &tt)?)?;
            (y0 + (num / den)?)?
        }
        Direction::Inverse => {
            // Solve a·θ² + b·θ + c = 0 for θ in [0, 1], in the form that stays accurate
            // when a is near zero.
            let dy = (&xc - &y0)?;
            let a = ((&dy * &curve)? + (&h * (&slope - &d0)?)?)?;
            let b = ((&h * &d0)? - (&dy * &curve)?)?;
            let c = (slope.neg()? * &dy)?;
            let disc = (b.sqr()? - ((&a * &c)? * 4.0)?)?.relu()?;
            let theta = ((&c * 2.0)? / (b.neg()? - disc.sqrt()?)?)?;
            ((theta * &w)? + x0)?
        }
    };
    inside.where_cond(&y.squeeze(1)?, x)
}

/// Knot positions `[n, K+1]` from -B to B and bin sizes `[n, K]` from unnormalized logits.
fn knots(logits: &Tensor, min_size: f64, bound: f64) -> Result<(Tensor, Tensor)> {
    let (n, bins) = logits.dims2()?;
    let sizes = candle_nn::ops::softmax_last_dim(logits)?;
    let sizes = ((sizes * (1.0 - min_size * bins as f64))? + min_size)?;
    let cum = sizes.cumsum(1)?;
    // Interior knots from the cumulative sizes; the ends pinned exactly to ±B.
    let interior = ((cum.narrow(1, 0, bins - 1)? * (2.0 * bound))? - bound)?;
    let lo = Tensor::full(-bound as f32, (n, 1), logits.device())?;
    let hi = Tensor::full(bound as f32, (n, 1), logits.device())?;
    let cum = Tensor::cat(&[&lo, &interior, &hi], 1)?;
    let sizes = (cum.narrow(1, 1, bins)? - cum.narrow(1, 0, bins)?)?;
    Ok((cum, sizes))
}

/// The bin of each `x` `[n, 1]` among knots `[n, K+1]`, as `[n, 1]` u32 indices.
fn search_bins(knots: &Tensor, x: &Tensor, bins: usize) -> Result<Tensor> {
    let (n, _) = knots.dims2()?;
    let bump = Tensor::cat(
        &[
            &Tensor::zeros((n, bins), DType::F32, knots.device())?,
            &Tensor::full(SEARCH_EPS as f32, (n, 1), knots.device())?,
        ],
        1,
    )?;
    let knots = (knots + bump)?;
    let passed = x.broadcast_ge(&knots)?.to_dtype(DType::F32)?.sum_keepdim(D::Minus1)?;
    // x is clamped to [-B, B], so at least the first knot is passed and never the last.
    (passed - 1.0)?.clamp(0.0, (bins - 1) as f64)?.to_dtype(DType::U32)
}

/// log(1 + eˣ) without overflow for large x.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn params(n: usize, bins: usize, seed: u32) -> (Tensor, Tensor, Tensor) {
        // Deterministic, uneven logits so the bins differ.
        let v = |len: usize, k: u32| -> Vec<f32> {
            (0..len).map(|i| (((i as u32 * 2654435761u32) ^ (seed * 97 + k)) % 1000) as f32 / 250.0 - 2.0).collect()
        };
        let dev = Device::Cpu;
        (
            Tensor::from_vec(v(n * bins, 1), (n, bins), &dev).unwrap(),
            Tensor::from_vec(v(n * bins, 2), (n, bins), &dev).unwrap(),
            Tensor::from_vec(v(n * (bins - 1), 3), (n, bins - 1), &dev).unwrap(),
        )
    }

    #[test]
    fn inverse_undoes_forward_and_tails_are_identity() {
        let xs = [-7.0f32, -5.0, -4.2, -1.3, -0.01, 0.0, 0.7, 2.5, 4.99, 5.0, 6.5];
        let n = xs.len();
        let (w, h, d) = params(n, 10, 3);
        let x = Tensor::new(&xs[..], &Device::Cpu).unwrap();
        let y = rational_quadratic(&x, &w, &h, &d, 5.0, Direction::Forward).unwrap();
        let back = rational_quadratic(&y, &w, &h, &d, 5.0, Direction::Inverse).unwrap();
        let (y, back) = (y.to_vec1::<f32>().unwrap(), back.to_vec1::<f32>().unwrap());
        for i in 0..n {
            assert!((back[i] - xs[i]).abs() < 1e-4, "x={} y={} back={}", xs[i], y[i], back[i]);
        }
        assert_eq!(y[0], -7.0);
        assert_eq!(y[n - 1], 6.5);
        // The bounds map to themselves, and the map is increasing.
        assert!((y[1] + 5.0).abs() < 1e-5 && (y[9] - 5.0).abs() < 1e-5, "{y:?}");
        assert!(y.windows(2).all(|p| p[0] <= p[1]), "{y:?}");
    }

    #[test]
    fn equal_bins_and_unit_slopes_give_the_identity() {
        let n = 5;
        let dev = Device::Cpu;
        let zeros = |c| Tensor::zeros((n, c), DType::F32, &dev).unwrap();
        // softplus(d) + 1e-3 = 1 everywhere.
        let d = Tensor::full((1.0f64 - MIN_DERIVATIVE).exp_m1().ln() as f32, (n, 3), &dev).unwrap();
        let x = Tensor::new(&[-4.0f32, -1.0, 0.5, 2.0, 3.9], &dev).unwrap();
        let y = rational_quadratic(&x, &zeros(4), &zeros(4), &d, 5.0, Direction::Forward).unwrap();
        let (x, y) = (x.to_vec1::<f32>().unwrap(), y.to_vec1::<f32>().unwrap());
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5, "{x:?} -> {y:?}");
        }
    }
}
