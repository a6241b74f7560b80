//! The one owner of output. stdout carries data (fingerprints, reports, JSON); messages,
//! prompts and progress go to stderr. Nothing else in the crate prints.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::failure::Failure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// When to colour messages (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// The styles of keyferry's own words on stderr.
const ERROR: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();
const WARNING: anstyle::Style = anstyle::AnsiColor::Yellow.on_default().bold();
const HINT: anstyle::Style = anstyle::AnsiColor::Cyan.on_default().bold();
const BOLD: anstyle::Style = anstyle::Style::new().bold();

/// Columns a table takes where nothing says the width (not a terminal, no `COLUMNS`).
const TABLE_WIDTH_UNKNOWN: usize = 120;

pub struct Ui {
    pub json: bool,
    pub batch: bool,
    color: bool,
    spinner: RefCell<Option<ProgressBar>>,
    /// A command run as a step of an upgrade on this node: what it writes on stdout (its
    /// report) is kept here for the run, not printed.
    capture: Option<RefCell<Vec<u8>>>,
}

impl Ui {
    pub fn new(json: bool, batch: bool, color: ColorChoice) -> Ui {
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
            }
        };
        Ui {
            json,
            batch,
            color,
            spinner: RefCell::new(None),
            capture: None,
        }
    }

    /// The Ui of a command an upgrade run runs on this node: JSON and batch (its messages
    /// and progress lines on stderr, as they come; no questions), its stdout kept for the
    /// run ([`Ui::captured`]).
    pub fn capturing(color: ColorChoice) -> Ui {
        Ui {
            capture: Some(RefCell::new(Vec::new())),
            ..Ui::new(true, true, color)
        }
    }

    /// What a capturing Ui's command wrote on stdout.
    pub fn captured(&self) -> Vec<u8> {
        self.capture
            .as_ref()
            .map(|c| c.borrow().clone())
            .unwrap_or_default()
    }

    /// Writes to stdout, or to the capture.
    fn stdout(&self, bytes: &[u8]) {
        match &self.capture {
            Some(c) => c.borrow_mut().extend_from_slice(bytes),
            None => {
                let _ = std::io::stdout().lock().write_all(bytes);
            }
        }
    }

    /// Whether a person can be shown something and asked something.
    pub fn can_prompt(&self) -> bool {
        !self.batch && std::io::stderr().is_terminal()
    }

    /// `s` in `style`; [`Ui::stderr`] keeps or strips the style.
    fn paint(&self, style: anstyle::Style, s: &str) -> String {
        format!("{style}{s}{style:#}")
    }

    /// stderr, coloured as `--color` decided (Windows consoles without ANSI through their
    /// own calls), or with every style stripped.
    fn stderr(&self) -> anstream::AutoStream<std::io::Stderr> {
        let choice = if self.color {
            anstream::ColorChoice::Always
        } else {
            anstream::ColorChoice::Never
        };
        anstream::AutoStream::new(std::io::stderr(), choice)
    }

    /// A table with keyferry's look, fitted to the terminal's width when there is one.
    pub fn table<const N: usize>(&self, header: [&str; N]) -> comfy_table::Table {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        // Fitted to the terminal; off one (a log, a ticket, a pipe), to a width that stays
        // readable there: long cells wrap inside their column (full values are in --json).
        let w = self.width().unwrap_or(TABLE_WIDTH_UNKNOWN);
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        t.set_width(u16::try_from(w).unwrap_or(u16::MAX));
        t.set_header(header);
        t
    }

    /// Columns to fit output into: the terminal's width, or `COLUMNS`; `None` when stdout is
    /// not a terminal and nothing says (pipes and files get full lines).
    pub fn width(&self) -> Option<usize> {
        if let Some(n) = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|n| *n >= 20)
        {
            return Some(n);
        }
        terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0))
    }

    /// A line of data on stdout.
    pub fn out(&self, line: &str) {
        self.stdout(format!("{}\n", escape(line)).as_bytes());
    }

    /// A line for the person running a long command: stdout, or stderr under --json (whose
    /// stdout is one document).
    pub fn say(&self, line: &str) {
        if self.json {
            eprintln!("{}", escape(line));
        } else {
            self.out(line);
        }
    }

    /// Bytes on stdout as they are (generated scripts and pages).
    pub fn raw(&self, bytes: &[u8]) {
        self.stdout(bytes);
    }

    /// The JSON document on stdout.
    /// One JSON document on stdout: serialised as JSON, never through the terminal escaper
    /// (whose `\u{..}` is not JSON), with the characters that could move or hide what a
    /// terminal shows written as JSON's own `\uXXXX` escapes (see [`json_text`]).
    fn json<T: Serialize>(&self, value: &T) {
        let text = serde_json::to_string_pretty(value).expect("report types serialise");
        self.stdout(format!("{}\n", json_text(&text)).as_bytes());
    }

    /// A command's result: under `--json` its document (`version`, `kind`, then the report's
    /// fields), else what `text` shows. The one place that chooses between the two.
    pub fn show<T: Serialize>(&self, kind: &'static str, report: &T, text: impl FnOnce()) {
        if self.json {
            self.json(&keyferry::report::Envelope {
                version: keyferry::report::version_of(kind),
                kind,
                report,
            });
        } else {
            text();
        }
    }

    /// [`Ui::show`] for a report whose type names its kind: one the upgrade run reads back
    /// ([`keyferry::report`]).
    pub fn show_report<T: keyferry::report::Kind>(&self, report: &T, text: impl FnOnce()) {
        self.show(T::KIND, report, text);
    }

    /// [`Ui::show`] for a document that carries its own `version` and `kind` (a node report,
    /// an audit: formats other programs read).
    pub fn show_document<T: Serialize>(&self, document: &T, text: impl FnOnce()) {
        if self.json {
            self.json(document);
        } else {
            text();
        }
    }

    /// Whether standard input is a terminal (a person can type an answer).
    pub fn stdin_is_terminal(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    /// Whether standard output is a terminal (binary output would garble it).
    pub fn stdout_is_terminal(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    /// Whether standard error is a terminal (progress bars can redraw there).
    pub fn stderr_is_terminal(&self) -> bool {
        std::io::stderr().is_terminal()
    }

    /// One line of another machine's messages (keyferry on node `from`) on stderr: escaped
    /// like everything else printed, and marked with where it came from, so that no line a
    /// node sends can pass for one of this keyferry's own.
    pub fn relay(&self, from: &str, line: &str) {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}| {}",
            escape(from),
            escape(line).replace('\n', "\\n")
        );
    }

    /// A message on stderr (suppressed under --json, whose stdout says it all).
    pub fn info(&self, msg: &str) {
        if !self.json {
            eprintln!("{}", escape(msg));
        }
    }

    /// Asks a yes/no question on the terminal; only "y" is yes.
    pub fn ask_yes(&self, question: &str) -> bool {
        use std::io::Write;
        eprint!("{} [y/N] ", escape(question));
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).is_ok()
            && ["y", "yes"]
                .iter()
                .any(|w| line.trim().eq_ignore_ascii_case(w))
    }

    /// Asks for a line on the terminal (trimmed of its line end); `None` when none comes.
    pub fn ask_line(&self, question: &str) -> Option<String> {
        use std::io::Write;
        eprint!("{} ", escape(question));
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok()?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    pub fn warn(&self, msg: &str) {
        let _ = writeln!(
            self.stderr(),
            "{} {}",
            self.paint(WARNING, "warning:"),
            escape(msg)
        );
    }

    pub fn failure(&self, f: &Failure) {
        let mut e = self.stderr();
        let _ = writeln!(e, "{} {}", self.paint(ERROR, "error:"), escape(&f.message));
        if let Some(h) = &f.hint {
            let _ = writeln!(e, "{} {}", self.paint(HINT, "hint:"), escape(h));
        }
        if self.json {
            self.json(&keyferry::report::ErrorEnvelope::of(&f.doc()));
        }
    }

    /// Shows a generated passphrase once, on the terminal only (never stdout, never a log).
    pub fn show_passphrase_once(&self, words: &str) {
        let mut e = self.stderr();
        let _ = writeln!(
            e,
            "\n{}\n",
            self.paint(BOLD, "Passphrase for this bundle (shown once):")
        );
        let _ = writeln!(e, "    {words}\n");
        let _ = writeln!(
            e,
            "Give it to the admin of the target node by voice or type it there yourself. Do not \
             store it in a file, chat, mail or ticket, and never send it with the bundle.\n"
        );
    }
}

impl keyferry::progress::Progress for Ui {
    fn start(&self, what: &str) {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
        pb.set_message(what.to_owned());
        pb.enable_steady_tick(Duration::from_millis(100));
        *self.spinner.borrow_mut() = Some(pb);
    }

    fn finish(&self) {
        if let Some(pb) = self.spinner.borrow_mut().take() {
            pb.finish_and_clear();
        }
    }

    fn items(&self, total: u64) {
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} nodes {elapsed}").expect("template"),
        );
        *self.spinner.borrow_mut() = Some(pb);
    }

    fn item_done(&self) {
        if let Some(pb) = self.spinner.borrow().as_ref() {
            pb.inc(1);
        }
    }

    fn items_finished(&self) {
        self.finish();
    }

    fn step(&self, message: &str) {
        if !self.json {
            self.out(message);
        }
    }
}

/// Text for a terminal: control characters (but newline and tab) and the Unicode
/// bidirectional controls are shown escaped, so text that came from a node report, a bundle,
/// a log or another program cannot clear the screen, set the window title or reorder what
/// the admin reads. Everything printed passes through here.
/// A character that can move the cursor, recolour or reorder what a terminal shows: every
/// control character (line breaks and tabs aside) and the bidirectional marks.
fn unsafe_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Serialised JSON made safe on a terminal and still valid JSON: every character
/// [`unsafe_on_terminal`] (all in the BMP, and inside JSON strings only, since JSON's own
/// syntax has none) written as `\uXXXX`.
pub fn json_text(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(unsafe_on_terminal) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_on_terminal(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = unsafe_on_terminal;
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `1 file`, `2 files`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Reports an argument error (exit 2), or prints help/version (exit 0).
pub fn clap_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                crate::exit::ERROR.into()
            } else {
                crate::exit::SUCCESS.into()
            }
        }
        _ => {
            if std::env::args().any(|a| a == "--json") {
                let msg = e.kind().to_string();
                let error = keyferry::report::ErrorDoc {
                    code: crate::failure::Code::Usage.as_str().into(),
                    message: msg,
                    hint: Some("see keyferry --help".into()),
                };
                let doc = keyferry::report::ErrorEnvelope::of(&error);
                println!(
                    "{}",
                    json_text(&serde_json::to_string_pretty(&doc).expect("json"))
                );
            }
            let _ = e.print();
            crate::exit::ERROR.into()
        }
    }
}
