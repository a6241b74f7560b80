//! Where passphrases come from: the terminal, a file only its owner can read, or an inherited
//! file descriptor. Never argv, never the environment.

use crate::failure::Failure;
use crate::ui::Ui;
use clap::Args;
use keyferry::secret::Passphrase;
use keyferry::Error;
use std::path::PathBuf;

/// Longest passphrase read from a file or descriptor.
const MAX_PASSPHRASE: usize = 1024;

#[derive(Debug, Clone, Args)]
pub struct PassphraseArgs {
    /// Read the passphrase from this file (yours alone: mode 0600, or an owner-only ACL)
    #[arg(long, value_name = "PATH", conflicts_with = "passphrase_fd")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from this inherited file descriptor (0 = standard input)
    #[arg(long, value_name = "N")]
    pub passphrase_fd: Option<i32>,
}

impl PassphraseArgs {
    /// The passphrase from a file or descriptor, if one was named.
    pub fn supplied(&self) -> Result<Option<Passphrase>, Failure> {
        if let Some(path) = &self.passphrase_file {
            // Opened once, never through a link; the permission check and the read use the
            // same handle, so the file checked is the file read.
            let mut opened = keyferry::fs::open_regular(path)?
                .ok_or_else(|| Error::missing(path, "passphrase file"))?;
            keyferry::fs::check_passphrase_file(&opened)?;
            let bytes = opened.read_to_end_bounded(MAX_PASSPHRASE as u64, "passphrase file")?;
            return Ok(Some(Passphrase::from_bytes(bytes)?));
        }
        if let Some(fd) = self.passphrase_fd {
            let bytes = keyferry::os::read_fd(fd, MAX_PASSPHRASE)
                .map_err(|e| Error::Passphrase(format!("cannot read descriptor {fd}: {e}")))?;
            return Ok(Some(Passphrase::from_bytes(bytes)?));
        }
        Ok(None)
    }

    /// Runs `open` with the passphrase from a file or descriptor, or else asked on the
    /// terminal: there, a wrong passphrase may be typed again, three tries in all (as ssh and
    /// sudo allow). A file or descriptor gets one try: its content will not change.
    pub fn try_open<T>(
        &self,
        ui: &Ui,
        prompt: &str,
        mut open: impl FnMut(&Passphrase) -> Result<T, Error>,
    ) -> Result<T, Failure> {
        if let Some(p) = self.supplied()? {
            return Ok(open(&p)?);
        }
        const TRIES: u32 = 3;
        for attempt in 1..=TRIES {
            let p = self.read_or_prompt(ui, prompt)?;
            match open(&p) {
                Err(Error::WrongPassphrase) if attempt < TRIES => {
                    ui.warn(&format!(
                        "that passphrase does not open the bundle; try again ({} of {TRIES})",
                        attempt + 1
                    ));
                }
                r => return Ok(r?),
            }
        }
        unreachable!("the last try returns")
    }

    /// The passphrase from a file or descriptor, or else asked on the terminal.
    pub fn read_or_prompt(&self, ui: &Ui, prompt: &str) -> Result<Passphrase, Failure> {
        if let Some(p) = self.supplied()? {
            return Ok(p);
        }
        if !ui.can_prompt() {
            return Err(Failure::library(
                Error::Passphrase,
                if ui.batch {
                    "--batch forbids asking for the passphrase"
                } else {
                    "no terminal to ask for the passphrase on"
                },
                Some("pass --passphrase-file PATH (a file that is yours alone: mode 0600) or --passphrase-fd N"),
            ));
        }
        let text = rpassword::prompt_password(prompt)
            .map_err(|e| Error::Passphrase(format!("cannot read the passphrase: {e}")))?;
        Ok(Passphrase::from_text(text)?)
    }
}
