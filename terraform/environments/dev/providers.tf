provider "aws" {
  region = var.aws_region

  # Project / Environment / ManagedBy on every taggable resource.
  default_tags {
    tags = local.common_tags
  }
}
