//! Control characters never reach a log line as they are: a message or value holding a
//! newline, a carriage return or a terminal escape (a plugin's file name, a handler's error,
//! a peer's routing key) would otherwise split the line or forge one that looks like ours.

use std::{borrow::Cow, fmt};

/// Whether `c` is written escaped: every control character (C0, DEL, C1) and the Unicode
/// line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn write_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

/// A writer that passes text on with its control characters escaped (`\n`, `\u{1b}`).
pub struct Escaping<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut start = 0;
        for (index, c) in text.char_indices() {
            if needs_escape(c) {
                self.0.write_str(&text[start..index])?;
                write_escaped(&mut self.0, c)?;
                start = index + c.len_utf8();
            }
        }
        self.0.write_str(&text[start..])
    }
}

/// `text` with its control characters escaped, for lines written outside the logger
/// (`eprintln!` before the logger exists).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    // Writing to a String cannot fail.
    let _ = fmt::Write::write_str(&mut Escaping(&mut out), text);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape("plain text, é ü 20°C"), "plain text, é ü 20°C");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nb\r\tc\u{1b}[31md\u{7f}\u{85}\u{2028}"),
            "a\\nb\\r\\tc\\u{1b}[31md\\u{7f}\\u{85}\\u{2028}"
        );
    }
}
