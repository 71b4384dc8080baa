//! Chat templates. GGUF files carry a Jinja template; wick recognises the two families its
//! models use (ChatML for SmolLM2 and Qwen-style models, Llama 3's header format) and renders
//! them directly, which keeps a Jinja engine out of the appliance. Llama 3's rendering follows
//! Meta's Llama 3.2 Instruct template (checked against Jinja's output in
//! tests/llm_llama3_text.rs): a system header always, with the knowledge cutoff and today's
//! date, and every message trimmed.

use candle_core::quantized::gguf_file::Content;

/// The date line's format in Meta's template (`strftime_now("%d %b %Y")`): "03 Dec 2026".
const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[day padding:zero] [month repr:short] [year]");

/// Today's date as Llama 3's template writes it, from the system clock in UTC (the appliance
/// keeps no time zone).
pub fn today() -> String {
    time::OffsetDateTime::now_utc().format(DATE_FORMAT).unwrap_or_else(|_| "26 Jul 2024".to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
    Llama3,
}

#[derive(Debug, thiserror::Error)]
#[error("tokenizer.chat_template {0}; wick knows ChatML and Llama 3 chat templates")]
pub struct UnknownTemplate(String);

impl ChatTemplate {
    /// Recognises the template family from the GGUF's `tokenizer.chat_template`.
    pub fn from_gguf(content: &Content) -> Result<Self, UnknownTemplate> {
        let text = match content.metadata.get("tokenizer.chat_template").map(|v| v.to_string()) {
            Some(Ok(t)) => t.clone(),
            _ => return Err(UnknownTemplate("is missing".into())),
        };
        if text.contains("<|im_start|>") {
            Ok(ChatTemplate::ChatMl)
        } else if text.contains("<|start_header_id|>") {
            Ok(ChatTemplate::Llama3)
        } else {
            Err(UnknownTemplate(format!(
                "is of an unknown family (starts {:?})",
                text.chars().take(60).collect::<String>()
            )))
        }
    }

    /// Text that opens the conversation, before the first message.
    pub fn begin(self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "",
            ChatTemplate::Llama3 => "<|begin_of_text|>",
        }
    }

    /// One complete message.
    pub fn message(self, role: &str, content: &str) -> String {
        match self {
            ChatTemplate::ChatMl => format!("<|im_start|>{role}\n{content}<|im_end|>\n"),
            ChatTemplate::Llama3 => {
                format!("<|start_header_id|>{role}<|end_header_id|>\n\n{}<|eot_id|>", content.trim())
            }
        }
    }

    /// What the model's answer follows.
    pub fn assistant_prompt(self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "<|im_start|>assistant\n",
            ChatTemplate::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
        }
    }

    /// Text the template puts after the end token of a message the model generated, before
    /// the next message (ChatML ends every message with a newline).
    pub fn after_generated(self) -> &'static str {
        match self {
            ChatTemplate::ChatMl => "\n",
            ChatTemplate::Llama3 => "",
        }
    }

    /// Tokens (as text) that end the assistant's turn.
    pub fn end_tokens(self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            ChatTemplate::Llama3 => &["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"],
        }
    }

    /// The start of every prompt: the begin marker, then the system message. ChatML leaves an
    /// empty `system` out; Llama 3 always has one, opening with the knowledge cutoff and
    /// `date` (as [`today`] writes it). The engine prefills exactly this before the first turn.
    pub fn opening(self, system: &str, date: &str) -> String {
        let mut s = self.begin().to_string();
        match self {
            ChatTemplate::ChatMl if system.is_empty() => {}
            ChatTemplate::ChatMl => s.push_str(&self.message("system", system)),
            ChatTemplate::Llama3 => {
                let system = format!("Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n{}", system.trim());
                // Not through `message`, which would trim the date block's blank line away
                // when the system prompt is empty.
                s.push_str(&format!("<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"));
            }
        }
        s
    }

    /// The whole prompt: the opening for `system` and `date`, `messages` (role, content), and
    /// the assistant prompt.
    pub fn render(self, system: &str, date: &str, messages: &[(&str, &str)]) -> String {
        let mut s = self.opening(system, date);
        for (role, content) in messages {
            s.push_str(&self.message(role, content));
        }
        s.push_str(self.assistant_prompt());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_like_the_reference() {
        let text = ChatTemplate::ChatMl.render("Be brief.", "03 Dec 2026", &[("user", "Hi?")]);
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama3_renders_headers() {
        let text = ChatTemplate::Llama3.render("S", "03 Dec 2026", &[("user", "U")]);
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
             Cutting Knowledge Date: December 2023\nToday Date: 03 Dec 2026\n\nS<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn today_is_written_as_metas_template_writes_it() {
        let d = today();
        let parts: Vec<&str> = d.split(' ').collect();
        assert_eq!(parts.len(), 3, "{d}");
        assert_eq!(parts[0].len(), 2, "{d}");
        assert!(
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].contains(&parts[1])
        );
        assert!(parts[2].parse::<u32>().unwrap() >= 2024, "{d}");
    }
}
