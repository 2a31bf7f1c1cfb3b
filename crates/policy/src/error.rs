//! [`PolicyError`]: why a policy file was refused, and where in it.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of mistake a refused policy holds. Always the operator's: a
/// policy error never comes from a request, and the policy in force before a
/// reload stays in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not TOML, or TOML of the wrong shape: unknown field, missing field,
    /// wrong type, unknown `cloud` value.
    Syntax,
    /// `version` is not one this build reads.
    Version,
    /// A target or fallback names neither a configured tier nor a strategy,
    /// or a default tier is missing or of the wrong kind.
    UnknownTarget,
    /// A condition is not valid CEL, or is not a boolean condition.
    BadCondition,
    /// A condition references a variable that is not a signal.
    UnknownSignal,
    /// The rule's `cloud` setting contradicts its target or fallbacks.
    CloudConflict,
    /// The file has no `[[rule]]`.
    NoRules,
    /// The last rule is not a catch-all, so some request could match none.
    NoCatchAll,
    /// Two rules share a name, or a name is not fit for a response header.
    BadName,
    /// A rule can never match.
    Unreachable,
}

/// A refused policy: `path:line:column: reason`, lines and columns from 1,
/// columns counted in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub reason: String,
    pub kind: ErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.reason
        )
    }
}

impl std::error::Error for PolicyError {}

/// Turns byte offsets in the policy text into errors with line and column.
pub(crate) struct Locator<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    /// Line and column (from 1, in characters) of a byte offset; an offset
    /// past the end or inside a character is moved back to a boundary.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// The line (from 1) of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_col(offset).0
    }

    pub(crate) fn error(&self, offset: usize, kind: ErrorKind, reason: impl Into<String>) -> PolicyError {
        let (line, column) = self.line_col(offset);
        PolicyError {
            file: self.path.to_path_buf(),
            line,
            column,
            reason: reason.into(),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let loc = Locator {
            path: Path::new("p.toml"),
            text: "ab\ncé d\n",
        };
        assert_eq!(loc.line_col(0), (1, 1));
        assert_eq!(loc.line_col(3), (2, 1));
        // 'd' is byte 7 but the 4th character of line 2
        assert_eq!(loc.line_col(7), (2, 4));
        // inside 'é' (bytes 4..6): moved back to its start
        assert_eq!(loc.line_col(5), (2, 2));
        assert_eq!(loc.line_col(999), (3, 1));
        let e = loc.error(7, ErrorKind::Syntax, "bad");
        assert_eq!(e.to_string(), "p.toml:2:4: bad");
    }
}
