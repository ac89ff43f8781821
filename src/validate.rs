//! Shared input rules: NUL bytes, lengths in characters and bytes, control
//! and invisible characters, Unicode normalization, JSON depth and size.
//!
//! Every data function checks its inputs with these before it sends a
//! statement, so a bad value is a [`Error::Validation`] naming the field
//! and nothing is written. The limits themselves are public constants of
//! the modules that own the fields (see the README, "Input rules").

use serde_json::Value as Json;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::{Error, Result};

/// Which characters a text field accepts besides printable ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chars {
    /// Free text (extracted resume text, chunk text): anything but NUL
    /// (PostgreSQL `text` cannot hold it).
    Any,
    /// One line shown to people (titles, names): no control characters
    /// (`Cc`: NUL, line breaks, tabs, escapes) and no line or paragraph
    /// separators; format characters such as the zero-width joiner stay
    /// allowed (emoji sequences, Indic and Persian scripts need them).
    Line,
    /// An identifier or address (uid, e-mail, URL, path): additionally no
    /// format characters (`Cf`: zero-width space, bidi overrides, soft
    /// hyphen), which make two different values look the same.
    Visible,
}

/// A text field's rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextRule {
    pub field: &'static str,
    /// Maximum length in characters (Unicode scalar values).
    pub max_chars: usize,
    /// Maximum length in UTF-8 bytes.
    pub max_bytes: usize,
    pub chars: Chars,
    /// Whether an empty or blank (only whitespace or invisible characters)
    /// value is accepted.
    pub blank_ok: bool,
    /// Whether leading or trailing whitespace is accepted.
    pub padding_ok: bool,
}

impl TextRule {
    /// A one-line field of at most `max_chars` characters (and 4 bytes per
    /// character), non-blank, not padded.
    pub const fn line(field: &'static str, max_chars: usize) -> Self {
        Self {
            field,
            max_chars,
            max_bytes: max_chars * 4,
            chars: Chars::Line,
            blank_ok: false,
            padding_ok: false,
        }
    }

    /// Checks `value`.
    pub fn check(&self, value: &str) -> Result<()> {
        let field = self.field;
        if let Some(at) = value.find('\0') {
            return Err(invalid(
                field,
                format!("contains a NUL character at byte {at}; PostgreSQL text cannot hold it"),
            ));
        }
        if value.len() > self.max_bytes {
            return Err(invalid(
                field,
                format!(
                    "is {} bytes long; the limit is {} bytes (UTF-8)",
                    value.len(),
                    self.max_bytes
                ),
            ));
        }
        let chars = value.chars().count();
        if chars > self.max_chars {
            return Err(invalid(
                field,
                format!(
                    "is {chars} characters long; the limit is {} characters",
                    self.max_chars
                ),
            ));
        }
        if !self.blank_ok && is_blank(value) {
            return Err(invalid(
                field,
                "must not be empty or only whitespace or invisible characters".into(),
            ));
        }
        if !self.padding_ok && value.trim() != value {
            return Err(invalid(
                field,
                "must not start or end with whitespace; trim it first".into(),
            ));
        }
        if let Some((i, c)) = value
            .chars()
            .enumerate()
            .find(|&(_, c)| !allowed(self.chars, c))
        {
            return Err(invalid(
                field,
                format!(
                    "character {i} is {} ({c:?}), which is not allowed here",
                    describe(c)
                ),
            ));
        }
        Ok(())
    }
}

/// True when `value` is empty or holds only whitespace and invisible
/// (format) characters.
pub(crate) fn is_blank(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_whitespace() || c.general_category() == GeneralCategory::Format)
}

fn allowed(chars: Chars, c: char) -> bool {
    match chars {
        Chars::Any => c != '\0',
        Chars::Line => !matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        ),
        Chars::Visible => {
            allowed(Chars::Line, c) && c.general_category() != GeneralCategory::Format
        }
    }
}

fn describe(c: char) -> String {
    let kind = match c.general_category() {
        GeneralCategory::Control => "a control character",
        GeneralCategory::Format => "an invisible format character",
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => "a line break",
        _ => "a character",
    };
    format!("{kind} U+{:04X}", u32::from(c))
}

/// `value` in Unicode Normalization Form C (composed), so that canonically
/// equivalent spellings (`é` as one code point or as `e` + combining accent)
/// are one value.
pub(crate) fn nfc(value: &str) -> String {
    if unicode_normalization::is_nfc(value) {
        value.to_owned()
    } else {
        value.nfc().collect()
    }
}

/// Rejects a NUL anywhere in `value`.
pub(crate) fn no_nul(field: &'static str, value: &str) -> Result<()> {
    match value.find('\0') {
        Some(at) => Err(invalid(
            field,
            format!("contains a NUL character at byte {at}; PostgreSQL cannot store it"),
        )),
        None => Ok(()),
    }
}

/// What [`check_json`] found wrong, for the caller to put in context.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonProblem {
    /// Nested deeper than the limit (`depth` levels at `path`).
    TooDeep { path: String },
    /// A key or string holding NUL (jsonb cannot store `\u0000`).
    Nul { path: String },
}

/// Walks `value` without recursion (a caller-built value may be nested far
/// deeper than the stack allows) and checks that arrays and objects nest at
/// most `max_depth` deep, counting the `enclosing` containers `value` sits
/// in (`{"a": [1]}` alone is 2 deep), and that no key or string holds NUL.
/// Returns the first problem with the path to it.
pub(crate) fn check_json(value: &Json, enclosing: usize, max_depth: usize) -> Option<JsonProblem> {
    // (value, containers around it, path of it)
    let mut stack: Vec<(&Json, usize, String)> = vec![(value, enclosing, String::new())];
    while let Some((v, around, path)) = stack.pop() {
        match v {
            Json::String(s) if s.contains('\0') => return Some(JsonProblem::Nul { path }),
            Json::Array(_) | Json::Object(_) if around + 1 > max_depth => {
                return Some(JsonProblem::TooDeep { path });
            }
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    stack.push((item, around + 1, format!("{path}[{i}]")));
                }
            }
            Json::Object(map) => {
                for (k, item) in map {
                    let path = format!("{path}.{}", printable_key(k));
                    if k.contains('\0') {
                        return Some(JsonProblem::Nul { path });
                    }
                    stack.push((item, around + 1, path));
                }
            }
            _ => {}
        }
    }
    None
}

/// A key shortened and escaped for an error message.
pub(crate) fn printable_key(key: &str) -> String {
    let short: String = key.chars().take(40).collect();
    let escaped = format!("{short:?}");
    let escaped = &escaped[1..escaped.len() - 1];
    if short.len() < key.len() {
        format!("{escaped}…")
    } else {
        escaped.to_owned()
    }
}

/// How deeply the JSON text `raw` nests arrays and objects (0 for a
/// scalar), scanning the bytes without recursion.
pub(crate) fn json_text_depth(raw: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in raw.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

pub(crate) fn invalid(field: &'static str, reason: String) -> Error {
    Error::Validation { field, reason }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RULE: TextRule = TextRule::line("title", 5);

    fn field_of(r: Result<()>) -> Option<&'static str> {
        match r {
            Err(Error::Validation { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn nul_control_blank_padding_and_length_are_rejected() {
        for bad in [
            "a\0b",
            "",
            "   ",
            "\u{200B}",
            " ab",
            "ab\n",
            "a\tb",
            "a\u{2028}b",
            "abcdef",
        ] {
            assert_eq!(field_of(RULE.check(bad)), Some("title"), "{bad:?}");
        }
        for good in ["a", "ab cd", "é", "👩\u{200D}💻"] {
            assert!(RULE.check(good).is_ok(), "{good:?}");
        }
        // Bytes are bounded too: 5 characters of 4 bytes are 20 bytes.
        let rule = TextRule {
            max_bytes: 8,
            ..RULE
        };
        assert!(rule.check("😀😀").is_ok());
        assert!(rule.check("😀😀😀").is_err());
    }

    #[test]
    fn visible_rejects_format_characters_and_any_only_nul() {
        let visible = TextRule {
            chars: Chars::Visible,
            ..RULE
        };
        assert!(visible.check("a\u{200B}b").is_err());
        assert!(visible.check("a\u{202E}b").is_err());
        let any = TextRule {
            chars: Chars::Any,
            padding_ok: true,
            ..RULE
        };
        assert!(any.check("a\tb\n").is_ok());
        assert!(any.check("a\0").is_err());
    }

    #[test]
    fn nfc_composes() {
        assert_eq!(nfc("e\u{301}"), "\u{e9}");
        assert_eq!(nfc("\u{e9}"), "\u{e9}");
    }

    #[test]
    fn json_depth_and_nul_are_found_without_recursion() {
        let mut deep = json!(1);
        for _ in 0..100_000 {
            deep = Json::Array(vec![deep]);
        }
        assert!(matches!(
            check_json(&deep, 0, 32),
            Some(JsonProblem::TooDeep { .. })
        ));
        // Dropping a value this deep recurses: unwind it by hand.
        let mut v = deep;
        while let Json::Array(mut items) = v {
            v = items.pop().unwrap_or(Json::Null);
        }

        let v = json!({"a": [1, {"b": [2]}]});
        assert_eq!(check_json(&v, 0, 4), None);
        assert_eq!(check_json(&v, 1, 5), None);
        assert_eq!(
            check_json(&v, 0, 3),
            Some(JsonProblem::TooDeep {
                path: ".a[1].b".into()
            })
        );
        assert_eq!(
            check_json(&json!({"a": ["x\u{0}"]}), 0, 32),
            Some(JsonProblem::Nul {
                path: ".a[0]".into()
            })
        );
        assert!(matches!(
            check_json(&json!({"k\u{0}": 1}), 0, 32),
            Some(JsonProblem::Nul { .. })
        ));
    }

    #[test]
    fn json_text_depth_skips_strings() {
        assert_eq!(json_text_depth("1"), 0);
        assert_eq!(json_text_depth(r#"{"a":[1,{"b":"[[["}]}"#), 3);
        assert_eq!(json_text_depth(r#"["\"[", []]"#), 2);
    }
}
