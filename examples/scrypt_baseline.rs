//! Baseline for `bench/keys.py`: the bare cost of age with one scrypt recipient at keyferry's
//! work factor, with no keyferry logic around it.
//!
//! `scrypt_baseline encrypt IN OUT PASSFILE` / `scrypt_baseline decrypt IN PASSFILE`

use age::secrecy::SecretString;
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pass = std::fs::read_to_string(args.last().unwrap()).unwrap();
    let pass = SecretString::from(pass.trim_end_matches('\n').to_owned());
    match args[1].as_str() {
        "encrypt" => {
            let input = std::fs::read(&args[2]).unwrap();
            let mut r = age::scrypt::Recipient::new(pass);
            r.set_work_factor(keyferry::keys::EXPORT_WORK_FACTOR);
            let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .unwrap();
            let out = std::fs::File::create(&args[3]).unwrap();
            let armor = age::armor::ArmoredWriter::wrap_output(out, age::armor::Format::AsciiArmor)
                .unwrap();
            let mut w = enc.wrap_output(armor).unwrap();
            w.write_all(&input).unwrap();
            w.finish().unwrap().finish().unwrap();
        }
        "decrypt" => {
            let f = std::fs::File::open(&args[2]).unwrap();
            let d = age::Decryptor::new(age::armor::ArmoredReader::new(std::io::BufReader::new(f)))
                .unwrap();
            let mut id = age::scrypt::Identity::new(pass);
            id.set_max_work_factor(keyferry::keys::MAX_IMPORT_WORK_FACTOR);
            let mut r = d
                .decrypt(std::iter::once(&id as &dyn age::Identity))
                .unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}
