//! Text another machine or account chose (a node's report, its error, a file name, a log
//! line), kept to one line before keyferry shows it: a line break in it would print a line
//! that looks like keyferry's own ("upgrade finished", "ok"). Control characters and
//! bidirectional marks are the terminal layer's to escape; line breaks are this one's,
//! since keyferry's own messages use them.

use std::borrow::Cow;

/// A size for people, in the one unit system keyferry shows (decimal: `330.20 MB`), through
/// the same formatter as its progress bars (indicatif's `{decimal_bytes}`).
pub fn size(bytes: u64) -> String {
    indicatif::DecimalBytes(bytes).to_string()
}

/// As [`size`], for a size a server reported as a signed number (a negative one is 0).
pub fn size_i64(bytes: i64) -> String {
    size(u64::try_from(bytes).unwrap_or(0))
}

/// Whether `c` starts a new line on a terminal or in a log reader.
fn breaks_line(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// `s` on one line: each line break written as `\n`, `\r` or `\u{…}`.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(breaks_line) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if breaks_line(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Words shown as a command line to type: a word with a space or a quote in it is put in
/// double quotes (its own double quotes doubled), the rest as they are. For reading only:
/// keyferry never hands such a line to a shell.
pub fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("\"{}\"", w.replace('"', "\"\""))
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_decimal_in_one_form() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(330_200_000), "330.20 MB");
        assert_eq!(size(1_500), "1.50 kB");
        assert_eq!(size_i64(-1), "0 B");
    }

    #[test]
    fn line_breaks_of_every_kind_are_written_out() {
        assert_eq!(one_line("web2: installed"), "web2: installed");
        assert_eq!(
            one_line("x\nupgrade finished\r\u{2028}y\u{85}"),
            "x\\nupgrade finished\\r\\u{2028}y\\u{85}"
        );
        assert!(!one_line("a\u{b}b\u{c}c").contains(['\u{b}', '\u{c}']));
    }

    #[test]
    fn a_command_line_keeps_each_word_one_word() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&w(&["keys", "push", "--to", "nps2 & co", "-c", "a\"b", ""])),
            "keys push --to \"nps2 & co\" -c \"a\"\"b\" \"\""
        );
    }
}
