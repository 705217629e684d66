//! StreamSpace agent runtime.

pub mod platform;

pub use platform::{Platform, PlatformError, PlatformResult, SessionStream};
