//! DPAPI: finding and describing blobs in any file on any OS ([`blob`]), and wrapping or
//! unwrapping a key file in place on Windows ([`protect`]).

pub mod blob;
pub mod protect;

pub use blob::*;
