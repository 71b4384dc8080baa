//! Fault injection, for tests only (cargo feature `fault-injection`; never in a release
//! build): `WICK_FAULT=STAGE:KIND[@N]` makes the `stt`, `llm` or `tts` stage `panic`, `hang`
//! (block forever without a heartbeat) or return an `error` on its Nth call (default the
//! first): the failures the supervisor must survive, made on demand.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::stages::{Hear, Speak, StageResult, Think, Thought};
use super::Stages;

/// The variable that arms a fault.
pub const VAR: &str = "WICK_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Panic,
    Hang,
    Error,
}

#[derive(Debug)]
struct Fault {
    kind: Kind,
    on_call: usize,
    calls: AtomicUsize,
}

impl Fault {
    /// Counts a call and strikes when it is the armed one.
    fn strike(&self, stage: &str) -> StageResult<()> {
        if self.calls.fetch_add(1, Ordering::AcqRel) + 1 != self.on_call {
            return Ok(());
        }
        tracing::warn!(stage, kind = ?self.kind, "injecting a fault");
        match self.kind {
            Kind::Panic => panic!("injected fault: {stage} panics"),
            Kind::Hang => loop {
                std::thread::park();
            },
            Kind::Error => Err(format!("injected fault: {stage} fails").into()),
        }
    }
}

/// Parses `STAGE:KIND[@N]`.
fn parse(spec: &str) -> Result<(String, Fault), String> {
    let bad = || format!("{VAR}={spec:?}: expected STAGE:KIND[@N], STAGE stt|llm|tts, KIND panic|hang|error");
    let (stage, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (kind, on_call) = match rest.split_once('@') {
        Some((k, n)) => (k, n.parse::<usize>().map_err(|_| bad())?),
        None => (rest, 1),
    };
    let kind = match kind {
        "panic" => Kind::Panic,
        "hang" => Kind::Hang,
        "error" => Kind::Error,
        _ => return Err(bad()),
    };
    if !matches!(stage, "stt" | "llm" | "tts") || on_call == 0 {
        return Err(bad());
    }
    Ok((stage.to_string(), Fault { kind, on_call, calls: AtomicUsize::new(0) }))
}

struct Faulty<T> {
    inner: T,
    fault: Fault,
}

impl Hear for Faulty<Box<dyn Hear>> {
    fn hear(&mut self, samples: &[f32], alive: &dyn Fn()) -> StageResult<String> {
        self.fault.strike("stt")?;
        self.inner.hear(samples, alive)
    }
}

impl Think for Faulty<Box<dyn Think>> {
    fn think(
        &mut self,
        user: &str,
        on_text: &mut dyn FnMut(&str),
        on_token: &mut dyn FnMut(),
        cancelled: &dyn Fn() -> bool,
    ) -> StageResult<Thought> {
        self.fault.strike("llm")?;
        self.inner.think(user, on_text, on_token, cancelled)
    }
}

impl Speak for Faulty<Box<dyn Speak>> {
    fn rate(&self) -> u32 {
        self.inner.rate()
    }

    fn speak(&mut self, text: &str, on_audio: &mut dyn FnMut(&[f32])) -> StageResult<()> {
        self.fault.strike("tts")?;
        self.inner.speak(text, on_audio)
    }
}

/// Wraps the stage `WICK_FAULT` names, if any.
pub fn inject(mut stages: Stages) -> Stages {
    let Ok(spec) = std::env::var(VAR) else { return stages };
    let (stage, fault) = parse(&spec).unwrap_or_else(|e| panic!("{e}"));
    tracing::warn!("fault injection armed: {spec}");
    match stage.as_str() {
        "stt" => stages.hear = Box::new(Faulty { inner: stages.hear, fault }),
        "llm" => stages.think = Box::new(Faulty { inner: stages.think, fault }),
        _ => stages.voice = Box::new(Faulty { inner: stages.voice, fault }),
    }
    stages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_the_format() {
        let (stage, f) = parse("llm:hang@3").unwrap();
        assert_eq!((stage.as_str(), f.kind, f.on_call), ("llm", Kind::Hang, 3));
        let (_, f) = parse("tts:error").unwrap();
        assert!(f.strike("tts").is_err(), "the first call strikes");
        assert!(f.strike("tts").is_ok(), "and only the first");
        for bad in ["llm", "gpu:panic", "stt:explode", "stt:panic@0", "stt:panic@x"] {
            assert!(parse(bad).unwrap_err().contains("STAGE:KIND"), "{bad}");
        }
    }
}
