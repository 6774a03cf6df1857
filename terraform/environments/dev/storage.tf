# Pilot light: the bucket for database dumps. Always on.

resource "aws_s3_bucket" "db_backups" {
  #checkov:skip=CKV_AWS_18: access logs need a second bucket of log objects, billed per request and per GB; each dump's manifest already records the sync that wrote it (direction, source, reason, time)
  #checkov:skip=CKV_AWS_21: every dump has its own timestamped key and is never overwritten; versioning would only keep expired dumps and deleted locks as billed noncurrent versions
  #checkov:skip=CKV_AWS_144: cross-region replication doubles storage and adds transfer charges; dumps are 30-day scratch copies of data that lives in Neon and RDS
  #checkov:skip=CKV_AWS_145: SSE-S3 (AES256) encrypts at rest for free; a KMS key costs $1/month plus a request charge per multipart part, for no access control dev needs
  #checkov:skip=CKV2_AWS_62: nothing consumes event notifications; the sync reports its own uploads
  bucket = "${var.project_name}-dev-db-backups"

  tags = {
    Name = "${var.project_name}-dev-db-backups"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "db_backups" {
  bucket = aws_s3_bucket.db_backups.id

  rule {
    id     = "expire-old-dumps"
    status = "Enabled"

    # Empty filter: the rule covers every object in the bucket.
    filter {}

    expiration {
      days = var.db_backups_retention_days
    }
  }

  # A sync killed hard (kill -9, OOM, a laptop closing) leaves its multipart upload's parts behind; the
  # expiration above never removes them (the object never existed), so they would be billed forever.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_public_access_block" "db_backups" {
  bucket = aws_s3_bucket.db_backups.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "db_backups" {
  bucket = aws_s3_bucket.db_backups.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

data "aws_iam_policy_document" "db_backups" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.db_backups.arn, "${aws_s3_bucket.db_backups.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "db_backups" {
  bucket = aws_s3_bucket.db_backups.id
  policy = data.aws_iam_policy_document.db_backups.json

  # S3 rejects concurrent bucket-policy and public-access-block writes
  # (OperationAborted); apply the block first.
  depends_on = [aws_s3_bucket_public_access_block.db_backups]

  lifecycle {
    prevent_destroy = true
  }
}
