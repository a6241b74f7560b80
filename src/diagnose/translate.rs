//! PostgreSQL's messages in the languages it ships, read back into English so the catalogue
//! and the fact extraction work on one language.
//!
//! The translations are PostgreSQL's own, taken from its installed message catalogues by
//! `scripts/pg-messages` into `pg-messages.json` (data: a new language or message is a data
//! change, and a test checks the file against the catalogues where they are installed). A
//! translated message is matched as its catalogue writes it: its fixed text in order (case
//! and runs of blanks and line breaks aside), each `%s` (or `%2$s`, reordered) taking the
//! text up to the next fixed part; the facts land where the English message has them, so
//! `»nps«` and `« nps »` come out as `"nps"`.

use std::borrow::Cow;
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
struct Entry {
    lang: String,
    msgid: String,
    msgstr: String,
}

/// A translation ready to match: its fixed parts, and for each placeholder (in the order it
/// appears in the translation) the English argument it fills.
struct Pattern {
    lang: String,
    msgid: String,
    /// Fixed parts around the placeholders: `parts.len() == args.len() + 1`.
    parts: Vec<Vec<char>>,
    args: Vec<usize>,
    /// Its longest word, lower-cased: a message without it is not this one (a quick test
    /// before the match).
    needle: String,
}

fn patterns() -> &'static [Pattern] {
    static P: OnceLock<Vec<Pattern>> = OnceLock::new();
    P.get_or_init(|| {
        let entries: Vec<Entry> =
            serde_json::from_str(include_str!("pg-messages.json")).expect("pg-messages.json reads");
        let mut out: Vec<Pattern> = entries.into_iter().filter_map(compile).collect();
        // The most specific first: the longest fixed text.
        out.sort_by_key(|p| std::cmp::Reverse(p.parts.iter().map(Vec::len).sum::<usize>()));
        out
    })
}

/// Splits a printf format into its fixed parts and its arguments (`%s`, `%d`, `%u`, `%m`,
/// `%N$s`); `%%` is a percent sign.
fn compile(e: Entry) -> Option<Pattern> {
    let s: Vec<char> = e.msgstr.trim_end().chars().collect();
    let (mut parts, mut args) = (vec![Vec::new()], Vec::new());
    let mut next = 0;
    let mut i = 0;
    while i < s.len() {
        if s[i] != '%' {
            parts.last_mut()?.push(s[i]);
            i += 1;
            continue;
        }
        if s.get(i + 1) == Some(&'%') {
            parts.last_mut()?.push('%');
            i += 2;
            continue;
        }
        // %N$s, or a conversion with flags, width and length letters.
        let mut j = i + 1;
        let mut position = None;
        let digits: String = s[j..].iter().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() && s.get(j + digits.len()) == Some(&'$') {
            position = digits.parse::<usize>().ok().map(|n| n - 1);
            j += digits.len() + 1;
        }
        while j < s.len() && !s[j].is_ascii_alphabetic() {
            j += 1;
        }
        while j < s.len() && matches!(s[j], 'l' | 'z' | 'h') {
            j += 1;
        }
        j += 1;
        args.push(position.unwrap_or(next));
        next += 1;
        parts.push(Vec::new());
        i = j;
    }
    // A translation that is only placeholders would match anything.
    if parts.iter().all(|p| p.iter().all(|c| c.is_whitespace())) {
        return None;
    }
    let needle = parts
        .iter()
        .flat_map(|p| {
            p.iter()
                .collect::<String>()
                .split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .max_by_key(|w| w.chars().count())
        .unwrap_or_default();
    Some(Pattern {
        lang: e.lang,
        msgid: e.msgid,
        parts,
        args,
        needle,
    })
}

/// Whether `a` and `b` are the same letter regardless of case.
fn same(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

/// Where `part` occurs in `text` at or after `from` (blanks in `part` match any run of
/// blanks and line breaks): its start and end.
fn find(text: &[char], part: &[char], from: usize) -> Option<(usize, usize)> {
    let part: Vec<char> = trim(part);
    if part.is_empty() {
        return Some((from, from));
    }
    (from..text.len()).find_map(|start| {
        let (mut t, mut p) = (start, 0);
        while p < part.len() {
            if part[p].is_whitespace() {
                if !text.get(t).is_some_and(|c| c.is_whitespace()) {
                    return None;
                }
                while text.get(t).is_some_and(|c| c.is_whitespace()) {
                    t += 1;
                }
                while part.get(p).is_some_and(|c| c.is_whitespace()) {
                    p += 1;
                }
            } else if text.get(t).is_some_and(|&c| same(c, part[p])) {
                t += 1;
                p += 1;
            } else {
                return None;
            }
        }
        Some((start, t))
    })
}

fn trim(part: &[char]) -> Vec<char> {
    let s: String = part.iter().collect();
    s.trim().chars().collect()
}

/// A translated message in `text`, read back: where it is (`start..end`), and the English
/// message with its arguments in place.
fn read_back(text: &[char], p: &Pattern) -> Option<(usize, usize, String)> {
    let (first, mut at) = find(text, &p.parts[0], 0)?;
    let mut values = vec![String::new(); p.args.len()];
    for (k, part) in p.parts.iter().enumerate().skip(1) {
        let (start, end) = if k + 1 == p.parts.len() && trim(part).is_empty() {
            // The last placeholder takes the rest of the line.
            let end = text[at..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(text.len(), |n| at + n);
            (end, end)
        } else {
            find(text, part, at)?
        };
        let value: String = text[at..start].iter().collect();
        *values.get_mut(*p.args.get(k - 1)?)? = value.trim().to_owned();
        at = end;
    }
    // The English message with the same arguments, in its order.
    let mut english = String::new();
    let id: Vec<char> = p.msgid.trim_end().chars().collect();
    let (mut i, mut n) = (0, 0);
    while i < id.len() {
        if id[i] == '%' && id.get(i + 1) == Some(&'%') {
            english.push('%');
            i += 2;
        } else if id[i] == '%' {
            english.push_str(values.get(n).map_or("", String::as_str));
            n += 1;
            i += 1;
            while i < id.len() && !id[i].is_ascii_alphabetic() {
                i += 1;
            }
            i += 1;
        } else {
            english.push(id[i]);
            i += 1;
        }
    }
    Some((first, at, english))
}

/// `message` with each PostgreSQL message (or C library reason it quotes) in another language
/// replaced in place by its English text, the facts it quotes kept, and the original kept at
/// the end; or as it is.
pub fn english(message: &str) -> Cow<'_, str> {
    let mut text: Vec<char> = message.chars().collect();
    let mut langs: Vec<&str> = Vec::new();
    // Each pass replaces one piece; a message holds a few (libpq's prefix, the reason).
    for _ in 0..4 {
        let lower: String = text.iter().collect::<String>().to_lowercase();
        let Some((p, (start, end, english))) = patterns()
            .iter()
            .filter(|p| lower.contains(&p.needle))
            .find_map(|p| read_back(&text, p).map(|r| (p, r)))
        else {
            break;
        };
        text.splice(start..end, english.chars());
        if !langs.contains(&p.lang.as_str()) {
            langs.push(&p.lang);
        }
    }
    if langs.is_empty() {
        return Cow::Borrowed(message);
    }
    let english: String = text.into_iter().collect();
    Cow::Owned(format!(
        "{english} (PostgreSQL's {} message: {message})",
        langs.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every translation PostgreSQL ships for a message the catalogue knows, filled with
    /// facts the way the server fills it, reads back as the English message with the same
    /// facts, and diagnose recognises it as it recognises the English one.
    #[test]
    fn every_shipped_translation_reads_back_as_its_english_message() {
        let entries: Vec<Entry> = serde_json::from_str(include_str!("pg-messages.json")).unwrap();
        assert!(entries.len() > 100, "{}", entries.len());
        let facts = ["10.20.30.41", "repuser", "nps data", "no encryption"];
        let mut checked = 0;
        for e in &entries {
            let fill = |fmt: &str, positional: bool| {
                let mut out = String::new();
                let s: Vec<char> = fmt.chars().collect();
                let (mut i, mut n) = (0, 0);
                while i < s.len() {
                    if s[i] == '%' && s.get(i + 1) == Some(&'%') {
                        out.push('%');
                        i += 2;
                        continue;
                    }
                    if s[i] != '%' {
                        out.push(s[i]);
                        i += 1;
                        continue;
                    }
                    let mut j = i + 1;
                    let digits: String = s[j..].iter().take_while(|c| c.is_ascii_digit()).collect();
                    let mut arg = n;
                    if positional && !digits.is_empty() && s.get(j + digits.len()) == Some(&'$') {
                        arg = digits.parse::<usize>().unwrap() - 1;
                        j += digits.len() + 1;
                    }
                    while j < s.len() && !s[j].is_ascii_alphabetic() {
                        j += 1;
                    }
                    out.push_str(facts[arg]);
                    n += 1;
                    i = j + 1;
                }
                out
            };
            let translated = format!("FATAL:  {}", fill(e.msgstr.trim_end(), true));
            let want = fill(e.msgid.trim_end(), false);
            let got = english(&translated);
            assert!(
                got.contains(&want),
                "{} ({}): {translated:?} read back as {got:?}, not {want:?}",
                e.lang,
                e.msgid
            );
            let english_codes: Vec<&str> = crate::diagnose::match_message(&want)
                .iter()
                .map(|k| k.code)
                .collect();
            let translated_codes: Vec<&str> = crate::diagnose::explain::explain(&translated, None)
                .iter()
                .map(|x| x.known.code)
                .collect();
            assert_eq!(english_codes, translated_codes, "{} {}", e.lang, e.msgid);
            // Fragments (libpq's prefix, the C library's reason) make a message together.
            let fragment = e.msgid.ends_with(": ") || e.msgid.starts_with("Connection ");
            assert!(
                fragment || !english_codes.is_empty(),
                "{}: not in the catalogue",
                e.msgid
            );
            checked += 1;
        }
        assert_eq!(checked, entries.len());
        for lang in ["de", "fr", "es", "ja", "ru"] {
            assert!(patterns().iter().any(|p| p.lang == lang), "{lang}");
        }
    }

    #[test]
    fn facts_quoted_the_languages_way_come_out_as_the_facts() {
        let de = "FATAL:  kein pg_hba.conf-Eintrag für Host »10.0.5.9«, Benutzer »app«, \
                  Datenbank »nps«, keine Verschlüsselung";
        let e = english(de);
        assert!(
            e.starts_with(
                "FATAL:  no pg_hba.conf entry for host \"10.0.5.9\", user \"app\", database \"nps\""
            ),
            "{e}"
        );
        let fr = "FATAL:  aucune entrée dans pg_hba.conf pour l'hôte « 10.0.5.9 », \
                  utilisateur « app »,\nbase de données « nps », pas de chiffrement";
        assert!(english(fr).starts_with("FATAL:  no pg_hba.conf entry for host \"10.0.5.9\""));
        let f = crate::diagnose::facts::extract(&english(fr));
        assert_eq!(f.user.as_deref(), Some("app"), "{f:?}");
        assert_eq!(english("The printer is on fire"), "The printer is on fire");
        // A client's message: libpq's prefix and the C library's reason, both translated.
        let psql = "psql: Fehler: Verbindung zum Server auf »10.0.5.9«, Port 5433 \
                    fehlgeschlagen: Verbindungsaufbau abgelehnt";
        let e = english(psql);
        assert!(
            e.contains(
                "connection to server at \"10.0.5.9\", port 5433 failed: Connection refused"
            ),
            "{e}"
        );
        let found = crate::diagnose::explain::explain(psql, None);
        assert_eq!(found[0].known.code, "pg-connection-refused");
        assert_eq!(found[0].facts.port, Some(5433));
    }
}
