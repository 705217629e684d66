//! TOTP codes (RFC 6238, through `totp-rs`): the parameters every
//! authenticator app understands (HMAC-SHA1, 6 digits, 30-second steps),
//! new secrets, the `otpauth://` URI and its QR code as SVG, and checking a
//! code to the time step it belongs to (so a step is accepted only once).

use qrcode::QrCode;
use qrcode::render::svg;
use totp_rs::{Algorithm, Builder, Totp};

/// The issuer authenticator apps show beside the account.
pub const ISSUER: &str = "StreamSpace";
/// Seconds per time step.
pub const STEP: u64 = 30;
const DIGITS: u8 = 6;
/// 160 bits, the length RFC 4226 recommends for HMAC-SHA1.
pub const SECRET_BYTES: usize = 20;

/// A new random TOTP secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).expect("the operating system's random source failed");
    secret
}

/// The TOTP of `secret` for `account` (a username: never contains ':').
fn totp(secret: &[u8], account: &str) -> Totp {
    // Our own parameters and a 160-bit secret are always valid.
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(0)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .expect("valid TOTP parameters")
}

/// The secret in base32, as typed into an app by hand.
pub fn base32(secret: &[u8]) -> String {
    totp(secret, "x").secret().to_base32()
}

/// The `otpauth://totp/…` URI an app scans.
pub fn otpauth_uri(secret: &[u8], account: &str) -> String {
    totp(secret, account)
        .to_url()
        .expect("a username is a valid account name")
}

/// The QR code of `uri` as a standalone SVG document.
pub fn qr_svg(uri: &str) -> String {
    // An otpauth URI is a few hundred bytes, far within a QR code's capacity.
    let code = QrCode::new(uri.as_bytes()).expect("the URI fits a QR code");
    code.render::<svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build()
}

/// Whether `code` has the shape of a TOTP code (6 digits, spaces allowed).
pub fn looks_like_code(code: &str) -> bool {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The time step (of the one before `now`, `now`'s, and the one after, for
/// clocks a little apart) whose code `code` is, if any.
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64) -> Option<u64> {
    if !looks_like_code(code) {
        return None;
    }
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let totp = totp(secret, "x");
    let current = now_secs / STEP;
    // Every candidate is checked, so the time taken does not say which matched.
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        if totp.check(&digits, step * STEP).is_some() && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed, at T = 59 s and 1111111109 s
    /// (8-digit codes 94287082 and 07081804; their last 6 digits here).
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let seed = b"12345678901234567890";
        assert_eq!(matching_step(seed, "287082", 59), Some(1));
        assert_eq!(
            matching_step(seed, "081804", 1_111_111_109),
            Some(37_037_036)
        );
        assert_eq!(matching_step(seed, "287083", 59), None);
    }

    #[test]
    fn one_step_either_side_is_accepted_and_no_more() {
        let seed = b"12345678901234567890";
        // The code of step 1 (T = 30..59) checked at T = 60..89 (step 2) and
        // at T = 0..29 (step 0), but not at step 3.
        assert_eq!(matching_step(seed, "287082", 75), Some(1));
        assert_eq!(matching_step(seed, "287082", 5), Some(1));
        assert_eq!(matching_step(seed, "287082", 95), None);
    }

    #[test]
    fn malformed_codes_match_nothing() {
        let seed = b"12345678901234567890";
        assert!(looks_like_code("287 082"));
        assert_eq!(matching_step(seed, "287 082", 59), Some(1));
        for bad in ["", "28708", "2870821", "abcdef", "２８７０８２"] {
            assert!(!looks_like_code(bad), "{bad}");
            assert_eq!(matching_step(seed, bad, 59), None);
        }
    }

    #[test]
    fn the_uri_and_qr_code_carry_the_secret() {
        let secret = new_secret();
        assert_eq!(secret.len(), SECRET_BYTES);
        let uri = otpauth_uri(&secret, "alice");
        assert!(
            uri.starts_with("otpauth://totp/StreamSpace:alice?"),
            "{uri}"
        );
        assert!(
            uri.contains(&format!("secret={}", base32(&secret))),
            "{uri}"
        );
        assert!(uri.contains("issuer=StreamSpace"), "{uri}");
        let svg = qr_svg(&uri);
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    }
}
