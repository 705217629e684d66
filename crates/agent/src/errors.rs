//! What every platform's error type needs to say why something failed.
//! Here, not in each platform, because the clients they use (bollard,
//! kube, and libvirt next) all wrap the real cause in errors of their own.

/// An error and its causes, `outer: inner: innermost`, each cause once
/// (hyper's own message alone is just "client error (Connect)").
pub fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        cause: Option<std::io::Error>,
    }

    #[test]
    fn causes_are_appended_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = Layer {
            text: "client error (Connect)",
            cause: Some(io),
        };
        assert_eq!(with_sources(&outer), "client error (Connect): refused");
        let repeating = Layer {
            text: "connect: refused",
            cause: Some(std::io::Error::other("refused")),
        };
        assert_eq!(with_sources(&repeating), "connect: refused");
    }
}
