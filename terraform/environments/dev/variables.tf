# ---------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------

variable "project_name" {
  description = "Project name; prefixes resource names (\"<project>-dev-...\")."
  type        = string
  default     = "davidshaevel"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.project_name))
    error_message = "project_name must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "aws_region" {
  description = "AWS region for the dev environment."
  type        = string
  default     = "us-east-1"
}

variable "dev_activated" {
  description = "true: run the active set (ECS services, ALB, CloudFront, Cloud Map). false: pilot light only (network, database, storage, registry)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the dev VPC."
  type        = string
  default     = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "Two availability zones for the subnets. Empty means \"<region>a\" and \"<region>b\" (a fixed list, so subnets never move when AZ listings change)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones must be empty or list exactly two zones."
  }
}

variable "public_subnet_cidrs" {
  description = "CIDRs of the two public subnets (one per AZ)."
  type        = list(string)
  default     = ["10.0.0.0/24", "10.0.1.0/24"]
}

variable "private_subnet_cidrs" {
  description = "CIDRs of the two private subnets (one per AZ)."
  type        = list(string)
  default     = ["10.0.10.0/24", "10.0.11.0/24"]
}

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

# The major Neon creates new projects on (18 since June 2026; Neon's changelog), so that a Neon -> RDS sync
# of a new project is never a downgrade. An RDS already on an older major keeps it by setting this
# (db_engine_version = "15" in a tfvars file): the sync supports targets on 14 and later, and names a
# downgrade in its plan.
variable "db_engine_version" {
  description = "PostgreSQL engine version (major, or major.minor)."
  type        = string
  default     = "18"
}

# A sync replaces the whole database in one transaction, which holds a lock per object it drops and per
# object it creates: about 18,000 for a schema of 500 tables and 1,100 indexes (dropped and created again),
# twice that for 1,000 tables. The server's lock table holds about max_locks_per_transaction x
# (max_connections + background processes), about 110 slots on a db.t4g.micro: 64 (PostgreSQL's default)
# gives ~7,000 locks, 384 ~42,000, for ~15 MB of shared memory. Static: a reboot applies a change.
variable "db_max_locks_per_transaction" {
  description = "max_locks_per_transaction of the dev RDS (its lock table's size per connection slot)."
  type        = number
  default     = 384
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_allocated_storage" {
  description = "Allocated storage in GiB."
  type        = number
  default     = 20
}

# Storage autoscaling: RDS grows the instance's storage up to this many GiB when free space stays under 10% of
# it for 5 minutes (at most once in 6 hours). 0 leaves it off, as before: the instance stays at
# db_allocated_storage and goes to storage-full when that is used up. A sync's full replace keeps the old data
# and the new until it commits, so it needs room for both (the sync's plan checks it: docs/sync.md). With
# autoscaling on, Terraform ignores the allocated storage RDS has grown to.
variable "db_max_allocated_storage" {
  description = "Upper limit in GiB for RDS storage autoscaling (0: autoscaling off; else at least db_allocated_storage)."
  type        = number
  default     = 0

  validation {
    condition     = var.db_max_allocated_storage >= 0 && floor(var.db_max_allocated_storage) == var.db_max_allocated_storage
    error_message = "db_max_allocated_storage must be a whole number of GiB, 0 for no autoscaling."
  }
}

variable "db_name" {
  description = "Name of the initial database (must be a valid PostgreSQL identifier)."
  type        = string
  default     = "davidshaevel"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_]{0,62}$", var.db_name))
    error_message = "db_name must start with a letter and contain only letters, digits and underscores (max 63)."
  }
}

variable "db_username" {
  description = "Master user name of the database. The password is generated and kept in Secrets Manager by RDS."
  type        = string
  default     = "dbadmin"
}

variable "db_backup_retention_days" {
  description = "Automated backup retention in days (0 disables automated backups)."
  type        = number
  default     = 1
}

variable "db_deletion_protection" {
  description = "Enable RDS deletion protection (the instance is always on; turn it off only to delete dev for good)."
  type        = bool
  default     = true
}

variable "db_backups_retention_days" {
  description = "Days before a dump in the db-backups bucket expires."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

variable "ecr_keep_image_count" {
  description = "Number of images each ECR repository keeps (older ones expire)."
  type        = number
  default     = 10
}

variable "ecr_untagged_expiry_days" {
  description = "Days after which untagged images expire."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------------------
# Compute (active only)
# ---------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the backend, frontend and grafana images pulled from ECR."
  type        = string
  default     = "latest"
}

variable "prometheus_image" {
  description = "Container image for Prometheus."
  type        = string
  default     = "prom/prometheus:latest"
}

variable "service_desired_count" {
  description = "Desired task count of each ECS service when active."
  type        = number
  default     = 1
}

variable "log_retention_days" {
  description = "Retention of the ECS CloudWatch log groups."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------------------
# Edge (active only)
# ---------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate ARN for the ALB HTTPS listener. Empty: the ALB serves plain HTTP on port 80."
  type        = string
  default     = ""
}

variable "alb_ssl_policy" {
  description = "SSL policy of the HTTPS listener (used only with certificate_arn)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "origin_domain_name" {
  description = "Domain CloudFront uses to reach the ALB. Empty means the ALB's own DNS name. With certificate_arn set, use a name covered by that certificate (pointing at the ALB), since CloudFront validates the origin certificate."
  type        = string
  default     = ""
}
