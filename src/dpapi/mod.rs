//! DPAPI: finding and describing blobs in any file on any OS (`blob`). Wrapping or
//! unwrapping a key file in place on Windows is a key change: `crate::keys::dpapi`.

pub(crate) mod blob;

pub use blob::*;

/// Decrypts a DPAPI blob on Windows (`CryptUnprotectData`, no UI) straight into
/// [`KeyBytes`](crate::secret::KeyBytes); elsewhere [`crate::os::DpapiError::Unsupported`].
pub fn unprotect(blob: &[u8]) -> Result<crate::secret::KeyBytes, crate::os::DpapiError> {
    crate::os::dpapi_unprotect(blob).map(crate::secret::KeyBytes::from_zeroizing)
}
