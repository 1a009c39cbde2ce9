//! Who is who: Account B's base credentials (what the proxy starts with), Account A's role and
//! the temporary credentials the STS stand-in issues for it, the region and the workspace.

pub const BASE_ACCESS_KEY: &str = "AKIABASEB0000000000";
pub const BASE_SECRET: &str = "base-secret-DO-NOT-LOG-5b8f1e";
pub const ASSUMED_ACCESS_KEY: &str = "ASIAASSUMEDA00000000";
pub const ASSUMED_SECRET: &str = "assumed-secret-DO-NOT-LOG-9c2d4a";
pub const ASSUMED_TOKEN: &str = "assumed-session-token-DO-NOT-LOG-77e1f0";
pub const ROLE_ARN: &str = "arn:aws:iam::111111111111:role/account_a_role";
pub const EXTERNAL_ID: &str = "ext-id-42";
pub const REGION: &str = "us-east-1";
pub const WORKSPACE_PATH: &str = "/workspaces/ws-0123abcd/api/v1/remote_write";
