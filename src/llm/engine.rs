//! Conversations with the language model. The conversation lives in the model's KV cache: the
//! system prompt is prefilled once, each turn feeds only its own new tokens, and when the
//! context would overflow the oldest turns are dropped and the rest prefilled again.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Device;

use super::chat::{self, ChatTemplate};
use super::sampling::{Sampler, SamplingOptions};
use super::tokenizer::LlmTokenizer;
use super::{GgufFile, Llama, LlmError};

pub struct Engine {
    pub model: Llama,
    pub tokenizer: LlmTokenizer,
    pub template: ChatTemplate,
    end_ids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingOptions,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 256, sampling: SamplingOptions::default() }
    }
}

/// Prompt tokens run through the model at once. Prompts of a turn are shorter, so they go in
/// one step as before; a long re-prefill is cut so that a cancel is seen between chunks.
pub const PREFILL_CHUNK: usize = 128;

/// A conversation: its text, and which of its tokens the model's KV cache holds.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub system: String,
    /// The date the prompt gives the model (Llama 3's template has one): the day the
    /// conversation (re)started, as [`chat::today`] writes it.
    pub date: String,
    /// Finished (user, assistant) turns.
    pub turns: Vec<(String, String)>,
    /// Tokens in the KV cache, in order.
    cached: Vec<u32>,
    /// Sampled tokens not yet run through the model (the last token of the previous answer).
    unfed: Vec<u32>,
    /// Forget the turns after this long without one (`None`: keep them).
    idle_reset: Option<Duration>,
    /// When the last turn ended.
    last_turn: Option<Instant>,
    /// The cache holds only the conversation's opening (the system prompt, prefilled at start).
    opening_only: bool,
}

impl Conversation {
    pub fn new(system: impl Into<String>) -> Self {
        Self { system: system.into(), date: chat::today(), ..Default::default() }
    }

    /// Starts from earlier turns given as text (their tokens are prefilled with the next turn).
    pub fn with_history(system: impl Into<String>, turns: Vec<(String, String)>) -> Self {
        Self { system: system.into(), date: chat::today(), turns, ..Default::default() }
    }

    /// Forgets the turns when the next one starts more than `idle` after the last ended, so a
    /// new person at the appliance does not inherit the previous one's conversation.
    pub fn with_idle_reset(mut self, idle: Option<Duration>) -> Self {
        self.idle_reset = idle;
        self
    }

    /// Starts over (keeping the system prompt) when idle for longer than the reset time at
    /// `now`; true when it did.
    pub fn forget_if_idle(&mut self, now: Instant) -> bool {
        let (Some(limit), Some(last)) = (self.idle_reset, self.last_turn) else { return false };
        let idle = now.saturating_duration_since(last);
        if idle <= limit {
            return false;
        }
        tracing::info!(idle_s = idle.as_secs_f64(), turns = self.turns.len(), "conversation idle: starting over");
        self.turns.clear();
        self.cached.clear();
        self.unfed.clear();
        self.last_turn = None;
        self.opening_only = false;
        self.date = chat::today();
        true
    }
}

/// What one turn produced and what it cost.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub text: String,
    /// Every token in the context when generation started (the rendered prompt).
    pub prompt_ids: Vec<u32>,
    /// How many of those this turn had to run through the model.
    pub prefill_tokens: usize,
    /// Generated tokens, the end token included when reached.
    pub gen_ids: Vec<u32>,
    /// The answer ended with the template's end token (not the token limit or a cancel).
    pub finished: bool,
    pub prefill_s: f64,
    pub first_token_s: f64,
    pub decode_s: f64,
}

impl Engine {
    /// Opens a GGUF model with its tokenizer and chat template, with a KV cache of `context` tokens.
    pub fn open(path: &Path, context: usize, device: &Device) -> Result<Self, LlmError> {
        let mut file = GgufFile::open(path)?;
        let tokenizer = LlmTokenizer::load(path, &file.content)
            .map_err(|e| LlmError::Tokenizer { path: path.into(), message: e.to_string() })?;
        let template = ChatTemplate::from_gguf(&file.content)
            .map_err(|e| LlmError::Tokenizer { path: path.into(), message: e.to_string() })?;
        let end_ids = template
            .end_tokens()
            .iter()
            .filter_map(|t| tokenizer.token_id(t))
            .chain(std::iter::once(tokenizer.eos))
            .collect();
        let model = file.load_model(context, device)?;
        Ok(Self { model, tokenizer, template, end_ids })
    }

    pub fn is_end(&self, id: u32) -> bool {
        self.end_ids.contains(&id)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        self.tokenizer.encode(text, true).map_err(|e| LlmError::Generate(e.to_string()))
    }

    /// The whole conversation plus `user`, rendered and tokenized.
    fn full_prompt(&self, conv: &Conversation, skip_turns: usize, user: &str) -> Result<Vec<u32>, LlmError> {
        let mut messages: Vec<(&str, &str)> = Vec::new();
        for (u, a) in &conv.turns[skip_turns..] {
            messages.push(("user", u));
            messages.push(("assistant", a));
        }
        messages.push(("user", user));
        self.encode(&self.template.render(&conv.system, &conv.date, &messages))
    }

    /// Runs the conversation's opening (the system prompt) through the model now, so that the
    /// first turn prefills only its own message: the appliance does this while starting, off the
    /// path from the button's release to the answer. Returns the tokens prefilled (0 when the
    /// conversation has already begun).
    pub fn prefill_opening(&mut self, conv: &mut Conversation) -> Result<usize, LlmError> {
        if !conv.turns.is_empty() || !conv.cached.is_empty() {
            return Ok(0);
        }
        let ids = self.encode(&self.template.opening(&conv.system, &conv.date))?;
        if ids.is_empty() || ids.len() >= self.model.max_context() {
            return Ok(0);
        }
        self.model.reset();
        self.model.forward(&ids).map_err(|e| LlmError::Generate(e.to_string()))?;
        let n = ids.len();
        conv.cached = ids;
        conv.unfed.clear();
        conv.opening_only = true;
        Ok(n)
    }

    /// The tokens to feed for this turn, resetting the cache when it cannot be extended.
    fn turn_tokens(&mut self, conv: &mut Conversation, user: &str, max_tokens: usize) -> Result<Vec<u32>, LlmError> {
        let context = self.model.max_context();
        let continuing = !conv.cached.is_empty() && self.model.position() == conv.cached.len();
        if continuing && std::mem::take(&mut conv.opening_only) {
            // Special tokens start every message, so the opening and this message tokenize
            // exactly as the whole rendered prompt would.
            let text = format!("{}{}", self.template.message("user", user), self.template.assistant_prompt());
            let feed = self.encode(&text)?;
            if conv.cached.len() + feed.len() + max_tokens <= context {
                return Ok(feed);
            }
        } else if continuing {
            let mut feed = std::mem::take(&mut conv.unfed);
            if !feed.last().is_some_and(|&t| self.is_end(t)) {
                feed.extend(self.encode(self.template.end_tokens()[0])?);
            }
            let text = format!(
                "{}{}{}",
                self.template.after_generated(),
                self.template.message("user", user),
                self.template.assistant_prompt()
            );
            feed.extend(self.encode(&text)?);
            if conv.cached.len() + feed.len() + max_tokens <= context {
                return Ok(feed);
            }
        }
        // Start over from text, dropping the oldest turns until the prompt and answer fit in
        // half the context: dropping only what overflows would make every later turn overflow
        // too and prefill the whole context again (the soak found turns slowing to a crawl).
        // Only a message too long for half the context is fitted into the whole of it.
        self.model.reset();
        conv.cached.clear();
        conv.unfed.clear();
        conv.opening_only = false;
        for room in [context / 2, context] {
            for skip in 0..=conv.turns.len() {
                let ids = self.full_prompt(conv, skip, user)?;
                if ids.len() + max_tokens <= room {
                    conv.turns.drain(..skip);
                    return Ok(ids);
                }
            }
        }
        let needed = self.full_prompt(conv, conv.turns.len(), user)?.len();
        Err(LlmError::PromptTooLong { tokens: needed, max_tokens, context })
    }

    /// Answers `user`, streaming text deltas to `on_text`; `cancelled` is checked before every
    /// decoded token, so a barge-in stops generation within one token.
    pub fn reply(
        &mut self,
        conv: &mut Conversation,
        user: &str,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Reply, LlmError> {
        self.reply_counting(conv, user, options, on_text, &mut |_| {}, cancelled)
    }

    /// [`Engine::reply`], also handing every sampled token to `on_token` as it is sampled (the
    /// pipeline counts them to show that a barge-in stops decoding).
    pub fn reply_counting(
        &mut self,
        conv: &mut Conversation,
        user: &str,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
        on_token: &mut dyn FnMut(u32),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Reply, LlmError> {
        conv.forget_if_idle(Instant::now());
        let feed = self.turn_tokens(conv, user, options.max_tokens)?;
        let fail = |e: candle_core::Error| LlmError::Generate(e.to_string());
        let start = Instant::now();
        // The prompt goes through in chunks, with `cancelled` checked between them: a press
        // during a long re-prefill (a full context on the CPU takes minutes) stops it.
        let mut logits = None;
        for (i, chunk) in feed.chunks(PREFILL_CHUNK).enumerate() {
            if i > 0 && cancelled() {
                // A half-fed message cannot be continued: the next turn starts over from text.
                self.model.reset();
                conv.cached.clear();
                conv.unfed.clear();
                conv.opening_only = false;
                let prefill_tokens = i * PREFILL_CHUNK;
                let prefill_s = start.elapsed().as_secs_f64();
                return Ok(Reply { prefill_tokens, prefill_s, ..Default::default() });
            }
            logits = Some(self.model.forward(chunk).map_err(fail)?);
            conv.cached.extend(chunk);
        }
        let mut logits = logits.ok_or_else(|| LlmError::Generate("the prompt has no tokens".into()))?;
        let mut reply = Reply { prompt_ids: conv.cached.clone(), prefill_tokens: feed.len(), ..Default::default() };
        reply.prefill_s = start.elapsed().as_secs_f64();

        let mut sampler = Sampler::new(options.sampling.clone());
        let mut stream = self.tokenizer.stream();
        let decode_start = Instant::now();
        // The last sampled token until it has been run through the model.
        let mut pending = None;
        while reply.gen_ids.len() < options.max_tokens && !cancelled() {
            let next = sampler.sample_logits(&logits, &conv.cached).map_err(fail)?;
            if reply.gen_ids.is_empty() {
                reply.first_token_s = start.elapsed().as_secs_f64();
            }
            reply.gen_ids.push(next);
            on_token(next);
            pending = Some(next);
            if self.is_end(next) {
                reply.finished = true;
                break;
            }
            if let Some(delta) = stream.push(next) {
                on_text(&delta);
                reply.text.push_str(&delta);
            }
            if reply.gen_ids.len() == options.max_tokens || cancelled() {
                break;
            }
            logits = self.model.forward(&[next]).map_err(fail)?;
            conv.cached.push(next);
            pending = None;
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            on_text(&rest);
            reply.text.push_str(&rest);
        }
        reply.decode_s = decode_start.elapsed().as_secs_f64();
        // A token sampled but not yet run through the model is fed with the next turn.
        conv.unfed = pending.into_iter().collect();
        conv.turns.push((user.to_string(), reply.text.clone()));
        conv.last_turn = Some(Instant::now());
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_conversation_starts_over_and_a_busy_one_does_not() {
        let start = Instant::now();
        let mut conv = Conversation::with_history("sys", vec![("hi".into(), "hello".into())])
            .with_idle_reset(Some(Duration::from_secs(300)));
        assert!(!conv.forget_if_idle(start), "no turn has ended yet");
        conv.last_turn = Some(start);
        conv.cached = vec![1, 2, 3];
        assert!(!conv.forget_if_idle(start + Duration::from_secs(299)));
        assert_eq!(conv.turns.len(), 1);
        assert!(conv.forget_if_idle(start + Duration::from_secs(301)));
        assert!(conv.turns.is_empty() && conv.cached.is_empty());
        assert_eq!(conv.system, "sys");

        let mut kept = Conversation::with_history("sys", vec![("hi".into(), "hello".into())]);
        kept.last_turn = Some(start);
        assert!(!kept.forget_if_idle(start + Duration::from_secs(86_400)), "no reset time: kept");
    }
}
