# Pilot light: what one-off operation tasks (the sync, validate) need to run inside the VPC as ECS Fargate
# tasks. Always on, and free while idle: a cluster, roles, a log group, a security group and an empty
# secret cost nothing until a task runs; the ECR repository bills only the images it stores.
#
# The task definition is not here: the runner registers one per image digest (devops/remote.py), because
# the image is pushed after this Terraform runs, under a new tag whenever the toolbox changes. Everything
# that grants access (roles, security group, secret, log group) is here.

resource "aws_ecr_repository" "toolbox" {
  #checkov:skip=CKV_AWS_136: images are encrypted at rest with AES256 already; a KMS key adds $1/month and per-pull request charges, for no access control dev needs
  name                 = "${var.project_name}/toolbox"
  image_tag_mutability = "IMMUTABLE" # tags are content hashes: a tag never moves

  image_scanning_configuration {
    scan_on_push = true
  }

  tags = {
    Name = "${var.project_name}/toolbox"
  }
}

resource "aws_ecr_lifecycle_policy" "toolbox" {
  repository = aws_ecr_repository.toolbox.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Keep the last ${var.ecr_keep_image_count} toolbox images"
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
}

resource "aws_ecs_cluster" "operations" {
  #checkov:skip=CKV_AWS_65: Container Insights bills custom metrics per task; a one-off sync's log lines and exit code say all dev needs
  name = "${local.name_prefix}-operations"

  tags = {
    Name = "${local.name_prefix}-operations"
  }
}

resource "aws_cloudwatch_log_group" "operations" {
  #checkov:skip=CKV_AWS_158: CloudWatch Logs encrypts at rest already; a KMS key adds $1/month and a key policy to maintain, for logs that are masked (no secret reaches them)
  #checkov:skip=CKV_AWS_338: a year of logs is billed storage; the local run log keeps each run's lines too (log_retention_days, 7 by default)
  name              = "/ecs/${local.name_prefix}/operations"
  retention_in_days = var.log_retention_days

  tags = {
    Name = "/ecs/${local.name_prefix}/operations"
  }
}

# The Neon URL, set by `inv secrets.set-neon-url` (stdin). Terraform creates the secret empty (no version):
# the URL never passes through Terraform's state.
resource "aws_secretsmanager_secret" "neon_url" {
  #checkov:skip=CKV_AWS_149: the default aws/secretsmanager key encrypts it for free; a customer key adds $1/month for no access control dev needs
  #checkov:skip=CKV2_AWS_57: Neon issues the password; rotating it is Neon's console or API, then `inv secrets.set-neon-url`
  name                    = "${local.name_prefix}/neon-database-url"
  description             = "Neon connection URL for the sync tasks (set with inv secrets.set-neon-url)"
  recovery_window_in_days = 7

  tags = {
    Name = "${local.name_prefix}/neon-database-url"
  }
}

# ---------------------------------------------------------------------------
# Roles: the execution role (ECS's agent: pull the image, write logs, inject the Neon URL into the
# container's environment), the task role (the sync itself: the bucket's dumps and lock, the RDS secret)
# and validate's read-only role.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "operations_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "operations_execution" {
  name               = "${local.name_prefix}-operations-execution"
  assume_role_policy = data.aws_iam_policy_document.operations_assume.json

  tags = {
    Name = "${local.name_prefix}-operations-execution"
  }
}

data "aws_iam_policy_document" "operations_execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the token is account-wide: this action has no resource
  }

  statement {
    sid       = "PullToolbox"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.toolbox.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.operations.arn}:*"]
  }

  statement {
    sid       = "InjectNeonUrl"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.neon_url.arn]
  }
}

resource "aws_iam_role_policy" "operations_execution" {
  name   = "operations-execution"
  role   = aws_iam_role.operations_execution.id
  policy = data.aws_iam_policy_document.operations_execution.json
}

resource "aws_iam_role" "operations_task" {
  name               = "${local.name_prefix}-operations-task"
  assume_role_policy = data.aws_iam_policy_document.operations_assume.json

  tags = {
    Name = "${local.name_prefix}-operations-task"
  }
}

locals {
  # What a sync writes and reads in the bucket (devops/sync/store.py): dumps per source, and the lock.
  sync_prefixes = ["neon-dumps/", "rds-dumps/", "locks/"]
}

data "aws_iam_policy_document" "operations_task" {
  statement {
    sid       = "ListDumps"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.db_backups.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for prefix in local.sync_prefixes : "${prefix}*"]
    }
  }

  statement {
    sid = "DumpsAndLock"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts"]
    resources = [for prefix in local.sync_prefixes : "${aws_s3_bucket.db_backups.arn}/${prefix}*"]
  }

  statement {
    sid       = "ReadRdsSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_secret_arn]
  }

  statement {
    sid       = "RdsAvailable"
    actions   = ["rds:DescribeDBInstances"]
    resources = [aws_db_instance.this.arn]
  }

  statement {
    sid = "RdsFreeStorage"
    # The plan's check of RDS's room for the replace reads its FreeStorageSpace (devops/sync/storage.py).
    # CloudWatch's metric reads take no resource ARN in IAM: "*" is the only form they accept.
    actions   = ["cloudwatch:GetMetricStatistics"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "operations_task" {
  name   = "operations-task"
  role   = aws_iam_role.operations_task.id
  policy = data.aws_iam_policy_document.operations_task.json
}

# The role of `inv validate --on ecs`: read-only, what validate's checks read (devops/validate/checks.py)
# and the RDS secret for its login check. A separate role, so that the sync's role stays the sync's.
resource "aws_iam_role" "operations_validate" {
  name               = "${local.name_prefix}-operations-validate"
  assume_role_policy = data.aws_iam_policy_document.operations_assume.json

  tags = {
    Name = "${local.name_prefix}-operations-validate"
  }
}

data "aws_iam_policy_document" "operations_validate" {
  statement {
    sid = "Bucket"
    actions = ["s3:ListBucket", "s3:GetLifecycleConfiguration", "s3:GetBucketPublicAccessBlock",
    "s3:GetEncryptionConfiguration", "s3:GetBucketPolicy"]
    resources = [aws_s3_bucket.db_backups.arn]
  }

  statement {
    sid       = "Registries"
    actions   = ["ecr:DescribeRepositories", "ecr:DescribeImages"]
    resources = [for repository in aws_ecr_repository.this : repository.arn]
  }

  statement {
    sid       = "Database"
    actions   = ["rds:DescribeDBInstances"]
    resources = [aws_db_instance.this.arn]
  }

  statement {
    sid       = "DatabaseLogin"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_secret_arn]
  }

  statement {
    sid     = "Services"
    actions = ["ecs:DescribeClusters", "ecs:DescribeServices"]
    # The app's cluster exists in active mode only (count): its ARNs by name.
    resources = ["${local.ecs_arn_prefix}:cluster/${local.name_prefix}-cluster",
    "${local.ecs_arn_prefix}:service/${local.name_prefix}-cluster/*"]
  }

  statement {
    sid       = "Distribution"
    actions   = ["cloudfront:GetDistribution"]
    resources = ["arn:aws:cloudfront::${data.aws_caller_identity.current.account_id}:distribution/*"]
  }

  statement {
    sid = "ReadOnlyWithoutResources"
    # These Describe and List actions take no resource ARN in IAM: "*" is the only form they accept.
    actions = ["ec2:DescribeVpcs", "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
    "servicediscovery:ListServices", "servicediscovery:ListInstances"]
    resources = ["*"]
  }
}

data "aws_caller_identity" "current" {}

locals {
  ecs_arn_prefix = "arn:aws:ecs:${var.aws_region}:${data.aws_caller_identity.current.account_id}"
}

resource "aws_iam_role_policy" "operations_validate" {
  name   = "operations-validate"
  role   = aws_iam_role.operations_validate.id
  policy = data.aws_iam_policy_document.operations_validate.json
}

# ---------------------------------------------------------------------------
# Network: the tasks run in the public subnets with a public IP (no NAT gateway), behind a group that
# admits nothing and sends only HTTPS (S3, Secrets Manager, ECR, CloudWatch Logs) and PostgreSQL (RDS in
# the VPC, Neon on the internet). RDS's group admits it on 5432 (network.tf). S3 traffic goes through a
# gateway endpoint (free) instead of the internet gateway.
# ---------------------------------------------------------------------------

resource "aws_security_group" "operations" {
  #checkov:skip=CKV2_AWS_5: attached by the runner's run_task (networkConfiguration), outside Terraform
  name        = "${local.name_prefix}-operations-sg"
  description = "One-off operation tasks: no inbound, HTTPS and PostgreSQL out"
  vpc_id      = aws_vpc.this.id

  egress {
    description = "HTTPS: S3, Secrets Manager, ECR, CloudWatch Logs"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "PostgreSQL: RDS in the VPC, Neon on the internet"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = {
    Name = "${local.name_prefix}-operations-sg"
  }
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${var.aws_region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.public.id]

  tags = {
    Name = "${local.name_prefix}-s3-endpoint"
  }
}
