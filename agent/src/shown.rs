//! Text from the bottle (names it asked or sent, and reasons that quote
//! them) made safe to show on the operator's terminal, as human text and
//! as JSON.
//!
//! The bottle chooses the bytes of an SNI, a Host header or a DNS question.
//! Printed raw, an escape sequence in one of them would be run by the
//! terminal of whoever reads `status` or `watch`: clear the screen, rewrite
//! the lines above (hide a denial), retitle the window, or worse on some
//! terminals. A carriage return or a newline would forge status lines.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is shown as itself: printable ASCII other than the
/// backslash (which starts an escape, so it is escaped too, to keep every
/// escape unambiguous), and whatever else Rust's `escape_debug` prints as
/// itself (letters, marks after a letter are escaped: they combine with
/// the text before them).
fn plain(c: char) -> bool {
    match c {
        '\\' => false,
        ' '..='~' => true,
        c if c.is_ascii() => false,
        c => {
            let mut e = c.escape_debug();
            e.next() == Some(c) && e.next().is_none()
        }
    }
}

/// `text` for a human: control characters (C0 with ESC, CR and LF, DEL,
/// C1), format characters (bidi overrides, zero-width ones), line
/// separators, private-use and unassigned code points, and the backslash,
/// escaped as Rust's `escape_debug` does (`\u{1b}`, `\r`, `\\`); printable
/// ASCII and ordinary letters of any script stay as they are.
pub fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match plain(c) {
            true => out.push(c),
            false => out.extend(c.escape_debug()),
        }
    }
    Cow::Owned(out)
}

/// `shown` for an optional name, `none` when there is none.
pub fn shown_or<'a>(text: Option<&'a str>, none: &'a str) -> Cow<'a, str> {
    text.map_or(Cow::Borrowed(none), shown)
}

/// JSON text as serde_json writes it, with every character `shown` would
/// escape, beyond the C0 controls serde_json escapes itself, written as a
/// `\uXXXX` escape: DEL and the C1 controls (`\u009b` is a CSI on some
/// terminals) and the rest. Outside strings JSON is ASCII, so only string
/// contents change, and they decode to the same text.
pub fn json(text: String) -> String {
    // ASCII but DEL: serde_json escaped the C0 controls in strings, and
    // outside them is only JSON's own whitespace.
    let kept = |c: char| (c.is_ascii() && c != '\x7f') || plain(c);
    if text.chars().all(kept) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if kept(c) {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_control(text: &str) -> bool {
        text.chars().any(|c| c.is_control())
    }

    #[test]
    fn an_escape_sequence_or_a_carriage_return_in_a_name_is_shown_escaped() {
        let name = "evil.test\x1b[2J\rok.test\n\u{9b}31m\x7f";
        let out = shown(name);
        assert!(!has_control(&out), "{out:?}");
        assert_eq!(out, r"evil.test\u{1b}[2J\rok.test\n\u{9b}31m\u{7f}");
    }

    #[test]
    fn plain_names_and_letters_of_any_script_are_shown_as_they_are() {
        for name in [
            "api.example.com",
            "a-b_c.test:443",
            "bücher.test",
            "例え.テスト",
        ] {
            assert!(matches!(shown(name), Cow::Borrowed(_)), "{name}");
        }
    }

    #[test]
    fn bidi_overrides_zero_width_characters_and_backslashes_are_escaped() {
        assert_eq!(shown("a\u{202e}b\u{200b}c"), r"a\u{202e}b\u{200b}c");
        assert_eq!(
            shown(r"a\u{1b}"),
            r"a\\u{1b}",
            "an escape in the name is not taken for one of ours"
        );
        assert_eq!(shown_or(None, "-"), "-");
    }

    #[test]
    fn json_escapes_del_and_c1_and_still_decodes_to_the_same_text() {
        let name = "x\x1b[2J\u{9b}\x7f\u{202e}\u{1f600}é";
        let text = json(serde_json::to_string(&name).unwrap());
        assert!(!has_control(&text), "{text}");
        assert!(!text.contains('\u{9b}') && !text.contains('\x7f'), "{text}");
        assert!(text.contains("é"), "{text}");
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, name);
    }
}
