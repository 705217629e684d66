//! Who a verified ID token says the user is: the subject (the account's
//! lasting key), a StreamSpace username made from the username claim, the
//! groups claim (bounded), and whether the admin group is among them.

use super::OidcConfig;
use super::id_token::Claims;
use crate::error::ApiError;
use crate::store::Role;
use serde_json::Value;

/// More groups than this in one token are refused, not cut: which ones
/// would be dropped is not ours to choose.
pub const MAX_GROUPS: usize = 256;
/// The longest group name accepted, in bytes.
pub const MAX_GROUP_NAME: usize = 128;
/// `sub` is at most 255 ASCII characters (OIDC Core 2).
const MAX_SUBJECT: usize = 255;
/// The longest username claim worth turning into a username.
const MAX_USERNAME_CLAIM: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub username: String,
    pub groups: Vec<String>,
    /// None when no admin group is configured: the role is left as it is.
    pub role: Option<Role>,
}

pub fn identity(config: &OidcConfig, claims: &Claims) -> Result<Identity, ApiError> {
    let subject = match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() && sub.len() <= MAX_SUBJECT => sub.to_owned(),
        _ => {
            return Err(ApiError::Forbidden(format!(
                "the ID token's sub claim must be 1 to {MAX_SUBJECT} characters"
            )));
        }
    };
    let username = username(&config.username_claim, claims)?;
    let groups = groups(&config.groups_claim, claims)?;
    let role = config.admin_group.as_ref().map(|admins| {
        if groups.iter().any(|g| g == admins) {
            Role::Admin
        } else {
            Role::User
        }
    });
    Ok(Identity {
        subject,
        username,
        groups,
        role,
    })
}

/// The username claim made into a username: lower case, every run of
/// other characters than letters and digits one '-', at most 63 bytes
/// ("Alice.Smith@corp.example" becomes "alice-smith-corp-example").
fn username(claim: &str, claims: &Claims) -> Result<String, ApiError> {
    let value = claims.get(claim).and_then(Value::as_str).ok_or_else(|| {
        ApiError::Forbidden(format!(
            "the ID token has no {claim} claim to name the user: \
             map one in the identity provider, or choose another with --oidc-username-claim"
        ))
    })?;
    let made = slug(value);
    if value.len() > MAX_USERNAME_CLAIM || made.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "the {claim} claim {:?} cannot be made into a username: it needs letters or digits \
             (and at most {MAX_USERNAME_CLAIM} bytes)",
            value.chars().take(80).collect::<String>()
        )));
    }
    Ok(made)
}

fn slug(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(63);
    out.trim_end_matches('-').to_owned()
}

/// The groups claim: absent means none; otherwise a list of names, or a
/// single name, within the bounds.
fn groups(claim: &str, claims: &Claims) -> Result<Vec<String>, ApiError> {
    let names: Vec<&Value> = match claims.get(claim) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::String(_)) => vec![one],
        Some(_) => {
            return Err(ApiError::Forbidden(format!(
                "the {claim} claim must be a list of group names"
            )));
        }
    };
    if names.len() > MAX_GROUPS {
        return Err(ApiError::Forbidden(format!(
            "the {claim} claim lists {} groups; at most {MAX_GROUPS} are accepted: \
             narrow the claim in the identity provider",
            names.len()
        )));
    }
    let mut groups = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_str().map(str::trim).unwrap_or_default();
        if name.is_empty() || name.len() > MAX_GROUP_NAME {
            return Err(ApiError::Forbidden(format!(
                "every name in the {claim} claim must be 1 to {MAX_GROUP_NAME} bytes of text"
            )));
        }
        if !groups.iter().any(|g| g == name) {
            groups.push(name.to_owned());
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use url::Url;

    fn config(admin_group: Option<&str>) -> OidcConfig {
        let issuer = Url::parse("https://id.example").expect("url");
        let mut config = OidcConfig::new(issuer, "streamspace");
        config.admin_group = admin_group.map(str::to_owned);
        config
    }

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn usernames_are_made_from_the_claim() {
        assert_eq!(slug("Alice.Smith@corp.example"), "alice-smith-corp-example");
        assert_eq!(slug("--bob--"), "bob");
        assert_eq!(slug("x".repeat(100).as_str()).len(), 63);
        assert_eq!(slug("ü!"), "");
    }

    #[test]
    fn the_admin_group_makes_an_admin() {
        let token =
            claims(json!({"sub": "1", "preferred_username": "Ann", "groups": ["ops", "admins"]}));
        let found = identity(&config(Some("admins")), &token).expect("identity");
        assert_eq!(found.username, "ann");
        assert_eq!(found.role, Some(Role::Admin));
        let found = identity(&config(Some("root")), &token).expect("identity");
        assert_eq!(found.role, Some(Role::User));
        assert_eq!(
            identity(&config(None), &token).expect("identity").role,
            None
        );
    }

    #[test]
    fn groups_are_bounded() {
        let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        let token = claims(json!({"sub": "1", "preferred_username": "a", "groups": many}));
        let err = identity(&config(None), &token).expect_err("too many");
        assert!(err.to_string().contains("at most 256"), "{err}");
        let long = "g".repeat(MAX_GROUP_NAME + 1);
        let token = claims(json!({"sub": "1", "preferred_username": "a", "groups": [long]}));
        assert!(identity(&config(None), &token).is_err());
        let token = claims(json!({"sub": "1", "preferred_username": "a", "groups": "solo"}));
        assert_eq!(
            identity(&config(None), &token).expect("one").groups,
            ["solo"]
        );
    }

    #[test]
    fn a_missing_username_claim_says_which() {
        let token = claims(json!({"sub": "1"}));
        let err = identity(&config(None), &token).expect_err("no username");
        assert!(err.to_string().contains("preferred_username"), "{err}");
    }
}
