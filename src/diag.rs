//! Errors in the admin's files, located so they can be fixed at once: file,
//! line and field (`config/roster.toml:16: [[shift]] station: unknown station
//! "helth"`).
//!
//! Both TOML files are read the same way: serde reads a raw shape whose
//! checked values keep their `toml::Spanned` position ([`parse_toml`] turns
//! its errors into located ones), then a validator turns the raw shape into
//! the model, reporting every problem through one [`Checker`] so the admin
//! sees them all in one round.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One problem in a config file, located so the admin can fix it at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file with the problem.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, e.g. `[menu] timeout_s`, when known.
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every problem found in one file, so the admin fixes them in one round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The text of `path`, or an error naming it.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: None,
            message: format!("cannot read: {e}"),
        }])
    })
}

/// Reads the raw shape `T` from `text`; a syntax error, a typo'd key or a
/// wrong type comes back naming `source`, the line and the `[table] key`.
pub(crate) fn parse_toml<T: DeserializeOwned>(
    text: &str,
    source: &Path,
) -> Result<T, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        let span = e.span();
        ConfigErrors(vec![ConfigError {
            file: source.to_path_buf(),
            line: span.as_ref().map(|s| line_of(text, s.start)),
            field: span.and_then(|s| field_at(text, s)),
            message: friendly(e.message()),
        }])
    })
}

/// Collects the problems a validator finds, each with its line and field.
pub(crate) struct Checker<'a> {
    source: &'a Path,
    /// Byte offsets of the text's newlines, so a line costs a binary search
    /// however large the file (a district roster has tens of thousands).
    newlines: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    /// A checker for `text`, read from `source`.
    pub(crate) fn new(text: &str, source: &'a Path) -> Checker<'a> {
        Checker {
            source,
            newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
            errors: Vec::new(),
        }
    }

    /// Records a problem with `field` at `span` (the line is left out when
    /// there is no span, e.g. a list that was written empty or not at all).
    pub(crate) fn error(
        &mut self,
        span: impl Into<Option<Range<usize>>>,
        field: &str,
        message: String,
    ) {
        self.errors.push(ConfigError {
            file: self.source.to_path_buf(),
            line: span.into().map(|s| self.line(s)),
            field: Some(field.to_string()),
            message,
        });
    }

    /// The 1-based line where `span` starts, for "already used at line N".
    pub(crate) fn line(&self, span: Range<usize>) -> usize {
        // As `line_of`: one more than the newlines before the span.
        self.newlines.partition_point(|&nl| nl < span.start) + 1
    }

    /// `value` if nothing was wrong, else every problem in line order.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            self.errors.sort_by_key(|e| e.line);
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Rewrites serde's "invalid type: string \"six\", expected X" as
/// "expected X, found \"six\"", which reads better after the key name.
pub(crate) fn friendly(message: &str) -> String {
    let message = message.trim();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                let found = found
                    .strip_prefix("string ")
                    .or_else(|| found.strip_prefix("integer "))
                    .unwrap_or(found);
                return format!("expected {expected}, found {found}");
            }
        }
    }
    message.to_string()
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort `[table] key` for an error span: the key on the span's line, or the
/// spanned text itself when the span is the key (unknown keys), under the nearest
/// table header above.
pub(crate) fn field_at(text: &str, span: Range<usize>) -> Option<String> {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let spanned = text.get(span.clone()).unwrap_or("").trim();

    let is_header = line.trim_start().starts_with('[');
    let key = if is_header {
        spanned.trim_matches(|c| c == '[' || c == ']').to_string()
    } else {
        match line.split_once('=') {
            Some((k, _)) if start >= line_start + k.len() => k.trim().to_string(),
            _ => spanned.to_string(),
        }
    };
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| match l.find(']') {
            Some(i) if l.starts_with("[[") => &l[..(i + 2).min(l.len())],
            Some(i) => &l[..=i],
            None => l,
        });
    match (table, key.is_empty()) {
        (_, true) => table.map(str::to_string),
        (Some(t), false) if !is_header => Some(format!("{t} {key}")),
        _ => Some(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_read_expected_then_found() {
        assert_eq!(
            friendly("invalid type: string \"six\", expected a whole number of seconds"),
            "expected a whole number of seconds, found \"six\""
        );
        assert_eq!(friendly(" unknown field `x` "), "unknown field `x`");
    }

    #[test]
    fn fields_name_their_table() {
        let text = "[sip]\nlisten = \"x\"\n\n[[station]]\nkey = \"1\"\n";
        let at = |needle: &str| {
            let i = text.find(needle).unwrap_or(0);
            field_at(text, i..i + needle.len())
        };
        assert_eq!(at("\"x\"").as_deref(), Some("[sip] listen"));
        assert_eq!(at("\"1\"").as_deref(), Some("[[station]] key"));
        assert_eq!(at("station").as_deref(), Some("station"));
        assert_eq!(line_of(text, text.find("key").unwrap_or(0)), 5);
    }

    #[test]
    fn checker_reports_in_line_order() {
        let text = "a = 1\nb = 2\nc = 3\n";
        let mut c = Checker::new(text, Path::new("f.toml"));
        c.error(12..13, "c", "third".into());
        c.error(None, "all", "somewhere".into());
        c.error(0..1, "a", "first".into());
        assert_eq!(c.line(6..7), line_of(text, 6));
        assert_eq!(c.line(5..6), line_of(text, 5));
        assert_eq!(c.line(99..99), line_of(text, 99));
        let errs = c.finish(()).unwrap_err().to_string();
        assert_eq!(
            errs,
            "f.toml: all: somewhere\nf.toml:1: a: first\nf.toml:3: c: third"
        );
    }
}
