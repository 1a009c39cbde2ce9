//! Operators' subcommands beside serving: `check` walks the credential chain and a signed write
//! step by step; `policies` prints the IAM documents of the cross-account setup; `probe` is the
//! health check of the shell-less image.

pub mod check;
pub mod policies;
pub mod probe;
