# Pilot light: VPC, subnets, routing and security groups. Always on.
#
# There is deliberately no NAT gateway (~$32/month plus data charges, the
# biggest fixed cost of a small VPC). ECS tasks run in the public subnets with
# assign_public_ip = true, so they reach ECR, CloudWatch Logs and Secrets
# Manager through the internet gateway; their security group still admits
# traffic only from the ALB and from each other. The database sits in private
# subnets that have no route to the internet at all.

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11: flow logs bill CloudWatch Logs ingestion for every connection; dev has no traffic worth auditing
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = "${local.name_prefix}-vpc"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = "${local.name_prefix}-igw"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_subnet" "public" {
  #checkov:skip=CKV_AWS_130: no NAT gateway (~$32/month plus data): Fargate tasks reach ECR, logs and Secrets Manager with a public IP; their security group still admits only the ALB and each other
  count = 2

  vpc_id                  = aws_vpc.this.id
  cidr_block              = var.public_subnet_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = true

  tags = {
    Name = "${local.name_prefix}-public-${local.azs[count.index]}"
    Tier = "public"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_subnet" "private" {
  count = 2

  vpc_id            = aws_vpc.this.id
  cidr_block        = var.private_subnet_cidrs[count.index]
  availability_zone = local.azs[count.index]

  tags = {
    Name = "${local.name_prefix}-private-${local.azs[count.index]}"
    Tier = "private"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = {
    Name = "${local.name_prefix}-public-rt"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id

  lifecycle {
    prevent_destroy = true
  }
}

# Private subnets: local routes only (no NAT, no internet).
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = "${local.name_prefix}-private-rt"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_route_table_association" "private" {
  count = 2

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id

  lifecycle {
    prevent_destroy = true
  }
}

# ---------------------------------------------------------------------------
# Security groups
# ---------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  #checkov:skip=CKV_AWS_260: the public entry point: CloudFront's origin and the dev site's only listener without a certificate (with one, port 80 only redirects to 443)
  name        = "${local.name_prefix}-alb-sg"
  description = "Public HTTP/HTTPS to the dev ALB"
  vpc_id      = aws_vpc.this.id

  ingress {
    description = "HTTP"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  ingress {
    description = "HTTPS"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  # The ALB talks only to its targets (and their health checks), all in the VPC.
  egress {
    description = "To the targets in the VPC"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }

  tags = {
    Name = "${local.name_prefix}-alb-sg"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_security_group" "ecs_tasks" {
  #checkov:skip=CKV_AWS_382: no NAT gateway and no VPC endpoints (~$7/month each): ECR, CloudWatch Logs and Secrets Manager are reached over the internet
  name        = "${local.name_prefix}-ecs-tasks-sg"
  description = "ECS tasks: from the ALB and from each other"
  vpc_id      = aws_vpc.this.id

  ingress {
    description     = "All TCP from the ALB"
    from_port       = 0
    to_port         = 65535
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }

  ingress {
    description = "Task to task (Prometheus scrapes, Grafana queries)"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  egress {
    description = "All outbound (ECR pulls, logs, Secrets Manager, database)"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = {
    Name = "${local.name_prefix}-ecs-tasks-sg"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_security_group" "db" {
  name        = "${local.name_prefix}-db-sg"
  description = "PostgreSQL from the ECS tasks only"
  vpc_id      = aws_vpc.this.id

  ingress {
    description     = "PostgreSQL from ECS tasks (the services and the operation tasks)"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.ecs_tasks.id, aws_security_group.operations.id]
  }

  # No outbound at all: the database only answers (replies need no egress rule) and its private subnets
  # have no route out. An empty list removes the allow-all rule AWS adds to every new group.
  egress = []

  tags = {
    Name = "${local.name_prefix}-db-sg"
  }

  lifecycle {
    prevent_destroy = true
  }
}

# The VPC's default group, which AWS creates with every VPC: managed here only to hold no rules, so that
# anything launched without a group of its own gets no traffic at all.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = "${local.name_prefix}-default-sg"
  }

  lifecycle {
    prevent_destroy = true
  }
}
