//! The DPAPI blob reader on untrusted bytes. Properties: never a panic; a blob `Blob::parse`
//! accepts re-serialises to exactly the input; every raw blob `classify` reports re-serialises
//! to exactly the bytes at its offset; a whole-file raw blob is what `Blob::parse` accepts.

#![no_main]

use keyferry::dpapi::{classify, Blob, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Blob::parse(data) {
        assert_eq!(b.to_bytes(), data);
        let _ = (b.scope(), b.variant(), b.description(), b.master_key_text());
    }
    let c = classify(data);
    for f in &c.blobs {
        if f.encoding == Encoding::Raw {
            let bytes = f.blob.to_bytes();
            assert_eq!(&data[f.offset..f.offset + f.len_in_file], &bytes[..]);
            if f.whole_file {
                assert_eq!(Blob::parse(data).as_ref(), Ok(&f.blob));
            }
        }
    }
});
