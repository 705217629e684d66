//! Docker failures, classified so the control plane can tell "fix your
//! request" ([`PlatformError::Invalid`]) from "try again later"
//! ([`PlatformError::Unavailable`]).

use bollard::errors::Error as BollardError;
use streamspace_agent::PlatformError;
use streamspace_agent::errors::with_sources;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine did not answer: socket missing, daemon down, timeout.
    #[error(
        "cannot reach the Docker engine at {endpoint}: {detail} (is dockerd running, and may this user open its socket? DOCKER_HOST selects another engine)"
    )]
    Unreachable { endpoint: String, detail: String },
    /// The engine answered with an error status.
    #[error("the Docker engine refused to {action}: {message}")]
    Refused {
        action: String,
        status: u16,
        message: String,
    },
    /// The engine answered something we could not use.
    #[error(
        "unexpected answer from the Docker engine at {endpoint} while trying to {action}: {cause}"
    )]
    Unexpected {
        endpoint: String,
        action: String,
        cause: BollardError,
    },
}

impl DockerError {
    /// Classifies `cause`, a failure to do `action` on the engine at `endpoint`.
    pub fn new(endpoint: &str, action: impl Into<String>, cause: BollardError) -> Self {
        match cause {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Refused {
                action: action.into(),
                status: status_code,
                message,
            },
            BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)
            | BollardError::HttpClientError { .. } => DockerError::Unreachable {
                endpoint: endpoint.to_owned(),
                detail: with_sources(&cause),
            },
            cause => DockerError::Unexpected {
                endpoint: endpoint.to_owned(),
                action: action.into(),
                cause,
            },
        }
    }
}

impl From<DockerError> for PlatformError {
    fn from(err: DockerError) -> Self {
        match err {
            // 400: the engine rejected what we asked for (bad volume name,
            // bad mount path): only a changed spec helps.
            DockerError::Refused { status: 400, .. } => PlatformError::Invalid(err.to_string()),
            _ => PlatformError::Unavailable(err.to_string()),
        }
    }
}

/// Docker answered "no such object".
pub fn is_not_found(err: &BollardError) -> bool {
    status_of(err) == Some(404)
}

/// Docker answered "already exists" / "conflicting state".
pub fn is_conflict(err: &BollardError) -> bool {
    status_of(err) == Some(409)
}

fn status_of(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status_code: u16) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: "nope".into(),
        }
    }

    #[test]
    fn bad_requests_are_invalid_and_server_errors_unavailable() {
        let err = PlatformError::from(DockerError::new(
            "unix:///s",
            "create volume v",
            refused(400),
        ));
        assert!(matches!(&err, PlatformError::Invalid(m) if m.contains("create volume v: nope")));
        let err = PlatformError::from(DockerError::new("unix:///s", "start", refused(500)));
        assert!(matches!(err, PlatformError::Unavailable(_)));
    }

    #[test]
    fn unreachable_engine_names_the_endpoint() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no socket");
        let err = PlatformError::from(DockerError::new(
            "unix:///var/run/docker.sock",
            "ping",
            BollardError::from(io),
        ));
        let PlatformError::Unavailable(message) = err else {
            panic!("expected Unavailable, got {err:?}");
        };
        assert!(
            message.starts_with(
                "cannot reach the Docker engine at unix:///var/run/docker.sock: no socket"
            ),
            "{message}"
        );
    }

    #[test]
    fn status_helpers() {
        assert!(is_not_found(&refused(404)));
        assert!(!is_not_found(&refused(409)));
        assert!(is_conflict(&refused(409)));
        assert!(!is_conflict(&BollardError::RequestTimeoutError));
    }
}
