//! The command line: serving (the default, flags in [`crate::config::Cli`]) and subcommands.

use clap::{Parser, Subcommand};

use crate::config::Cli;
use crate::ops::policies::PoliciesArgs;
use crate::ops::probe::ProbeArgs;

/// Prometheus remote-write proxy for Amazon Managed Service for Prometheus (AMP).
///
/// Without a subcommand it serves: accepts unsigned remote-write from Prometheus, assumes a
/// (cross-account) IAM role, signs each request with SigV4 (service `aps`) and forwards it
/// unchanged to the workspace. Every serving flag can also be set through the environment
/// variable shown.
#[derive(Debug, Parser)]
#[command(name = "amp-rw-proxy", version, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving flags.
    #[command(flatten)]
    pub serve: Cli,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the three IAM policy documents of the cross-account setup (A's trust policy, A's
    /// permission policy for aps:RemoteWrite, B's permission policy for sts:AssumeRole).
    Policies(PoliciesArgs),
    /// Walk the chain with the same flags as serving and report each step with ✓/✗ and a fix:
    /// base credentials and sts:GetCallerIdentity as Account B, sts:AssumeRole into Account A,
    /// GetCallerIdentity as the assumed role, a signed empty remote-write to the workspace.
    /// Exit code 0 only when all pass.
    Check(Box<Cli>),
    /// Health probe for images without a shell: GET /-/healthy (or /-/ready with --ready) on
    /// the serving address (AMP_RW_PROXY_LISTEN, 0.0.0.0 probed as 127.0.0.1); exit code 0 on
    /// 200, 1 with one line saying why otherwise.
    Probe(ProbeArgs),
}
