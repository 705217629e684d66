//! One-time recovery codes: for logging in when the authenticator is lost.
//!
//! Each code is 80 random bits written as 16 base32 characters in groups of
//! four (`abcd-efgh-ijkl-mnop`). 80 bits cannot be brute-forced from a
//! hash, so, like tokens, only their SHA-256 is stored (`secrets::hash`),
//! and each row is deleted when its code is used. A new set replaces the old.

use crate::auth::secrets;

/// Codes in a set.
pub const COUNT: usize = 10;
const BYTES: usize = 10;
/// RFC 4648 base32, lowercased: no 0/1/8/9, so nothing reads alike.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Longest input worth normalising: a code with separators and spaces.
pub const MAX_INPUT: usize = 64;

/// A new set of codes, to show once, and their hashes, to store.
pub fn new_set() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..COUNT).map(|_| new_code()).collect();
    let hashes = codes.iter().map(|c| hash(c)).collect();
    (codes, hashes)
}

fn new_code() -> String {
    let mut bytes = [0u8; BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let chars = base32(&bytes);
    chars
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// 10 bytes are exactly 16 base32 characters, five bits each.
fn base32(bytes: &[u8; BYTES]) -> String {
    let mut out = String::with_capacity(16);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// The code as typed, in its canonical form: case, dashes and spaces do not
/// matter. `None` if it cannot be a recovery code.
pub fn normalise(input: &str) -> Option<String> {
    if input.len() > MAX_INPUT {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == 16 && code.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(code)
}

/// The stored form of a code (normalised first, so any spelling matches).
pub fn hash(code: &str) -> String {
    let canonical = normalise(code).unwrap_or_else(|| code.to_owned());
    secrets::hash(&format!("streamspace-recovery:{canonical}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_distinct_well_formed_codes() {
        let (codes, hashes) = new_set();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), COUNT);
        for (code, hashed) in codes.iter().zip(&hashes) {
            assert_eq!(code.len(), 19, "{code}");
            assert_eq!(code.matches('-').count(), 3, "{code}");
            assert_eq!(&hash(code), hashed);
            assert!(!hashed.contains(&code.replace('-', "")));
        }
    }

    #[test]
    fn spelling_does_not_matter_but_content_does() {
        let (codes, _) = new_set();
        let code = &codes[0];
        let shouted = code.to_uppercase().replace('-', " ");
        assert_eq!(hash(&shouted), hash(code));
        assert_eq!(
            normalise(&shouted).as_deref(),
            Some(&*code.replace('-', ""))
        );
        assert_ne!(hash(&codes[1]), hash(code));
        for bad in ["", "123456", "abcd-efgh-ijkl-mno", "abcd-efgh-ijkl-mno1"] {
            assert_eq!(normalise(bad), None, "{bad}");
        }
        assert_eq!(normalise(&"a".repeat(MAX_INPUT + 1)), None);
    }

    #[test]
    fn base32_matches_rfc_4648() {
        // RFC 4648 section 10: BASE32("fooba") = "MZXW6YTB".
        let bytes = *b"foobafooba";
        assert_eq!(base32(&bytes), "mzxw6ytbmzxw6ytb");
    }
}
