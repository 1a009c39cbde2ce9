output "role_arn" {
  description = "The base role's ARN: module account-a's trusted_role_arn; with IRSA, the service account's eks.amazonaws.com/role-arn annotation."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.this.name
}

output "permission_policy_name" {
  description = "Name of the role's inline permission policy (sts:AssumeRole on Account A's role)."
  value       = aws_iam_role_policy.assume_account_a.name
}

output "service_account_annotations" {
  description = "Annotations for the proxy's Kubernetes service account (IRSA; empty with Pod Identity)."
  value       = local.irsa ? { "eks.amazonaws.com/role-arn" = aws_iam_role.this.arn } : {}
}
