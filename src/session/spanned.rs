//! Typed reads over a parsed TOML document that keep every value's position.
//!
//! Session files are read by walking toml's spanned document tree rather than through serde derives,
//! because every error must name the dotted key (`tenant[1].sla.percentile`) and say what was
//! expected in the words of the session format, which serde's generic messages cannot.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::printable::printable;

/// A session file that could not be turned into a run: where, which key, and what was expected.
///
/// Displays as `file:line:column: key: message` (the key is left out for plain syntax errors, the
/// position for errors that have none, such as a file that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no position.
    pub line: usize,
    /// 1-based, in characters; 0 when the error has no position.
    pub column: usize,
    /// Dotted key such as `tenant[0].rate`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

/// Keys, values and file names come from the user: control characters in them are shown escaped.
impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", printable(&self.file.display().to_string()))?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", printable(&self.key))?;
        }
        write!(f, ": {}", printable(&self.message))
    }
}

impl std::error::Error for SessionError {}

/// 1-based line and character column of a byte offset (clamped into the text).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The source text and file name, so that any span can become a positioned error.
pub(crate) struct Doc<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

pub(crate) type Result<T> = std::result::Result<T, SessionError>;

impl Doc<'_> {
    pub fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> SessionError {
        let (line, column) = line_col(self.text, span.start);
        SessionError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// A value with its dotted key, ready to be read as the type the format expects.
#[derive(Clone, Copy)]
pub(crate) struct Field<'d, 't, 'i> {
    pub doc: &'d Doc<'d>,
    pub key: &'t str,
    pub value: &'t Spanned<DeValue<'i>>,
}

/// Describes a TOML value for "expected X, found Y" messages.
fn found(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string '{s}'"),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(x) => format!("number {x}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("date-time {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

impl<'d, 't, 'i> Field<'d, 't, 'i> {
    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    pub fn fail(&self, message: impl Into<String>) -> SessionError {
        self.doc.error(self.span(), self.key, message)
    }

    fn expected(&self, what: &str) -> SessionError {
        self.fail(format!(
            "expected {what}, found {}",
            found(self.value.get_ref())
        ))
    }

    pub fn str(&self, what: &str) -> Result<&'t str> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(what)),
        }
    }

    /// Any finite number; integers are accepted where a fraction is allowed.
    pub fn number(&self, what: &str) -> Result<f64> {
        let x = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .map(|v| v as f64)
                .map_err(|_| self.expected(what))?,
            DeValue::Float(f) => f.as_str().parse::<f64>().map_err(|_| self.expected(what))?,
            _ => return Err(self.expected(what)),
        };
        if x.is_finite() {
            Ok(x)
        } else {
            Err(self.fail(format!("expected {what}, found {x}")))
        }
    }

    /// A whole number within `min..=max`.
    pub fn integer(&self, what: &str, min: u64, max: u64) -> Result<u64> {
        let DeValue::Integer(i) = self.value.get_ref() else {
            return Err(self.expected(what));
        };
        let v = i128::from_str_radix(i.as_str(), i.radix()).map_err(|_| self.expected(what))?;
        if v < i128::from(min) || v > i128::from(max) {
            let range = if max == u64::MAX {
                format!("of at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            return Err(self.fail(format!("expected {what} {range}, found {v}")));
        }
        u64::try_from(v).map_err(|_| self.expected(what))
    }

    pub fn u32(&self, what: &str, min: u32, max: u32) -> Result<u32> {
        let v = self.integer(what, u64::from(min), u64::from(max))?;
        u32::try_from(v).map_err(|_| self.expected(what))
    }

    /// A humantime duration string such as `"60s"`, `"1m 30s"` or `"250ms"`, strictly positive
    /// and at most `max` (see [`super::limits`]).
    pub fn duration(&self, max: std::time::Duration) -> Result<std::time::Duration> {
        let what = "a duration such as \"30s\", \"250ms\" or \"2m\"";
        let s = self.str(what)?;
        let d = humantime::parse_duration(s)
            .map_err(|e| self.fail(format!("expected {what}, found '{s}' ({e})")))?;
        if d.is_zero() {
            return Err(self.fail(format!("expected a duration above zero, found '{s}'")));
        }
        if d > max {
            return Err(self.fail(format!(
                "expected a duration of at most {}, found '{s}'",
                humantime::format_duration(max)
            )));
        }
        Ok(d)
    }

    pub fn array(&self, what: &str) -> Result<&'t [Spanned<DeValue<'i>>]> {
        match self.value.get_ref() {
            DeValue::Array(a) => Ok(a),
            _ => Err(self.expected(what)),
        }
    }

    pub fn table(&self, what: &str) -> Result<&'t DeTable<'i>> {
        match self.value.get_ref() {
            DeValue::Table(t) => Ok(t),
            _ => Err(self.expected(what)),
        }
    }
}

/// One TOML table under a dotted prefix, with its allowed keys checked up front.
pub(crate) struct Table<'d, 't, 'i> {
    pub doc: &'d Doc<'d>,
    pub prefix: String,
    pub table: &'t DeTable<'i>,
    /// Dotted keys of every allowed entry, built once so fields can borrow them.
    keys: Vec<(&'static str, String)>,
}

impl<'d, 't, 'i> Table<'d, 't, 'i> {
    /// Rejects any key not in `allowed` (the first one in source order), suggesting the nearest.
    pub fn new(
        doc: &'d Doc<'d>,
        prefix: String,
        table: &'t DeTable<'i>,
        allowed: &[&'static str],
    ) -> Result<Self> {
        let mut unknown: Vec<_> = table
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.get_ref().as_ref()))
            .collect();
        unknown.sort_by_key(|(k, _)| k.span().start);
        if let Some((k, _)) = unknown.first() {
            let name = k.get_ref().as_ref();
            let key = join(&prefix, name);
            let hint = match did_you_mean(name, allowed.iter().copied()) {
                Some(s) => format!(" (did you mean '{s}'?)"),
                None => format!(" (expected one of: {})", allowed.join(", ")),
            };
            return Err(doc.error(k.span(), &key, format!("unknown key '{name}'{hint}")));
        }
        let keys = allowed.iter().map(|k| (*k, join(&prefix, k))).collect();
        Ok(Table {
            doc,
            prefix,
            table,
            keys,
        })
    }

    /// The entry for `name`; `None` when absent (or, a caller's slip, not an allowed key).
    pub fn get(&self, name: &str) -> Option<Field<'d, '_, 'i>> {
        let (_, key) = self.keys.iter().find(|(k, _)| *k == name)?;
        let value = self.table.get(name)?;
        Some(Field {
            doc: self.doc,
            key,
            value,
        })
    }

    pub fn key(&self, name: &str) -> String {
        join(&self.prefix, name)
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

pub(crate) use crate::suggest::did_you_mean;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        let x = text.find('"').unwrap();
        assert_eq!(line_col(text, x), (2, 6));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }
}
