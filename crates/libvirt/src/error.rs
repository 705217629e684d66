//! libvirt failures, classified so the control plane can tell "fix your
//! request" ([`PlatformError::Invalid`]) from "try again later"
//! ([`PlatformError::Unavailable`]).

use streamspace_agent::PlatformError;
use virt::error::{Error as VirtError, ErrorNumber};

#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// No connection to libvirtd: not running, or this user may not open
    /// its socket.
    #[error(
        "cannot connect to libvirt at {uri}: {message} (is libvirtd running, and may this user \
         open its socket? --connect selects another URI)"
    )]
    Unreachable { uri: String, message: String },
    /// libvirt answered with an error.
    #[error("libvirt at {uri} could not {action}: {message}")]
    Refused {
        uri: String,
        action: String,
        code: ErrorNumber,
        message: String,
    },
}

impl LibvirtError {
    pub fn new(uri: &str, action: impl Into<String>, cause: &VirtError) -> Self {
        let message = cause.message().trim().to_owned();
        match cause.code() {
            ErrorNumber::NoConnect | ErrorNumber::InvalidConn | ErrorNumber::Rpc => {
                LibvirtError::Unreachable {
                    uri: uri.to_owned(),
                    message,
                }
            }
            code => LibvirtError::Refused {
                uri: uri.to_owned(),
                action: action.into(),
                code,
                message,
            },
        }
    }
}

/// What the spec got wrong: libvirt refused the XML or a setting in it.
fn is_spec_error(code: ErrorNumber) -> bool {
    matches!(
        code,
        ErrorNumber::XmlError
            | ErrorNumber::XmlDetail
            | ErrorNumber::ConfigUnsupported
            | ErrorNumber::InvalidArg
    )
}

impl From<LibvirtError> for PlatformError {
    fn from(err: LibvirtError) -> Self {
        match &err {
            LibvirtError::Refused { code, .. } if is_spec_error(*code) => {
                PlatformError::Invalid(err.to_string())
            }
            _ => PlatformError::Unavailable(err.to_string()),
        }
    }
}

/// libvirt's "no such object" answers, which mean absent, not failed.
pub fn is_missing(err: &VirtError) -> bool {
    matches!(
        err.code(),
        ErrorNumber::NoDomain
            | ErrorNumber::NoStorageVolume
            | ErrorNumber::NoStoragePool
            | ErrorNumber::NoDomainMetadata
    )
}
