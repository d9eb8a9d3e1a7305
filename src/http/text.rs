//! Rules for client text that the handlers check and `/api/openapi.json` states, written
//! once so the two say the same thing. Lengths count characters (code points), as JSON
//! Schema's `maxLength` does; "blank" is Unicode `White_Space`, as Rust's `trim` uses,
//! spelled out as a character class so that every regex dialect reads it alike.

/// JSON Schema `pattern` (unanchored): the text has a character that is not white space.
/// Must stay the literal used in `#[schema(pattern = ...)]` annotations (a test checks).
pub const NOT_BLANK: &str =
    "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// JSON Schema `pattern`: no control characters (Unicode `Cc`), and not blank.
pub const PRINTABLE_NOT_BLANK: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00-\\x1f\\x7f-\\x9f]*$";

/// True when `s` has a character that is not white space ([`NOT_BLANK`]).
pub fn not_blank(s: &str) -> bool {
    s.chars().any(|c| !c.is_whitespace())
}

/// True when `s` has no control character and is not blank ([`PRINTABLE_NOT_BLANK`]).
pub fn printable_not_blank(s: &str) -> bool {
    !s.chars().any(char::is_control) && not_blank(s)
}

/// Length in characters, as JSON Schema counts it.
pub fn chars(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character Rust calls white space, and only those, is in the blank class.
    const BLANKS: &[char] = &[
        '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}',
        '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}',
        '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}',
        '\u{3000}',
    ];

    #[test]
    fn the_blank_class_is_exactly_rusts_white_space() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(c.is_whitespace(), BLANKS.contains(&c), "{:x}", c as u32);
        }
    }

    #[test]
    fn blank_and_control_text_is_told_apart() {
        assert!(!not_blank(" \u{3000}\t"));
        assert!(not_blank(" a "));
        assert!(printable_not_blank("Ada Lovelace"));
        assert!(!printable_not_blank("a\u{0}b"));
        assert!(!printable_not_blank("\u{85}"));
        assert!(!printable_not_blank(" "));
    }
}
