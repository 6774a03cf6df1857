# Pilot light: ECR repositories "<project>/backend|frontend|grafana". Always on,
# so images survive deactivation.

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_136: images are encrypted at rest with AES256 already; a KMS key adds $1/month and per-pull request charges, for no access control dev needs
  #checkov:skip=CKV_AWS_51: dev deploys the moving :latest tag (image_tag), which immutable tags would refuse
  for_each = local.ecr_repositories

  name                 = "${var.project_name}/${each.key}"
  image_tag_mutability = "MUTABLE" # services deploy the moving :latest tag

  image_scanning_configuration {
    scan_on_push = true
  }

  tags = {
    Name = "${var.project_name}/${each.key}"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = aws_ecr_repository.this

  repository = each.value.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images after ${var.ecr_untagged_expiry_days} days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.ecr_untagged_expiry_days
        }
        action = {
          type = "expire"
        }
      },
      {
        rulePriority = 2
        description  = "Keep the last ${var.ecr_keep_image_count} images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_image_count
        }
        action = {
          type = "expire"
        }
      },
    ]
  })

  lifecycle {
    prevent_destroy = true
  }
}
