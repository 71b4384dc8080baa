//! Choosing the next token from logits: greedy, or temperature sampling narrowed by top-k and
//! top-p, with a repeat penalty over recent tokens and a seedable generator for repeatable runs.

use candle_core::Tensor;
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// 0 picks the most likely token (greedy); higher values flatten the distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of likely tokens whose probability reaches p (1.0 = no limit).
    pub top_p: f32,
    /// Divides positive (multiplies negative) logits of recently seen tokens; 1.0 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self { temperature: 0.7, top_k: 40, top_p: 0.9, repeat_penalty: 1.1, repeat_last_n: 64, seed: 42 }
    }
}

impl SamplingOptions {
    /// Argmax of the raw logits, as the parity tests and `--greedy` use.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, ..Self::default() }
    }
}

pub struct Sampler {
    options: SamplingOptions,
    rng: StdRng,
}

impl Sampler {
    pub fn new(options: SamplingOptions) -> Self {
        let rng = StdRng::seed_from_u64(options.seed);
        Self { options, rng }
    }

    /// Picks the next token from logits on any device. On a GPU, greedy decoding without a
    /// repeat penalty reads back only the chosen id; otherwise the logits come to the host
    /// (on a Jetson that is the same memory) and `sample` picks there.
    pub fn sample_logits(&mut self, logits: &Tensor, history: &[u32]) -> candle_core::Result<u32> {
        let o = &self.options;
        if !logits.device().is_cpu() && o.temperature <= 0.0 && o.repeat_penalty == 1.0 {
            return argmax_logits(logits);
        }
        let mut values = logits.to_vec1::<f32>()?;
        Ok(self.sample(&mut values, history))
    }

    /// Picks the next token given the logits and the tokens so far (for the repeat penalty).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let o = &self.options;
        if o.repeat_penalty != 1.0 {
            let recent = &history[history.len().saturating_sub(o.repeat_last_n)..];
            let mut seen = std::collections::HashSet::with_capacity(recent.len());
            for &t in recent {
                if let Some(l) = logits.get_mut(t as usize).filter(|_| seen.insert(t)) {
                    *l = if *l > 0.0 { *l / o.repeat_penalty } else { *l * o.repeat_penalty };
                }
            }
        }
        if o.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        if o.top_k > 0 && o.top_k < candidates.len() {
            candidates.select_nth_unstable_by(o.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            candidates.truncate(o.top_k);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|&(_, l)| ((l - max) / o.temperature).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if o.top_p < 1.0 {
            let mut mass = 0.0;
            let keep = probs.iter().position(|&p| {
                mass += p;
                mass >= o.top_p
            });
            probs.truncate(keep.map_or(probs.len(), |k| k + 1));
        }
        let mut target = self.rng.random::<f32>() * probs.iter().sum::<f32>();
        for (i, p) in probs.iter().enumerate() {
            target -= p;
            if target <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[probs.len() - 1].0
    }
}

/// The most likely token of a logits vector on any device; from a GPU only the id comes back.
pub fn argmax_logits(logits: &Tensor) -> candle_core::Result<u32> {
    if logits.device().is_cpu() {
        Ok(argmax(&logits.to_vec1::<f32>()?))
    } else {
        logits.argmax(0)?.to_scalar::<u32>()
    }
}

pub fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(options: SamplingOptions, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(options);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.sample(&mut logits.to_vec(), &[]) as usize] += 1;
        }
        c
    }

    #[test]
    fn greedy_takes_the_maximum() {
        let mut s = Sampler::new(SamplingOptions::greedy());
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_and_top_p_narrow_the_choice() {
        let logits = [2.0, 1.9, 1.8, 0.0, -1.0];
        let base =
            SamplingOptions { temperature: 1.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, ..Default::default() };
        let all = counts(base.clone(), &logits, 4000);
        assert!(all[3] > 0 && all[4] > 0, "{all:?}");
        let k2 = counts(SamplingOptions { top_k: 2, ..base.clone() }, &logits, 2000);
        assert_eq!(k2[2] + k2[3] + k2[4], 0, "{k2:?}");
        assert!(k2[0] > 0 && k2[1] > 0);
        // The top three hold about 90 % of the mass; p = 0.5 keeps only the first two.
        let p = counts(SamplingOptions { top_p: 0.5, ..base }, &logits, 2000);
        assert_eq!(p[2] + p[3] + p[4], 0, "{p:?}");
    }

    #[test]
    fn same_seed_same_tokens_and_repeat_penalty_demotes_history() {
        let logits = [1.0, 1.0, 1.0, 1.0];
        let o = SamplingOptions { temperature: 1.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, ..Default::default() };
        assert_eq!(counts(o.clone(), &logits, 50), counts(o, &logits, 50));
        let mut s = Sampler::new(SamplingOptions { repeat_penalty: 2.0, ..SamplingOptions::greedy() });
        assert_eq!(s.sample(&mut [3.0, 2.0, -1.0], &[0]), 1, "3.0 / 2 falls below 2.0");
        assert_eq!(s.sample(&mut [-1.0, -1.5], &[0]), 1, "-1.0 * 2 falls below -1.5");
    }
}
