//! IIS's own way to free the application's files: stop its application pool while files go
//! in, start it again afterwards (`appcmd.exe`, Windows with IIS only). The pool starts again
//! when the guard is dropped, whether the sync worked or not.

use crate::error::{Error, Result};

/// A stopped application pool; dropping it starts the pool again.
pub struct AppPool {
    #[cfg_attr(not(windows), allow(dead_code))]
    name: String,
}

impl AppPool {
    /// Stops the pool `name` on this machine.
    pub fn stop(name: &str) -> Result<AppPool> {
        if name.is_empty() || name.contains(['"', '\0', '\n', '\r']) {
            return Err(Error::InvalidInput(format!(
                "{name:?} is not an IIS application pool name"
            )));
        }
        appcmd("stop", name)?;
        Ok(AppPool {
            name: name.to_owned(),
        })
    }
}

impl Drop for AppPool {
    fn drop(&mut self) {
        let _ = appcmd("start", &self.name);
    }
}

#[cfg(windows)]
fn appcmd(verb: &str, name: &str) -> Result<()> {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
    let exe = std::path::PathBuf::from(root).join("System32\\inetsrv\\appcmd.exe");
    if !exe.is_file() {
        return Err(Error::Unsupported(format!(
            "IIS's {} is not there: IIS is not installed on this machine, so there is no \
             application pool to stop (use --app-offline, or run sync on the IIS server)",
            exe.display()
        )));
    }
    let status = std::process::Command::new(&exe)
        .args([verb, "apppool", &format!("/apppool.name:{name}")])
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::io(&exe, e))?;
    if !status.success() {
        return Err(Error::InvalidInput(format!(
            "appcmd {verb} apppool {name:?} failed ({status}); check the pool's name in IIS Manager"
        )));
    }
    Ok(())
}

#[cfg(not(windows))]
fn appcmd(_verb: &str, _name: &str) -> Result<()> {
    Err(Error::Unsupported(
        "--app-pool stops an IIS application pool: Windows only (use --app-offline)".into(),
    ))
}
