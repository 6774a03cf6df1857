# Pilot light: the PostgreSQL instance. Always on, never replaced.
#
# The master password is generated and stored in Secrets Manager by RDS
# (manage_master_user_password); its ARN is exported as database_secret_arn.

resource "aws_db_subnet_group" "this" {
  name        = "${local.name_prefix}-db-subnets"
  description = "Private subnets of the dev database"
  subnet_ids  = aws_subnet.private[*].id

  tags = {
    Name = "${local.name_prefix}-db-subnets"
  }

  lifecycle {
    prevent_destroy = true
  }
}

# The instance's own parameters: the default group's max_locks_per_transaction (64) is too small for a sync
# (see var.db_max_locks_per_transaction), and TLS is required explicitly (RDS's default from 15 on, here on
# any major). One group per major (a parameter group belongs to a family): a major upgrade creates the next
# one before the instance moves to it.
resource "aws_db_parameter_group" "this" {
  name        = "${local.name_prefix}-postgres${local.db_major}"
  family      = "postgres${local.db_major}"
  description = "dev PostgreSQL ${local.db_major}: a lock table for whole-database syncs, TLS required"

  # Static: RDS applies it at the instance's next reboot (the plan shows the group's change; the instance
  # shows "pending-reboot" until then: aws rds reboot-db-instance --db-instance-identifier <id>).
  parameter {
    name         = "max_locks_per_transaction"
    value        = tostring(var.db_max_locks_per_transaction)
    apply_method = "pending-reboot"
  }

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  tags = {
    Name = "${local.name_prefix}-postgres${local.db_major}"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157: Multi-AZ doubles the RDS bill; dev tolerates an AZ outage (Neon keeps the data while dev is off)
  #checkov:skip=CKV_AWS_118: enhanced monitoring needs an IAM role and bills its per-second OS metrics to CloudWatch Logs; the basic 1-minute CloudWatch metrics are enough for dev
  #checkov:skip=CKV_AWS_353: Performance Insights is for profiling production load; dev's handful of users does not need it, and pg_stat_statements answers the same questions for free
  #checkov:skip=CKV_AWS_129: exporting the PostgreSQL log bills CloudWatch Logs ingestion into a log group RDS creates outside Terraform, kept forever; RDS keeps its own log files, readable in the console
  #checkov:skip=CKV2_AWS_30: query logging (log_statement) writes every statement, syncs' full restores included: log volume and cost for nothing dev looks at
  identifier           = "${var.project_name}-dev-db"
  engine               = "postgres"
  engine_version       = var.db_engine_version
  instance_class       = var.db_instance_class
  parameter_group_name = aws_db_parameter_group.this.name

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage # 0: no storage autoscaling
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name                     = var.db_name
  username                    = var.db_username
  manage_master_user_password = true
  port                        = 5432

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = false

  backup_retention_period = var.db_backup_retention_days
  copy_tags_to_snapshot   = true
  skip_final_snapshot     = true # dev: dumps go to the db-backups bucket instead
  deletion_protection     = var.db_deletion_protection
  apply_immediately       = true

  # Both free: security fixes arrive in the maintenance window; IAM authentication does nothing until a
  # role is granted rds_iam (a door for password-less access, no new exposure).
  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true

  tags = {
    Name = "${var.project_name}-dev-db"
  }

  lifecycle {
    prevent_destroy = true

    precondition {
      condition     = var.db_max_allocated_storage == 0 || var.db_max_allocated_storage >= var.db_allocated_storage
      error_message = "db_max_allocated_storage must be 0 (storage autoscaling off) or at least db_allocated_storage."
    }
  }
}
