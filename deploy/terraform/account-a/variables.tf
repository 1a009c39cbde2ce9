variable "role_name" {
  description = "Name of the role the proxy assumes (its --role-arn names it)."
  type        = string
  default     = "account_a_role"
  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "trusted_role_arn" {
  description = "ARN of Account B's role whose credentials the proxy starts with (module account-b's role_arn). It must exist before this role is created: IAM checks a trust policy's principals when it is saved."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::\\d{12}:role/[\\w+=,.@/-]+$", var.trusted_role_arn))
    error_message = "trusted_role_arn must be an IAM role ARN (arn:aws:iam::222222222222:role/account_b_role)."
  }
}

variable "external_id" {
  description = "ExternalId the proxy must present (its --external-id); recommended when Account B belongs to another organisation. null = no ExternalId condition."
  type        = string
  default     = null
  validation {
    condition     = var.external_id == null || (length(coalesce(var.external_id, "-")) >= 2 && length(coalesce(var.external_id, "-")) <= 1224 && can(regex("^[\\w+=,.@:/-]+$", coalesce(var.external_id, "-"))))
    error_message = "external_id must be 2-1224 characters of letters, digits and +=,.@:/_-, or null."
  }
}

variable "workspace_arn" {
  description = "ARN of the AMP workspace to write to (arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:aps:[a-z0-9-]+:\\d{12}:workspace/[\\w-]+$", var.workspace_arn))
    error_message = "workspace_arn must be an AMP workspace ARN (arn:aws:aps:REGION:ACCOUNT:workspace/ws-ID)."
  }
}

variable "allow_query" {
  description = "Also allow the read path (the proxy's --enable-query): aps:QueryMetrics, aps:GetSeries, aps:GetLabels and aps:GetMetricMetadata on the workspace."
  type        = bool
  default     = false
}

variable "max_session_duration" {
  description = "Longest session the role allows, in seconds (3600-43200). The proxy asks for --session-duration (1h by default); raise this if you raise that."
  type        = number
  default     = 3600
  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200 seconds."
  }
}

variable "tags" {
  description = "Tags for the role."
  type        = map(string)
  default     = {}
}
