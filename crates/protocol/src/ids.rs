//! Typed ids: one type per kind of thing, so that a session id can never be
//! passed where an agent id is expected (the rule "an agent only touches its
//! own sessions" rests on every such pair being the right way round).
//!
//! Each is a string on the wire, in the database and in the HTTP API, exactly
//! as before (`#[serde(transparent)]`, `#[sqlx(transparent)]`); what changes
//! is only what the compiler lets through. Any string parses: ids are looked
//! up, never validated, so an unknown one is a 404 as it always was.

use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// Defines one id type; `$mint` makes a fresh one.
macro_rules! id {
    ($(#[$meta:meta])* $name:ident, $mint:expr) => {
        $(#[$meta])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        pub struct $name(String);

        impl $name {
            /// A fresh id, in the form this kind of id has always had.
            /// (`default()` is the empty id, which only fills fields older
            /// peers did not send.)
            pub fn new() -> Self {
                Self($mint)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The empty id: a field a control plane from before it did not
            /// fill in.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        /// As the bare string, so messages that quote an id (`{id:?}`)
        /// read as they always did.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self(s.to_owned()))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                Self(s.clone())
            }
        }

        impl From<&$name> for $name {
            fn from(id: &$name) -> Self {
                id.clone()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by an id can be read with text; no other kind of id
        /// turns into text on its own, so none can be used by mistake.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// Comparing with text (a literal in a test, a label read from a
        /// platform) is fine; comparing two kinds of id is not.
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

/// UUIDv7, which sorts by creation time: commands stay in issue order and
/// lists are stable.
fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}

id!(
    /// A session: one desktop, from its creation until it is terminated.
    SessionId,
    uuid_v7()
);
id!(
    /// An enrolled agent.
    AgentId,
    uuid_v7()
);
id!(
    /// A user account (not its username, which may be reused).
    UserId,
    uuid_v7()
);
id!(
    /// A template (not its name, which an admin may change).
    TemplateId,
    uuid_v7()
);
id!(
    /// A command to an agent, by which the agent deduplicates deliveries.
    CommandId,
    uuid_v7()
);
id!(
    /// One tunnel (a data channel): 32 hex digits, never stored, part of the
    /// data channel's path.
    TunnelId,
    uuid::Uuid::new_v4().simple().to_string()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = SessionId::from("s1");
        assert_eq!(serde_json::to_string(&id).expect("serializes"), "\"s1\"");
        let back: SessionId = serde_json::from_str("\"s1\"").expect("parses");
        assert_eq!(back, id);
        assert_eq!(format!("{id} {id:?}"), "s1 \"s1\"");
        assert_eq!(id, "s1");
    }

    #[test]
    fn fresh_ids_keep_their_forms() {
        let session = SessionId::new();
        assert_eq!(session.as_str().len(), 36, "{session}");
        assert!(CommandId::new() < CommandId::new(), "UUIDv7 sorts by time");
        let tunnel = TunnelId::new();
        assert_eq!(tunnel.as_str().len(), 32, "{tunnel}");
        assert!(tunnel.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
