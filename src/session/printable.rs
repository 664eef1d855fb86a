//! Text from files and flags made safe to print: a session file is data, so an escape sequence in
//! it must not reach the terminal as one (it could clear the screen, retitle the window or hide the
//! rest of a message).

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with control characters and bidirectional overrides written as Rust escapes (`\u{1b}`,
/// `\n`); borrowed unchanged when there are none. Backslashes are left alone, so applying it twice
/// gives the same text as once.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls (escape sequences start with ESC or CSI) and the bidi controls that can make
/// text display in an order other than the one it has.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(printable("resnet50 ü"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ny\tz\r"), "x\\ny\\tz\\r");
        assert_eq!(printable("\u{9b}\u{7f}\u{202e}"), "\\u{9b}\\u{7f}\\u{202e}");
        let once = printable("\u{1b}]0;title\u{7}").into_owned();
        assert_eq!(printable(&once), once);
    }
}
