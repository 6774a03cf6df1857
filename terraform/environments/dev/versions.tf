# Terraform and provider requirements for the dev environment.
#
# The S3 backend is a *partial* configuration on purpose: the bucket, key,
# region and locking options are supplied at init time, e.g.
#
#   terraform init -backend-config=backend.hcl
#
# (see backend.hcl.example). Nothing here pins endpoints or a provider mirror:
# pointing Terraform at an emulator is done only through the environment
# (AWS_ENDPOINT_URL plus test credentials).
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  backend "s3" {}
}
