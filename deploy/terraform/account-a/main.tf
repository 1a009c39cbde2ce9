# Account A (owns the AMP workspace): the role amp-rw-proxy assumes, trusted by Account B's role
# (optionally only with an ExternalId), allowed to remote-write to one workspace (optionally to
# query it). The same documents as deploy/iam/account-a.yaml and `amp-rw-proxy policies`.

locals {
  # arn:PARTITION:aps:REGION:ACCOUNT:workspace/ID
  workspace    = regex("^arn:(?P<partition>[^:]+):aps:(?P<region>[^:]+):(?P<account>\\d{12}):workspace/(?P<id>[\\w-]+)$", var.workspace_arn)
  dns_suffix   = startswith(local.workspace.partition, "aws-cn") ? "amazonaws.com.cn" : "amazonaws.com"
  upstream_url = "https://aps-workspaces.${local.workspace.region}.${local.dns_suffix}/workspaces/${local.workspace.id}/api/v1/remote_write"
  # The read path the proxy serves with --enable-query (src/ops/policies.rs' QUERY_ACTIONS).
  query_actions = ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata"]
}

# Trust: only Account B's role, and with the ExternalId when one is set.
data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "AmpRwProxyFromAccountB"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.trusted_role_arn]
    }
    dynamic "condition" {
      for_each = var.external_id == null ? [] : [var.external_id]
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

# Permission: remote-write to the one workspace (and query it, if asked), nothing else.
data "aws_iam_policy_document" "permission" {
  statement {
    sid       = "RemoteWriteToWorkspace"
    effect    = "Allow"
    actions   = ["aps:RemoteWrite"]
    resources = [var.workspace_arn]
  }
  dynamic "statement" {
    for_each = var.allow_query ? [1] : []
    content {
      sid       = "QueryWorkspace"
      effect    = "Allow"
      actions   = local.query_actions
      resources = [var.workspace_arn]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.role_name
  description          = "Assumed by amp-rw-proxy (from Account B) to remote-write to one AMP workspace"
  max_session_duration = var.max_session_duration
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  tags                 = var.tags
}

resource "aws_iam_role_policy" "remote_write" {
  name   = "amp-remote-write"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.permission.json
}
