variable "role_name" {
  description = "Name of the proxy's base role."
  type        = string
  default     = "account_b_role"
  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "account_a_role_arns" {
  description = "ARNs of the roles the proxy assumes (its --role-arn; several for a gateway with a routes file). They need not exist yet: an identity policy may name a role that does not exist."
  type        = list(string)
  validation {
    condition     = length(var.account_a_role_arns) > 0 && alltrue([for a in var.account_a_role_arns : can(regex("^arn:aws[a-z-]*:iam::\\d{12}:role/[\\w+=,.@/-]+$", a))])
    error_message = "account_a_role_arns must hold at least one IAM role ARN (arn:aws:iam::111111111111:role/account_a_role)."
  }
}

variable "trust" {
  description = "How the proxy's pods get this role: \"irsa\" (the cluster's OIDC provider, for one service account) or \"pod-identity\" (EKS Pod Identity, pods.eks.amazonaws.com)."
  type        = string
  default     = "irsa"
  validation {
    condition     = contains(["irsa", "pod-identity"], var.trust)
    error_message = "trust must be \"irsa\" or \"pod-identity\"."
  }
}

variable "oidc_issuer_url" {
  description = "trust = \"irsa\" only: the cluster's OIDC issuer URL, as `aws eks describe-cluster --query cluster.identity.oidc.issuer` prints it (https://oidc.eks.REGION.amazonaws.com/id/ID). Its IAM OIDC identity provider must exist in this account."
  type        = string
  default     = null
  validation {
    condition     = var.oidc_issuer_url == null || can(regex("^https://[^\\s/]+(/\\S*[^\\s/])?$", var.oidc_issuer_url))
    error_message = "oidc_issuer_url must be an https:// URL without a trailing slash."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the proxy's service account."
  type        = string
  default     = "monitoring"
}

variable "service_account" {
  description = "Service account of the pod that runs the proxy: prometheus for the sidecar, amp-rw-proxy for the gateway (deploy/kubernetes)."
  type        = string
  default     = "prometheus"
}

variable "cluster_name" {
  description = "trust = \"pod-identity\" only, optional: the EKS cluster to create the pod identity association in (namespace/service_account -> this role). null = create it yourself."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the role."
  type        = map(string)
  default     = {}
}
