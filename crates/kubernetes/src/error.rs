//! apiserver failures, classified so the control plane can tell "fix your
//! request or setup" ([`PlatformError::Invalid`]) from "try again later"
//! ([`PlatformError::Unavailable`]).

use streamspace_agent::PlatformError;
use streamspace_agent::errors::with_sources;

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot configure a Kubernetes client: {detail}")]
    Config { detail: String },
    /// The apiserver did not answer (network, TLS, credentials that could
    /// not be loaded, timeout).
    #[error("cannot reach the Kubernetes apiserver to {action}: {detail}")]
    Unreachable { action: String, detail: String },
    /// RBAC refused: the agent's Role lacks a verb.
    #[error(
        "the agent may not {action} in namespace {namespace}: {message} (grant it in the agent's \
         Role; see deploy/kubernetes/agent/role.yaml)"
    )]
    Forbidden {
        action: String,
        namespace: String,
        message: String,
    },
    /// The apiserver answered with another error status.
    #[error("Kubernetes refused to {action}: {message}")]
    Refused {
        action: String,
        code: u16,
        message: String,
    },
}

impl KubernetesError {
    /// Classifies `cause`, a failure to do `action` in `namespace`.
    pub fn new(namespace: &str, action: impl Into<String>, cause: kube::Error) -> Self {
        let action = action.into();
        match cause {
            kube::Error::Api(status) if status.code == 403 => KubernetesError::Forbidden {
                action,
                namespace: namespace.to_owned(),
                message: status.message.clone(),
            },
            kube::Error::Api(status) => KubernetesError::Refused {
                action,
                code: status.code,
                message: if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                },
            },
            other => KubernetesError::Unreachable {
                action,
                detail: with_sources(&other),
            },
        }
    }
}

impl From<KubernetesError> for PlatformError {
    fn from(err: KubernetesError) -> Self {
        match err {
            // Only a changed spec or setup helps: bad object, RBAC.
            KubernetesError::Forbidden { .. }
            | KubernetesError::Refused {
                code: 400 | 422, ..
            } => PlatformError::Invalid(err.to_string()),
            _ => PlatformError::Unavailable(err.to_string()),
        }
    }
}

/// The HTTP status the apiserver answered with, if it answered.
pub fn status_of(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub fn is_not_found(err: &kube::Error) -> bool {
    status_of(err) == Some(404)
}

pub fn is_conflict(err: &kube::Error) -> bool {
    status_of(err) == Some(409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut status = Status::failure(message, reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn invalid_objects_and_rbac_are_invalid_others_unavailable() {
        let err = PlatformError::from(KubernetesError::new(
            "ns",
            "create deployment d",
            api(422, "Invalid", "spec.template: bad"),
        ));
        assert!(
            matches!(&err, PlatformError::Invalid(m) if m == "Kubernetes refused to create deployment d: spec.template: bad"),
            "{err:?}"
        );
        let err = PlatformError::from(KubernetesError::new(
            "ns",
            "list pods",
            api(403, "Forbidden", "pods is forbidden"),
        ));
        let PlatformError::Invalid(message) = err else {
            panic!("RBAC is the operator's to fix: {err:?}");
        };
        assert!(
            message.starts_with("the agent may not list pods in namespace ns: pods is forbidden"),
            "{message}"
        );
        let err = PlatformError::from(KubernetesError::new(
            "ns",
            "get deployment d",
            api(500, "InternalError", "etcd"),
        ));
        assert!(matches!(err, PlatformError::Unavailable(_)));
    }

    #[test]
    fn unreachable_apiserver_keeps_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = KubernetesError::new("ns", "list pods", kube::Error::ReadEvents(io));
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach the Kubernetes apiserver to list pods: "),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
    }

    #[test]
    fn status_helpers() {
        assert!(is_not_found(&api(404, "NotFound", "x")));
        assert!(is_conflict(&api(409, "AlreadyExists", "x")));
        assert!(!is_conflict(&api(404, "NotFound", "x")));
    }
}
