//! Rustdoc's link markup in descriptions, made plain text.
//!
//! Schema descriptions are the types' doc comments, written for rustdoc: `[`State`]`,
//! `[device](crate::Device)`, `[text][ref]` with `[ref]: path` below. In the API
//! documentation those targets resolve to nothing, and the UI showed the brackets and paths
//! verbatim. Links to real URLs (`[spec](https://…)`) stay: the UI renders them (OpenAPI
//! descriptions are CommonMark). Code spans are left alone.

use std::collections::HashMap;

use serde_json::Value;

/// Keys whose values are data (examples, defaults), not documentation: left alone.
const DATA_KEYS: &[&str] = &["default", "example", "examples", "enum", "const"];

/// Keys whose values map names (fields, schemas, paths, statuses, media types) to
/// documented objects: every entry is walked, whatever its name.
const NAMED_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "definitions",
    "$defs",
    "schemas",
    "paths",
    "responses",
    "content",
    "headers",
    "callbacks",
    "links",
    "encoding",
];

/// Strips link markup from every `description` of an OpenAPI document.
pub fn strip_descriptions(document: &mut Value) {
    walk(document, false);
}

fn walk(value: &mut Value, named_map: bool) {
    match value {
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                if named_map {
                    walk(item, false);
                } else if key == "description" && item.is_string() {
                    if let Value::String(text) = item {
                        *text = strip_doc_links(text);
                    }
                } else if !DATA_KEYS.contains(&key.as_str()) {
                    walk(item, NAMED_MAPS.contains(&key.as_str()));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, false)),
        _ => {}
    }
}

/// `text` with intra-doc links replaced by their text and reference definitions removed.
pub fn strip_doc_links(text: &str) -> String {
    if !text.contains('[') {
        return text.to_owned();
    }
    let (body, definitions) = take_definitions(text);
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(index) = rest.find(['[', '`']) {
        out.push_str(&rest[..index]);
        rest = &rest[index..];
        if rest.starts_with('`') {
            let end = code_span_end(rest);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        match link(rest, &definitions) {
            Some((replacement, used)) => {
                out.push_str(&replacement);
                rest = &rest[used..];
            }
            None => {
                out.push('[');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text without its reference definition lines (`[label]: target`), and the
/// definitions by lower-cased label.
fn take_definitions(text: &str) -> (String, HashMap<String, String>) {
    let mut definitions = HashMap::new();
    let mut kept: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        match definition(line) {
            Some((label, target)) => {
                definitions.insert(label.to_lowercase(), target.to_owned());
            }
            None => kept.push(line),
        }
    }
    // A definition on its own last line leaves a dangling newline behind.
    while kept.last().is_some_and(|line| line.trim().is_empty()) && kept.len() > 1 {
        kept.pop();
    }
    (kept.join("\n"), definitions)
}

/// `[label]: target` (CommonMark: up to three spaces of indentation).
fn definition(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let inner = trimmed.strip_prefix('[')?;
    let close = inner.find(']')?;
    let target = inner[close + 1..].strip_prefix(':')?.trim();
    if close == 0 || target.is_empty() || target.contains(char::is_whitespace) {
        return None;
    }
    Some((&inner[..close], target))
}

/// The length of the code span at the start of `text` (a run of backticks, up to the same
/// run), or of the unmatched run alone.
fn code_span_end(text: &str) -> usize {
    let run = text.len() - text.trim_start_matches('`').len();
    let fence = &text[..run];
    match text[run..].find(fence) {
        Some(close) => run + close + run,
        None => run,
    }
}

/// The link at the start of `text` (which starts with `[`): its replacement and how many
/// bytes it spans; `None` when the brackets are not a link.
fn link(text: &str, definitions: &HashMap<String, String>) -> Option<(String, usize)> {
    let label_end = closing_bracket(text)?;
    let label = &text[1..label_end];
    let after = &text[label_end + 1..];
    if let Some(inline) = after.strip_prefix('(') {
        let close = closing_paren(inline)?;
        let target = inline[..close].trim();
        let used = label_end + 2 + close + 1;
        return Some(if is_url(target) {
            (text[..used].to_owned(), used)
        } else {
            (plain(label), used)
        });
    }
    let (reference, used) = match after.strip_prefix('[') {
        Some(reference) => {
            let close = reference.find(']')?;
            let name = &reference[..close];
            let name = if name.is_empty() { label } else { name };
            (name, label_end + 2 + close + 1)
        }
        None => (label, label_end + 1),
    };
    match definitions.get(&reference.to_lowercase()) {
        Some(target) if is_url(target) => Some((format!("[{label}]({target})"), used)),
        Some(_) => Some((plain(label), used)),
        None if used > label_end + 1 || is_intra_doc(label) => Some((plain(label), used)),
        None => None,
    }
}

/// The index of the `]` closing the `[` at the start of `text`, skipping code spans and
/// nested brackets.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut index = 0;
    while index < text.len() {
        let rest = &text[index..];
        if rest.starts_with('`') {
            index += code_span_end(rest);
            continue;
        }
        let c = rest.chars().next()?;
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            '\n' if rest[1..].starts_with('\n') => return None,
            _ => {}
        }
        index += c.len_utf8();
    }
    None
}

/// The index of the `)` closing an inline link's target (which may contain `()`).
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(index),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A target the reader can follow: an absolute URL or a mail address.
fn is_url(target: &str) -> bool {
    let target = target.trim_start_matches('<');
    target.contains("://") || target.starts_with("mailto:")
}

/// Whether a bracketed text with no target is rustdoc's shortcut link: one code span
/// (`` [`State`] ``) or a Rust path (`[Device]`, `[crate::Device]`, `[struct@Device]`,
/// `[f()]`, `[m!]`). Other brackets (`[1, 2]`, `[see below]`) are text.
fn is_intra_doc(label: &str) -> bool {
    if let Some(code) = single_code_span(label) {
        return !code.is_empty();
    }
    let path = strip_disambiguator(label);
    let path = path
        .strip_suffix("()")
        .or_else(|| path.strip_suffix('!'))
        .unwrap_or(path);
    path.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The content of `text` when all of it is one code span.
fn single_code_span(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// `struct@Device` → `Device` (rustdoc's disambiguators).
fn strip_disambiguator(text: &str) -> &str {
    match text.split_once('@') {
        Some((kind, path)) if kind.chars().all(|c| c.is_ascii_lowercase()) => path,
        _ => text,
    }
}

/// A link's text as plain text: a lone code span loses its backticks, a disambiguator its
/// prefix; other markup in it stays.
fn plain(label: &str) -> String {
    let label = strip_disambiguator(label);
    single_code_span(label).unwrap_or(label).to_owned()
}

#[cfg(test)]
mod tests {
    use super::{strip_descriptions, strip_doc_links as strip};
    use serde_json::json;

    #[test]
    fn every_description_of_a_document_and_nothing_else() {
        let link = "The [`State`] of the [device](crate::Device)";
        let mut doc = json!({
            "info": {"description": link},
            "paths": {"/a": {"get": {
                "description": link,
                "parameters": [{"name": "q", "description": link}],
                "responses": {"default": {"description": link}},
            }}},
            "components": {"schemas": {"S": {
                "description": link,
                "properties": {
                    "description": {"type": "string", "description": link},
                    "default": {"description": link},
                },
                "default": {"description": link},
                "enum": [{"description": link}],
            }}},
        });
        strip_descriptions(&mut doc);
        let plain = "The State of the device";
        assert_eq!(doc["info"]["description"], plain);
        let get = &doc["paths"]["/a"]["get"];
        assert_eq!(get["description"], plain);
        assert_eq!(get["parameters"][0]["description"], plain);
        assert_eq!(get["responses"]["default"]["description"], plain);
        let schema = &doc["components"]["schemas"]["S"];
        assert_eq!(schema["description"], plain);
        assert_eq!(schema["properties"]["description"]["description"], plain);
        assert_eq!(schema["properties"]["default"]["description"], plain);
        // Data stays as it is.
        assert_eq!(schema["default"]["description"], link);
        assert_eq!(schema["enum"][0]["description"], link);
    }

    #[test]
    fn intra_doc_links_become_their_text() {
        assert_eq!(
            strip("The [`State`] of the [device](crate::Device)"),
            "The State of the device"
        );
        assert_eq!(
            strip("See [Device] and [crate::Device]."),
            "See Device and crate::Device."
        );
        assert_eq!(
            strip("A [struct@Device], [`f()`], [m!]"),
            "A Device, f(), m!"
        );
        assert_eq!(
            strip("Reads [the state](Self::state()) now"),
            "Reads the state now"
        );
        assert_eq!(strip("[`a`](crate::a) and [`b`][crate::b]"), "a and b");
    }

    #[test]
    fn reference_links_and_their_definitions() {
        assert_eq!(
            strip("Uses [the store][store] and [Other][].\n\n[store]: crate::Store\n[other]: crate::Other"),
            "Uses the store and Other."
        );
        // A definition with a URL keeps the link, written inline.
        assert_eq!(
            strip("See [the spec][spec].\n[spec]: https://spec.openapis.org/oas/v3.0.3"),
            "See [the spec](https://spec.openapis.org/oas/v3.0.3)."
        );
    }

    #[test]
    fn real_urls_code_and_plain_brackets_stay() {
        for text in [
            "See [OpenAPI](https://spec.openapis.org/oas/v3.0.3) and <https://example.com>",
            "Mail [us](mailto:a@example.com)",
            "Values in [1, 2] or [see below]",
            "Index with `a[i]` or ``[`State`]``",
            "An array `[x]` of [0..10]",
            "Unclosed [bracket and [`State`",
            "Nothing to do",
        ] {
            assert_eq!(strip(text), text);
        }
        assert_eq!(
            strip("Mixed: [`State`] and [site](http://x.y/z_(a))"),
            "Mixed: State and [site](http://x.y/z_(a))"
        );
    }

    #[test]
    fn multi_byte_text_is_kept() {
        assert_eq!(strip("Température [`État`] °C"), "Température État °C");
    }
}
