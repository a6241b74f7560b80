//! Addresses as PostgreSQL reads them in `pg_hba.conf`: through the C library's numeric
//! `getaddrinfo` (glibc here: `inet_aton`'s forms for IPv4, `inet_pton` for IPv6 with a zone),
//! and a CIDR length through `strtol`.
//!
//! So `010.020.000.005` is octal (8.16.0.5), `10.20.5` is 10.20.0.5, `0x0a000005` is 10.0.0.5,
//! `10.0.0.256` is no address at all (PostgreSQL then takes it for a host name), and `/-0`
//! is a prefix of 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A numeric address as `getaddrinfo(AI_NUMERICHOST)` reads it, or `None` where it answers
/// "no such name" (PostgreSQL then takes the text for a host name).
pub fn numeric(text: &str) -> Option<IpAddr> {
    if let Some(v4) = inet_aton_exact(text) {
        return Some(IpAddr::V4(v4));
    }
    let (addr, zone) = match text.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (text, None),
    };
    let v6: Ipv6Addr = addr.parse().ok()?;
    if let Some(zone) = zone {
        if !scope_ok(&v6, zone) {
            return None;
        }
    }
    Some(IpAddr::V6(v6))
}

/// glibc's `__inet6_scopeid_pton`: an interface name for a link-local address (one this
/// machine has), else a number.
fn scope_ok(addr: &Ipv6Addr, zone: &str) -> bool {
    let seg = addr.segments();
    let link_local = (seg[0] & 0xffc0) == 0xfe80 || seg[0] == 0xff01 || seg[0] == 0xff02;
    if link_local && interface_exists(zone) {
        return true;
    }
    !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_digit()) && zone.parse::<u32>().is_ok()
}

/// Whether this machine has a network interface of that name (the server's machine: keyferry
/// reads `pg_hba.conf` on the node that runs PostgreSQL).
fn interface_exists(name: &str) -> bool {
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        return false;
    }
    if cfg!(target_os = "linux") {
        std::path::Path::new("/sys/class/net").join(name).exists()
    } else {
        // Windows names interfaces by number in a zone; a name there is no interface.
        false
    }
}

/// glibc's `inet_aton`, requiring the whole text (as its numeric `getaddrinfo` does): one
/// to four parts, each decimal, octal (leading 0) or hexadecimal (leading 0x, then at least
/// one hex digit), the last part filling the bytes left; a part beyond its range, or past
/// 64 bits, is no address.
pub fn inet_aton_exact(text: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<u64> = Vec::new();
    let mut rest = text;
    loop {
        let (base, digits_from) =
            if let Some(h) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
                (16, h)
            } else if rest.starts_with('0') {
                (8, rest)
            } else {
                (10, rest)
            };
        let end = digits_from
            .find(|c: char| !c.is_digit(base))
            .unwrap_or(digits_from.len());
        let digits = &digits_from[..end];
        if digits.is_empty() {
            return None;
        }
        let mut val: u64 = 0;
        for d in digits.chars() {
            val = val
                .checked_mul(u64::from(base))?
                .checked_add(u64::from(d.to_digit(base)?))?;
        }
        rest = &digits_from[end..];
        match rest.strip_prefix('.') {
            Some(r) => {
                if parts.len() > 2 || val > 0xff {
                    return None;
                }
                parts.push(val);
                rest = r;
            }
            None => {
                if !rest.is_empty() {
                    return None;
                }
                let max = [0xffff_ffff, 0x00ff_ffff, 0xffff, 0xff][parts.len()];
                if val > max {
                    return None;
                }
                let mut out = val as u32;
                for (k, p) in parts.iter().enumerate() {
                    out |= (*p as u32) << (24 - 8 * k);
                }
                return Some(Ipv4Addr::from(out));
            }
        }
    }
}

/// A CIDR length as `strtol(text, &end, 10)` with the whole text used: leading blanks, a
/// sign, decimal digits (`/-0` is 0, `/08` is 8). `None` when it is not a number or is
/// beyond the family's bits.
pub fn cidr_bits(text: &str, v6: bool) -> Option<u8> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    // Past any family's bits either way (strtol clamps; the range check then fails).
    let v: i64 = digits.parse::<i64>().unwrap_or(i64::MAX);
    let v = if neg { -v } else { v };
    let max = if v6 { 128 } else { 32 };
    (0..=max).contains(&v).then_some(v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_takes_the_c_librarys_forms() {
        let v4 = |s: &str| inet_aton_exact(s).map(|a| a.to_string());
        assert_eq!(v4("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(v4("010.020.000.005").as_deref(), Some("8.16.0.5"));
        assert_eq!(v4("10.20.5").as_deref(), Some("10.20.0.5"));
        assert_eq!(v4("10.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(v4("167772165").as_deref(), Some("10.0.0.5"));
        assert_eq!(v4("0x0a000005").as_deref(), Some("10.0.0.5"));
        assert_eq!(v4("0xA.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(v4("10.65536").as_deref(), Some("10.1.0.0"));
        assert_eq!(v4("00").as_deref(), Some("0.0.0.0"));
        assert_eq!(v4("0xffffffff").as_deref(), Some("255.255.255.255"));
        // Each checked against glibc 2.36's numeric getaddrinfo.
        for bad in [
            "",
            "10.0.0.256",
            "10.0.0.5.",
            "10..0.5",
            "08.0.0.1",
            "10.0.0.5 ",
            "1.2.3.4.5",
            "a.b.c.d",
            ".1.2.3",
            "10.0.0.0x",
            "0x",
            "0x.0.0.1",
            "4294967296",
            "0x100000000",
            "18446744073709551617",
            "0xg",
        ] {
            assert_eq!(v4(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cidr_lengths_are_read_as_strtol_reads_them() {
        assert_eq!(cidr_bits("-0", false), Some(0));
        assert_eq!(cidr_bits("+32", false), Some(32));
        assert_eq!(cidr_bits("08", false), Some(8));
        assert_eq!(cidr_bits(" 8", false), Some(8));
        assert_eq!(cidr_bits("128", true), Some(128));
        for bad in ["", "33", "-1", "0x8", "8 ", "8a", "99999999999999999999999"] {
            assert_eq!(cidr_bits(bad, false), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv6_zones_are_an_interface_or_a_number() {
        assert!(numeric("fe80::1%1").is_some());
        assert!(numeric("2001:db8::1%x").is_none());
        assert!(numeric("::ffff:10.0.0.5").is_some());
        assert!(numeric("fe80::1%").is_none());
    }
}
