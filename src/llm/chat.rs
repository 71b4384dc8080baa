//! Chat templates. GGUF files carry a Jinja template; wick recognises the two families its
//! models use (ChatML for SmolLM2 and Qwen-style models, Llama 3's header format) and renders
//! them directly, which keeps a Jinja engine out of the appliance.

use candle_core::quantized::gguf_file::Content;

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
            ChatTemplate::Llama3 => format!("<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"),
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

    /// The start of every prompt: the begin marker, then the system message unless `system`
    /// is empty. The engine prefills exactly this before the first turn.
    pub fn opening(self, system: &str) -> String {
        let mut s = self.begin().to_string();
        if !system.is_empty() {
            s.push_str(&self.message("system", system));
        }
        s
    }

    /// The whole prompt: the opening for `system`, `messages` (role, content), and the
    /// assistant prompt.
    pub fn render(self, system: &str, messages: &[(&str, &str)]) -> String {
        let mut s = self.opening(system);
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
        let text = ChatTemplate::ChatMl.render("Be brief.", &[("user", "Hi?")]);
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama3_renders_headers() {
        let text = ChatTemplate::Llama3.render("S", &[("user", "U")]);
        assert_eq!(
            text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }
}
