variable "workspace_arn" {
  description = "ARN of the AMP workspace in Account A (arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE); its region is the providers' region."
  type        = string
}

variable "account_a_role_name" {
  description = "Name of the role in Account A that the proxy assumes."
  type        = string
  default     = "account_a_role"
}

variable "external_id" {
  description = "ExternalId of A's trust policy (the proxy's --external-id); null = none."
  type        = string
  default     = null
}

variable "allow_query" {
  description = "Also allow the read path (--enable-query) on the workspace."
  type        = bool
  default     = false
}

variable "trust" {
  description = "How the proxy's pods get B's role: \"irsa\" or \"pod-identity\"."
  type        = string
  default     = "irsa"
}

variable "oidc_issuer_url" {
  description = "trust = \"irsa\": the cluster's OIDC issuer URL."
  type        = string
  default     = null
}

variable "cluster_name" {
  description = "trust = \"pod-identity\": the EKS cluster to create the pod identity association in (null = none)."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace of the proxy's service account."
  type        = string
  default     = "monitoring"
}

variable "service_account" {
  description = "The proxy's service account: prometheus (sidecar) or amp-rw-proxy (gateway)."
  type        = string
  default     = "prometheus"
}

variable "account_a_profile" {
  description = "AWS CLI profile with IAM rights in Account A (null = the default credential chain)."
  type        = string
  default     = null
}

variable "account_b_profile" {
  description = "AWS CLI profile with IAM rights in Account B (null = the default credential chain)."
  type        = string
  default     = null
}
