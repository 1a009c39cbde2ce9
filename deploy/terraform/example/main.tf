# Both accounts in one configuration: Account B's base role first, then Account A's role trusting
# it (IAM refuses a trust policy naming a role that does not exist yet; the module reference
# orders them). A's role ARN is known before it exists, so B's policy can name it up front.
#
#   terraform init
#   terraform apply -var workspace_arn=arn:aws:aps:us-east-1:111111111111:workspace/ws-EXAMPLE \
#     -var oidc_issuer_url=$(aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer --output text) \
#     -var external_id=EXAMPLE-ID -var account_a_profile=account-a -var account_b_profile=account-b
#   terraform output -json proxy_env     # the proxy's environment (AMP_RW_PROXY_*)
#
# deploy/terraform/test.sh applies this very configuration to moto (with an override file that
# points both providers at it) and runs `amp-rw-proxy check` against the roles it made.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  alias   = "account_a"
  region  = local.region
  profile = var.account_a_profile
}

provider "aws" {
  alias   = "account_b"
  region  = local.region
  profile = var.account_b_profile
}

locals {
  workspace = regex("^arn:(?P<partition>[^:]+):aps:(?P<region>[^:]+):(?P<account>\\d{12}):workspace/", var.workspace_arn)
  region    = local.workspace.region
  # Known before the role exists: B's permission policy names it, A's module creates it.
  account_a_role_arn = "arn:${local.workspace.partition}:iam::${local.workspace.account}:role/${var.account_a_role_name}"
}

module "account_b" {
  source    = "../account-b"
  providers = { aws = aws.account_b }

  account_a_role_arns = [local.account_a_role_arn]
  trust               = var.trust
  oidc_issuer_url     = var.oidc_issuer_url
  cluster_name        = var.cluster_name
  namespace           = var.namespace
  service_account     = var.service_account
}

module "account_a" {
  source    = "../account-a"
  providers = { aws = aws.account_a }

  role_name        = var.account_a_role_name
  trusted_role_arn = module.account_b.role_arn
  external_id      = var.external_id
  workspace_arn    = var.workspace_arn
  allow_query      = var.allow_query
}
