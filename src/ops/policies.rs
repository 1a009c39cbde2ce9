//! `amp-rw-proxy policies`: the three IAM documents of the cross-account setup, generated from
//! the two ARNs that define it, so nobody has to assemble them by hand from the AWS docs.
//!
//! 1. Account A, the role's **trust policy**: lets B's role assume it (with the ExternalId
//!    condition when one is used). IAM: `aws iam create-role --assume-role-policy-document`.
//! 2. Account A, the role's **permission policy**: `aps:RemoteWrite` on the one workspace (and
//!    with `--include-query`, the read path's [`QUERY_ACTIONS`] on it too).
//!    IAM: `aws iam put-role-policy`.
//! 3. Account B, B's role's **permission policy**: `sts:AssumeRole` on A's role.
//!    IAM: `aws iam put-role-policy`.
//!
//! Cross-account access needs both sides: B may call AssumeRole (3) *and* A trusts B (1).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use crate::config::EXIT_CONFIG_ERROR;

/// What the read path (`--enable-query`) needs on the workspace.
pub const QUERY_ACTIONS: [&str; 4] = [
    "aps:QueryMetrics",
    "aps:GetSeries",
    "aps:GetLabels",
    "aps:GetMetricMetadata",
];

/// Flags of `amp-rw-proxy policies`.
#[derive(Debug, Clone, Args)]
pub struct PoliciesArgs {
    /// ARN of Account B's role, the one the proxy runs as (its base credentials), e.g.
    /// arn:aws:iam::222222222222:role/account_b_role.
    #[arg(long)]
    pub source_role_arn: String,

    /// ARN of the AMP workspace in Account A, e.g.
    /// arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE.
    #[arg(long)]
    pub workspace_arn: String,

    /// ExternalId the trust policy requires (sts:ExternalId condition); recommended when the
    /// two accounts belong to different organisations.
    #[arg(long)]
    pub external_id: Option<String>,

    /// Name of the role to create in Account A.
    #[arg(long, default_value = "account_a_role")]
    pub role_name: String,

    /// Output: `text` (each document with where it goes and the aws CLI command that applies
    /// it) or `json` (one object holding the three documents).
    #[arg(long, default_value = "text")]
    pub format: String,

    /// Also allow the read path (`--enable-query`): aps:QueryMetrics, aps:GetSeries,
    /// aps:GetLabels and aps:GetMetricMetadata on the workspace, in A's permission policy.
    #[arg(long)]
    pub include_query: bool,
}

/// The three documents, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    /// Account A: trust policy of the role the proxy assumes.
    pub account_a_trust_policy: Value,
    /// Account A: permission policy of that role.
    pub account_a_permission_policy: Value,
    /// Account B: permission policy of the proxy's own role.
    pub account_b_permission_policy: Value,
    /// ARN of A's role, as the proxy's `--role-arn`.
    pub role_arn: String,
    role_name: String,
    source_role_name: String,
    source_is_user: bool,
}

impl Policies {
    /// Builds the documents, or lists every problem with the arguments.
    pub fn from_args(args: &PoliciesArgs) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let source = parse_arn(&args.source_role_arn);
        // A role normally (IRSA, Pod Identity, instance profiles); an IAM user works the same.
        let (source_is_user, source_role_name) = match &source {
            Some(a)
                if a.service == "iam"
                    && (a.resource.starts_with("role/") || a.resource.starts_with("user/"))
                    && a.resource.len() > 5 =>
            {
                (
                    a.resource.starts_with("user/"),
                    a.resource
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            _ => {
                errors.push(format!(
                    "--source-role-arn {:?}: expected arn:aws:iam::<12-digit account>:role/<name> (or user/<name>)",
                    args.source_role_arn
                ));
                (false, String::new())
            }
        };
        let workspace = parse_arn(&args.workspace_arn);
        let workspace_ok = matches!(&workspace, Some(a) if a.service == "aps"
            && !a.region.is_empty()
            && a.resource.strip_prefix("workspace/").is_some_and(|id| !id.is_empty() && !id.contains('/')));
        if !workspace_ok {
            errors.push(format!(
                "--workspace-arn {:?}: expected arn:aws:aps:<region>:<12-digit account>:workspace/<id>",
                args.workspace_arn
            ));
        }
        let role_name_ok = (1..=64).contains(&args.role_name.len())
            && args
                .role_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if !role_name_ok {
            errors.push(format!(
                "--role-name {:?}: 1 to 64 characters of A-Z a-z 0-9 + = , . @ _ -",
                args.role_name
            ));
        }
        if let Some(id) = &args.external_id {
            let ok = (2..=1224).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
            if !ok {
                errors.push(
                    "--external-id: must be 2 to 1224 characters of A-Z a-z 0-9 _ + = , . @ : / -"
                        .to_string(),
                );
            }
        }
        if !matches!(args.format.as_str(), "text" | "json") {
            errors.push(format!("--format {:?}: expected text or json", args.format));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let workspace = workspace.expect("validated");
        let role_arn = format!(
            "arn:{}:iam::{}:role/{}",
            workspace.partition, workspace.account, args.role_name
        );
        let mut trust = json!({
            "Effect": "Allow",
            "Principal": { "AWS": args.source_role_arn },
            "Action": "sts:AssumeRole",
        });
        if let Some(id) = &args.external_id {
            trust["Condition"] = json!({ "StringEquals": { "sts:ExternalId": id } });
        }
        let mut permissions = document(json!({
            "Sid": "RemoteWriteToOneWorkspace",
            "Effect": "Allow",
            "Action": "aps:RemoteWrite",
            "Resource": args.workspace_arn,
        }));
        if args.include_query {
            permissions["Statement"]
                .as_array_mut()
                .expect("a statement list")
                .push(json!({
                    "Sid": "QueryOneWorkspace",
                    "Effect": "Allow",
                    "Action": QUERY_ACTIONS,
                    "Resource": args.workspace_arn,
                }));
        }
        Ok(Self {
            account_a_trust_policy: document(trust),
            account_a_permission_policy: permissions,
            account_b_permission_policy: document(json!({
                "Sid": "AssumeTheWorkspaceAccountRole",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": role_arn,
            })),
            role_arn,
            role_name: args.role_name.clone(),
            source_role_name,
            source_is_user,
        })
    }

    /// The three documents as one JSON object.
    pub fn to_json(&self) -> String {
        let all = json!({
            "account_a_trust_policy": self.account_a_trust_policy,
            "account_a_permission_policy": self.account_a_permission_policy,
            "account_b_permission_policy": self.account_b_permission_policy,
        });
        serde_json::to_string_pretty(&all).expect("JSON values serialise")
    }

    /// Each document with where it goes and the aws CLI command that applies it.
    pub fn to_text(&self) -> String {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON values serialise");
        format!(
            "# 1. Account A — trust policy of {role} (who may assume it).\n\
             #    aws iam create-role --role-name {role} --assume-role-policy-document file://trust.json\n\
             #    (or, for an existing role: aws iam update-assume-role-policy --role-name {role} --policy-document file://trust.json)\n\
             {trust}\n\n\
             # 2. Account A — permission policy of {role} (what it may do: {what} the one workspace).\n\
             #    aws iam put-role-policy --role-name {role} --policy-name amp-remote-write --policy-document file://permissions.json\n\
             {perm}\n\n\
             # 3. Account B — permission policy of {source} (the proxy's identity may assume A's role).\n\
             #    aws iam put-{kind}-policy --{kind}-name {source} --policy-name assume-{role} --policy-document file://assume.json\n\
             {assume}\n\n\
             # Cross-account access needs both 1 and 3. Then run the proxy with --role-arn {arn}\n",
            role = self.role_name,
            what = if self.account_a_permission_policy["Statement"]
                .as_array()
                .is_some_and(|s| s.len() > 1)
            {
                "write to and query"
            } else {
                "write to"
            },
            source = self.source_role_name,
            kind = if self.source_is_user { "user" } else { "role" },
            arn = self.role_arn,
            trust = pretty(&self.account_a_trust_policy),
            perm = pretty(&self.account_a_permission_policy),
            assume = pretty(&self.account_b_permission_policy),
        )
    }
}

fn document(statement: Value) -> Value {
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}

struct Arn<'a> {
    partition: &'a str,
    service: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

fn parse_arn(arn: &str) -> Option<Arn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let ok = prefix == "arn"
        && partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(Arn {
        partition,
        service,
        region,
        account,
        resource,
    })
}

/// `amp-rw-proxy policies`: prints the documents (text or JSON), or every argument error.
pub fn main(args: &PoliciesArgs) -> ExitCode {
    // Written without panicking when stdout is closed early (`| head`).
    let mut out = std::io::stdout().lock();
    match Policies::from_args(args) {
        Ok(p) if args.format == "json" => {
            let _ = writeln!(out, "{}", p.to_json());
        }
        Ok(p) => {
            let _ = write!(out, "{}", p.to_text());
        }
        Err(errors) => {
            eprintln!(
                "amp-rw-proxy policies: invalid arguments ({} error(s)):",
                errors.len()
            );
            for e in errors {
                eprintln!("  - {e}");
            }
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(external_id: Option<&str>) -> PoliciesArgs {
        PoliciesArgs {
            source_role_arn: "arn:aws:iam::222222222222:role/account_b_role".into(),
            workspace_arn: "arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE".into(),
            external_id: external_id.map(str::to_string),
            role_name: "account_a_role".into(),
            format: "json".into(),
            include_query: false,
        }
    }

    #[test]
    fn include_query_adds_the_read_actions_on_the_same_workspace() {
        let plain = Policies::from_args(&args(None)).unwrap();
        assert_eq!(
            plain.account_a_permission_policy["Statement"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(!plain.to_text().contains("aps:QueryMetrics"));
        let mut a = args(None);
        a.include_query = true;
        let p = Policies::from_args(&a).unwrap();
        let statements = p.account_a_permission_policy["Statement"]
            .as_array()
            .unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Action"], "aps:RemoteWrite");
        assert_eq!(
            statements[1],
            json!({
                "Sid": "QueryOneWorkspace",
                "Effect": "Allow",
                "Action": ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata"],
                "Resource": "arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE",
            })
        );
        // Nothing else changes.
        assert_eq!(p.account_a_trust_policy, plain.account_a_trust_policy);
        assert_eq!(
            p.account_b_permission_policy,
            plain.account_b_permission_policy
        );
        let text = p.to_text();
        assert!(
            text.contains("write to and query the one workspace"),
            "{text}"
        );
        let parsed: Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(
            parsed["account_a_permission_policy"],
            p.account_a_permission_policy
        );
    }

    #[test]
    fn the_three_documents_of_the_readme() {
        let p = Policies::from_args(&args(Some("EXAMPLE-ID"))).unwrap();
        assert_eq!(p.role_arn, "arn:aws:iam::111111111111:role/account_a_role");
        assert_eq!(
            p.account_a_trust_policy,
            json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::222222222222:role/account_b_role"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "EXAMPLE-ID"}}
            }]})
        );
        assert_eq!(
            p.account_a_permission_policy["Statement"][0]["Resource"],
            "arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE"
        );
        assert_eq!(
            p.account_a_permission_policy["Statement"][0]["Action"],
            "aps:RemoteWrite"
        );
        assert_eq!(
            p.account_b_permission_policy["Statement"][0]["Resource"],
            "arn:aws:iam::111111111111:role/account_a_role"
        );
        let parsed: Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(parsed["account_a_trust_policy"], p.account_a_trust_policy);
    }

    #[test]
    fn no_condition_without_external_id_and_text_explains_where_each_goes() {
        let p = Policies::from_args(&args(None)).unwrap();
        assert!(
            p.account_a_trust_policy["Statement"][0]
                .get("Condition")
                .is_none()
        );
        let text = p.to_text();
        for needle in [
            "Account A — trust policy",
            "Account A — permission policy",
            "Account B — permission policy of account_b_role",
            "aws iam create-role --role-name account_a_role",
            "--role-arn arn:aws:iam::111111111111:role/account_a_role",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        // Every JSON block in the text parses.
        let blocks: Vec<&str> = text
            .split("\n\n")
            .filter_map(|b| b.find('{').map(|at| &b[at..]))
            .collect();
        assert_eq!(blocks.len(), 3);
        for b in blocks {
            serde_json::from_str::<Value>(b).unwrap();
        }
    }

    #[test]
    fn every_bad_argument_is_reported() {
        let bad = PoliciesArgs {
            source_role_arn: "arn:aws:iam::222222222222:group/someone".into(),
            workspace_arn: "arn:aws:s3:::bucket".into(),
            external_id: Some("x".into()),
            role_name: "has space".into(),
            format: "yaml".into(),
            include_query: false,
        };
        let errs = Policies::from_args(&bad).unwrap_err().join("\n");
        for flag in [
            "--source-role-arn",
            "--workspace-arn",
            "--external-id",
            "--role-name",
            "--format",
        ] {
            assert!(errs.contains(flag), "{flag} missing from\n{errs}");
        }
    }

    #[test]
    fn other_partitions_keep_their_partition() {
        let mut a = args(None);
        a.workspace_arn = "arn:aws-cn:aps:cn-north-1:111111111111:workspace/ws-1".into();
        a.source_role_arn = "arn:aws-cn:iam::222222222222:role/b".into();
        let p = Policies::from_args(&a).unwrap();
        assert_eq!(
            p.role_arn,
            "arn:aws-cn:iam::111111111111:role/account_a_role"
        );
    }
}
