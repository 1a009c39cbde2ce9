output "proxy_args" {
  description = "The proxy's flags: amp-rw-proxy $(terraform output -json proxy_args | jq -r 'join(\" \")')"
  value       = module.account_a.proxy_args
}

output "proxy_env" {
  description = "The proxy's environment (AMP_RW_PROXY_*), e.g. for deploy/kubernetes' env."
  value       = module.account_a.proxy_env
}

output "account_a_role_arn" {
  description = "Account A's role (--role-arn)."
  value       = module.account_a.role_arn
}

output "account_b_role_arn" {
  description = "Account B's base role."
  value       = module.account_b.role_arn
}

output "service_account_annotations" {
  description = "Annotations for the proxy's service account (IRSA; empty with Pod Identity)."
  value       = module.account_b.service_account_annotations
}

output "permission_policy_names" {
  description = "The inline policies: Account A's permission policy, Account B's permission policy."
  value = {
    account_a = module.account_a.permission_policy_name
    account_b = module.account_b.permission_policy_name
  }
}
