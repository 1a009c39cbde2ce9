output "role_arn" {
  description = "The proxy's --role-arn (AMP_RW_PROXY_ROLE_ARN); module account-b's account_a_role_arns needs it too."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.this.name
}

output "permission_policy_name" {
  description = "Name of the role's inline permission policy."
  value       = aws_iam_role_policy.remote_write.name
}

output "external_id" {
  description = "The proxy's --external-id (AMP_RW_PROXY_EXTERNAL_ID), or null."
  value       = var.external_id
}

output "region" {
  description = "The proxy's --region (AMP_RW_PROXY_REGION): the workspace's region."
  value       = local.workspace.region
}

output "upstream_url" {
  description = "The proxy's --upstream-url (AMP_RW_PROXY_UPSTREAM_URL): the workspace's remote-write URL."
  value       = local.upstream_url
}

output "proxy_args" {
  description = "The proxy's command-line flags for this role and workspace."
  value = concat(
    ["--upstream-url", local.upstream_url, "--region", local.workspace.region, "--role-arn", aws_iam_role.this.arn],
    var.external_id == null ? [] : ["--external-id", var.external_id],
    var.allow_query ? ["--enable-query"] : [],
  )
}

output "proxy_env" {
  description = "The same as environment variables (a container's env; deploy/kubernetes uses these names)."
  value = merge(
    {
      AMP_RW_PROXY_UPSTREAM_URL = local.upstream_url
      AMP_RW_PROXY_REGION       = local.workspace.region
      AMP_RW_PROXY_ROLE_ARN     = aws_iam_role.this.arn
    },
    var.external_id == null ? {} : { AMP_RW_PROXY_EXTERNAL_ID = var.external_id },
    var.allow_query ? { AMP_RW_PROXY_ENABLE_QUERY = "true" } : {},
  )
}
