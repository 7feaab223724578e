//! Free text that reaches the database or a header: one rule for every field.
//!
//! PostgreSQL refuses NUL in `text`, and control characters have no business in
//! a title, a name or an email (they break logs, headers and e-mail). Limits
//! count characters, not bytes, so a name in a script of multi-byte letters gets
//! the same room as one in ASCII.

use crate::error::Invalid;

/// Which control characters a field may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// None: titles, names, emails.
    Single,
    /// Line feeds and tabs: descriptions.
    Multi,
}

/// `value` when it holds no refused control character and at most `max_chars`
/// characters; otherwise an [`Invalid`] naming `field`. Callers trim first
/// where surrounding blanks do not matter.
pub fn clean_text<'a>(field: &'static str, value: &'a str, max_chars: usize, lines: Lines) -> Result<&'a str, Invalid> {
    let allowed = |c: char| lines == Lines::Multi && (c == '\n' || c == '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        let what = match lines {
            Lines::Single => "must not contain control characters",
            Lines::Multi => "must not contain control characters other than line feeds and tabs",
        };
        return Err(Invalid::new(field, what));
    }
    if value.chars().count() > max_chars {
        return Err(Invalid::new(field, format!("must be at most {max_chars} characters")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_naming_the_field() {
        for bad in ["a\0b", "a\u{1b}[31m", "tab\there", "line\nbreak", "del\u{7f}", "c1\u{85}"] {
            let err = clean_text("name", bad, 200, Lines::Single).err();
            assert_eq!(err.map(|e| e.field), Some("name"), "{bad:?}");
        }
        assert!(clean_text("description", "two\nlines\tand a tab", 100, Lines::Multi).is_ok());
        assert!(clean_text("description", "nul\0", 100, Lines::Multi).is_err());
        assert!(clean_text("description", "cr\r", 100, Lines::Multi).is_err());
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(200);
        assert_eq!(at_limit.len(), 400);
        assert!(clean_text("name", &at_limit, 200, Lines::Single).is_ok());
        assert!(clean_text("name", &format!("{at_limit}é"), 200, Lines::Single).is_err());
    }
}
