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
    /// Read the passphrase from this file (refused if group or others can read it)
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
            let mut opened = keyferry::fs::open_regular(path)?.ok_or_else(|| {
                Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such passphrase file"),
                )
            })?;
            check_private(&opened)?;
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

    /// The passphrase from a file or descriptor, or else asked on the terminal.
    pub fn read_or_prompt(&self, ui: &Ui, prompt: &str) -> Result<Passphrase, Failure> {
        if let Some(p) = self.supplied()? {
            return Ok(p);
        }
        if !ui.can_prompt() {
            return Err(Error::Passphrase(if ui.batch {
                "--batch forbids asking for the passphrase".into()
            } else {
                "no terminal to ask for the passphrase on".into()
            })
            .into());
        }
        let text = rpassword::prompt_password(prompt)
            .map_err(|e| Error::Passphrase(format!("cannot read the passphrase: {e}")))?;
        Ok(Passphrase::from_text(text)?)
    }
}

/// Refuses a passphrase file that group or others may read.
fn check_private(opened: &keyferry::fs::Opened) -> Result<(), Failure> {
    let path = &opened.path;
    #[cfg(unix)]
    {
        let mode = opened.meta.unix.map(|u| u.2).unwrap_or(0o777);
        if mode & 0o044 != 0 {
            return Err(Failure::new(
                "passphrase",
                format!(
                    "{} is readable by {} (mode {:04o})",
                    path.display(),
                    if mode & 0o004 != 0 {
                        "everyone"
                    } else {
                        "its group"
                    },
                    mode & 0o7777
                ),
                Some("make it private first: chmod 600 FILE"),
            ));
        }
    }
    // On Windows the file's DACL decides: refuse any allow ACE for a broad group.
    #[cfg(windows)]
    {
        let sddl = keyferry::os::security_of(&opened.file).map_err(|e| Error::io(path, e))?;
        if let Some(who) = keyferry::os::broad_ace(&sddl) {
            return Err(Failure::new(
                "passphrase",
                format!(
                    "{} is readable by {who} (its ACL allows it)",
                    path.display()
                ),
                Some("make it private first: icacls FILE /inheritance:r /grant:r \"%USERNAME%\":F"),
            ));
        }
    }
    Ok(())
}
