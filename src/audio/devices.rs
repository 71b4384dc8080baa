//! What `wick doctor` reports about sound: the cards the kernel has, the PCM names alsa-lib
//! knows (what `aplay -L` / `arecord -L` list), and whether a configured device opens and
//! which format it agrees to.

use super::pcm::{alsa_said, open_pcm, Direction, PcmError, PcmFormat};
use super::settings::{PcmSettings, Settings};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardInfo {
    pub index: i32,
    /// The stable name used in PCM names, e.g. `hw:CARD=Device`.
    pub id: String,
    pub name: String,
    pub long_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PcmHint {
    pub name: String,
    /// alsa-lib's description; lines are separated by '\n'.
    pub description: Option<String>,
}

/// The sound cards present, in index order; empty without any (or without /dev/snd).
pub fn cards() -> Vec<CardInfo> {
    let (cards, said) = alsa_said(|| {
        let mut out = Vec::new();
        for card in alsa::card::Iter::new() {
            // An error here means the card list cannot be read at all (no /dev/snd): no cards.
            let Ok(card) = card else { break };
            let index = card.get_index();
            let info = alsa::Ctl::from_card(&card, false).and_then(|ctl| {
                let info = ctl.card_info()?;
                Ok((info.get_id()?.to_string(), info.get_name()?.to_string(), info.get_longname()?.to_string()))
            });
            let (id, name, long_name) = match info {
                Ok(t) => t,
                // Without its control device a card still has a name; the id is then unknown.
                Err(_) => (String::new(), card.get_name().unwrap_or_default(), card.get_longname().unwrap_or_default()),
            };
            out.push(CardInfo { index, id, name, long_name });
        }
        out
    });
    if !said.is_empty() {
        tracing::debug!("listing sound cards: alsa-lib: {said}");
    }
    cards
}

/// The PCM names alsa-lib offers for `direction` (those for both directions included).
pub fn pcm_hints(direction: Direction) -> Vec<PcmHint> {
    let wanted = match direction {
        Direction::Capture => alsa::Direction::Capture,
        Direction::Playback => alsa::Direction::Playback,
    };
    let (hints, said) = alsa_said(|| {
        let Ok(iter) = alsa::device_name::HintIter::new_str(None, "pcm") else { return Vec::new() };
        iter.filter(|h| h.direction.is_none_or(|d| d == wanted))
            .filter_map(|h| Some(PcmHint { name: h.name?, description: h.desc }))
            .collect()
    });
    if !said.is_empty() {
        tracing::debug!("listing PCMs: alsa-lib: {said}");
    }
    hints
}

/// Opens the configured device, agrees a format exactly as capture or playback would, and
/// closes it again.
pub fn probe(cfg: &PcmSettings, audio: &Settings, direction: Direction) -> Result<PcmFormat, PcmError> {
    open_pcm(cfg, audio, direction).map(|(_pcm, format)| format)
}
