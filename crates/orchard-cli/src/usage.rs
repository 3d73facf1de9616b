//! The error of arguments that parse but make no sense together; the CLI exits with code 2 for it, as for
//! other bad input.

/// Arguments that cannot work, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
