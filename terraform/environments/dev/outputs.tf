# Everything the devops tooling needs, in one `terraform output -json`.
# Active-only outputs are null while dev_activated = false.

output "dev_activated" {
  description = "Whether the active set is deployed."
  value       = var.dev_activated
}

output "vpc_id" {
  description = "ID of the dev VPC."
  value       = aws_vpc.this.id
}

# --- Database (always on) ----------------------------------------------------

output "database_endpoint" {
  description = "Host name of the database (no port)."
  value       = aws_db_instance.this.address
}

output "database_port" {
  description = "Port of the database."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the application database."
  value       = aws_db_instance.this.db_name
}

output "database_username" {
  description = "Master user name of the database."
  value       = aws_db_instance.this.username
}

output "database_secret_arn" {
  description = "ARN of the RDS-managed Secrets Manager secret holding the master credentials."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "db_instance_identifier" {
  description = "RDS instance identifier."
  value       = aws_db_instance.this.identifier
}

# --- Storage and registry (always on) ---------------------------------------

output "db_backups_bucket_name" {
  description = "S3 bucket for database dumps."
  value       = aws_s3_bucket.db_backups.bucket
}

output "db_backups_bucket_arn" {
  description = "ARN of the database dumps bucket."
  value       = aws_s3_bucket.db_backups.arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL per image name (backend, frontend, grafana)."
  value       = { for name, repo in aws_ecr_repository.this : name => repo.repository_url }
}

# --- Compute (active only) ---------------------------------------------------

output "ecs_cluster_name" {
  description = "ECS cluster name (null in pilot light)."
  value       = one(aws_ecs_cluster.this[*].name)
}

output "backend_service_name" {
  description = "ECS service name of the backend (null in pilot light)."
  value       = try(aws_ecs_service.service["backend"].name, null)
}

output "frontend_service_name" {
  description = "ECS service name of the frontend (null in pilot light)."
  value       = try(aws_ecs_service.service["frontend"].name, null)
}

output "prometheus_service_name" {
  description = "ECS service name of Prometheus (null in pilot light)."
  value       = try(aws_ecs_service.service["prometheus"].name, null)
}

output "grafana_service_name" {
  description = "ECS service name of Grafana (null in pilot light)."
  value       = try(aws_ecs_service.service["grafana"].name, null)
}

# --- Edge (active only) ------------------------------------------------------

output "alb_dns_name" {
  description = "DNS name of the ALB (null in pilot light)."
  value       = one(aws_lb.this[*].dns_name)
}

output "alb_https" {
  description = "Whether the ALB serves HTTPS (a certificate_arn is set)."
  value       = local.use_https
}

output "cloudfront_distribution_id" {
  description = "CloudFront distribution ID (null in pilot light)."
  value       = one(aws_cloudfront_distribution.this[*].id)
}

output "cloudfront_domain_name" {
  description = "CloudFront domain name (null in pilot light)."
  value       = one(aws_cloudfront_distribution.this[*].domain_name)
}

# --- Service discovery (active only) ----------------------------------------

output "service_discovery_namespace" {
  description = "Cloud Map private DNS namespace name, e.g. davidshaevel.local (null in pilot light)."
  value       = one(aws_service_discovery_private_dns_namespace.this[*].name)
}

output "service_discovery_namespace_id" {
  description = "Cloud Map namespace ID (null in pilot light)."
  value       = one(aws_service_discovery_private_dns_namespace.this[*].id)
}

# --- Operations: one-off ECS tasks in the VPC (always on) -------------------

output "operations" {
  description = "What the runner (inv ... --on ecs) needs to run a task in the VPC: no secret, only names and ARNs."
  value = {
    cluster             = aws_ecs_cluster.operations.name
    repository_url      = aws_ecr_repository.toolbox.repository_url
    repository_name     = aws_ecr_repository.toolbox.name
    execution_role_arn  = aws_iam_role.operations_execution.arn
    task_role_arn       = aws_iam_role.operations_task.arn
    validate_role_arn   = aws_iam_role.operations_validate.arn
    log_group           = aws_cloudwatch_log_group.operations.name
    security_group_id   = aws_security_group.operations.id
    subnet_ids          = aws_subnet.public[*].id
    neon_url_secret_arn = aws_secretsmanager_secret.neon_url.arn
    task_family         = "${local.name_prefix}-operations"
  }
}
