# Account B (runs Prometheus and the proxy on EKS): the proxy's base identity, trusted by the
# cluster through IRSA or EKS Pod Identity, allowed only to assume Account A's role(s). The same
# documents as deploy/iam/account-b.yaml.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  irsa = var.trust == "irsa"
  # IRSA's condition keys are named after the issuer without its scheme.
  issuer = local.irsa ? trimprefix(var.oidc_issuer_url, "https://") : null
}

data "aws_iam_policy_document" "trust" {
  # IRSA: the cluster's OIDC provider, for exactly one service account.
  dynamic "statement" {
    for_each = local.irsa ? [1] : []
    content {
      sid     = "IrsaServiceAccount"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:oidc-provider/${local.issuer}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.issuer}:sub"
        values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
  # EKS Pod Identity: the service principal, which also tags the session.
  dynamic "statement" {
    for_each = local.irsa ? [] : [1]
    content {
      sid     = "EksPodIdentity"
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }
}

# Permission: assume Account A's role(s), nothing else. (Account A's trust policy must name this
# role too: cross-account access needs both sides.)
data "aws_iam_policy_document" "assume" {
  statement {
    sid       = "AssumeWorkspaceWriterRole"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = var.account_a_role_arns
  }
}

resource "aws_iam_role" "this" {
  name               = var.role_name
  description        = "Base identity of amp-rw-proxy; may only assume Account A's workspace-writer role"
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = !local.irsa || var.oidc_issuer_url != null
      error_message = "trust = \"irsa\" needs oidc_issuer_url."
    }
  }
}

resource "aws_iam_role_policy" "assume_account_a" {
  name   = "assume-account-a-role"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.assume.json
}

resource "aws_eks_pod_identity_association" "this" {
  count           = !local.irsa && var.cluster_name != null ? 1 : 0
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.this.arn
}
