//! The names that travel beyond the host, checked in one place.
//!
//! - The **service name** is the prefix of every route (`/{name}/…`) and the routing key of
//!   the device's messages, so it must be a usable URL path and AMQP routing key: 1 to 255
//!   bytes of ASCII letters, digits, `-`, `_` and `.`, in one or more path segments separated
//!   by `/` (a leading `/` is dropped: `/x` is `x`). No segment is empty, `.` or `..`.
//! - A **plugin or argument name** becomes a `--` option, a `BREWBLOX_` variable, a config key
//!   and a log field: 1 to 255 bytes of ASCII letters, digits, `-` and `_`, starting with a
//!   letter or digit.

use std::fmt;

/// The longest name, in bytes: an AMQP short string.
pub const MAX_NAME_BYTES: usize = 255;

/// The service-name rule, as help texts and errors state it.
pub const SERVICE_NAME_RULE: &str = "1 to 255 bytes of ASCII letters, digits, '-', '_' and '.'; \
     '/' separates path segments";

/// The plugin- and argument-name rule, as errors state it.
pub const IDENTIFIER_RULE: &str = "1 to 255 bytes of ASCII letters, digits, '-' and '_', \
     starting with a letter or digit";

/// A name that breaks its rule; `Display` says which name, why, and the rule, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    /// What the name is for: "service name", "plugin name", "argument name".
    pub what: &'static str,
    /// The name as given.
    pub name: String,
    /// What is wrong with it.
    pub reason: NameProblem,
    rule: &'static str,
}

/// What is wrong with a name, as the error's middle part says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is {0} bytes long, more than {MAX_NAME_BYTES}")]
    TooLong(usize),
    #[error("it contains {0:?}")]
    Char(char),
    #[error("it ends in '/'")]
    EndsInSlash,
    #[error("it has an empty path segment ('//')")]
    EmptySegment,
    #[error("'{0}' is not a path segment")]
    DotSegment(String),
    #[error("it does not start with a letter or digit")]
    Start,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug quoting escapes control characters: the name cannot break the line.
        write!(
            f,
            "{} {:?} is not usable: {} (accepted: {})",
            self.what, self.name, self.reason, self.rule
        )
    }
}

impl std::error::Error for InvalidName {}

/// Checks a service name and returns it without leading `/`.
pub fn service_name(text: &str) -> Result<String, InvalidName> {
    let invalid = |reason: NameProblem| InvalidName {
        what: "service name",
        name: text.to_owned(),
        reason,
        rule: SERVICE_NAME_RULE,
    };
    let name = text.trim_start_matches('/');
    check_length(name).map_err(invalid)?;
    for segment in name.split('/') {
        match segment {
            "" if name.ends_with('/') => return Err(invalid(NameProblem::EndsInSlash)),
            "" => return Err(invalid(NameProblem::EmptySegment)),
            "." | ".." => return Err(invalid(NameProblem::DotSegment(segment.to_owned()))),
            _ => check_chars(segment, |c| c == '.').map_err(invalid)?,
        }
    }
    Ok(name.to_owned())
}

/// Checks a plugin or argument name; `what` names it in the error ("plugin name").
pub fn identifier(what: &'static str, text: &str) -> Result<(), InvalidName> {
    let invalid = |reason: NameProblem| InvalidName {
        what,
        name: text.to_owned(),
        reason,
        rule: IDENTIFIER_RULE,
    };
    check_length(text).map_err(invalid)?;
    check_chars(text, |_| false).map_err(invalid)?;
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid(NameProblem::Start));
    }
    Ok(())
}

fn check_length(name: &str) -> Result<(), NameProblem> {
    match name.len() {
        0 => Err(NameProblem::Empty),
        len if len > MAX_NAME_BYTES => Err(NameProblem::TooLong(len)),
        _ => Ok(()),
    }
}

/// ASCII letters, digits, `-`, `_`, and what `also` allows.
fn check_chars(name: &str, also: impl Fn(char) -> bool) -> Result<(), NameProblem> {
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || also(c)))
    {
        Some(c) => Err(NameProblem::Char(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_url_paths_and_routing_keys() {
        for (given, kept) in [
            ("_service", "_service"),
            ("/x", "x"),
            ("a/b", "a/b"),
            ("my-svc.1", "my-svc.1"),
        ] {
            assert_eq!(service_name(given).as_deref(), Ok(kept));
        }
        assert_eq!(service_name(&"s".repeat(255)).unwrap().len(), 255);
        for bad in [
            "",
            "/",
            "trail/",
            "a//b",
            "a/../b",
            ".",
            "new\nline",
            "esc\u{1b}[31m",
            "sp ace",
            "q?",
            "h#",
            "{x}",
            "*",
            "é",
            "%2f",
        ] {
            assert!(service_name(bad).is_err(), "{bad:?}");
        }
        let err = service_name(&"s".repeat(256)).unwrap_err();
        assert_eq!(err.reason, NameProblem::TooLong(256), "{err}");
    }

    #[test]
    fn errors_stay_on_one_line_and_state_the_rule() {
        let err = service_name("a\nb").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains(r#""a\nb""#), "{err}");
        assert!(err.contains("contains '\\n'"), "{err}");
        assert!(
            err.ends_with(&format!("(accepted: {SERVICE_NAME_RULE})")),
            "{err}"
        );
    }

    #[test]
    fn identifiers() {
        for good in ["device-plugin", "update_interval", "x", "9lives"] {
            assert_eq!(identifier("argument name", good), Ok(()), "{good}");
        }
        for bad in ["", "-x", "_x", "a.b", "a b", "a/b", "a\n", &"a".repeat(256)] {
            assert!(identifier("plugin name", bad).is_err(), "{bad:?}");
        }
    }
}
