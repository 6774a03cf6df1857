# Active only: ECS cluster, log groups, task execution role, and one Fargate
# task definition + service per entry of local.services. Everything here is
# gated on var.dev_activated and is destroyed when it goes back to false.

locals {
  # Extra container settings per service. The backend gets the database
  # connection; its password comes from the RDS-managed secret.
  service_environment = {
    backend = [
      { name = "NODE_ENV", value = "production" },
      { name = "PORT", value = "3001" },
      { name = "DB_HOST", value = aws_db_instance.this.address },
      { name = "DB_PORT", value = tostring(aws_db_instance.this.port) },
      { name = "DB_NAME", value = var.db_name },
      { name = "DB_USERNAME", value = var.db_username },
    ]
    frontend = [
      { name = "NODE_ENV", value = "production" },
      { name = "PORT", value = "3000" },
    ]
    prometheus = []
    grafana    = []
  }

  service_secrets = {
    backend = [
      { name = "DB_PASSWORD", valueFrom = "${local.db_secret_arn}:password::" },
    ]
  }

  db_secret_arn = aws_db_instance.this.master_user_secret[0].secret_arn

  service_images = {
    for name, svc in local.services : name => (
      svc.ecr_repo != null ? "${aws_ecr_repository.this[svc.ecr_repo].repository_url}:${var.image_tag}" : svc.image
    )
  }
}

resource "aws_ecs_cluster" "this" {
  count = var.dev_activated ? 1 : 0

  name = "${local.name_prefix}-cluster"

  tags = {
    Name = "${local.name_prefix}-cluster"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_158: CloudWatch Logs encrypts at rest already; a KMS key adds $1/month and a key policy to maintain, for dev's debug logs
  #checkov:skip=CKV_AWS_338: a year of logs is billed storage; dev's logs matter for days (log_retention_days, 7 by default)
  for_each = local.active_services

  name              = "/ecs/${local.name_prefix}/${each.key}"
  retention_in_days = var.log_retention_days

  tags = {
    Name    = "/ecs/${local.name_prefix}/${each.key}"
    Service = each.key
  }
}

# ---------------------------------------------------------------------------
# Task execution role: pull images, write logs, read the database secret.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "task_execution" {
  count = var.dev_activated ? 1 : 0

  name               = "${local.name_prefix}-ecs-task-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json

  tags = {
    Name = "${local.name_prefix}-ecs-task-execution"
  }
}

resource "aws_iam_role_policy_attachment" "task_execution" {
  count = var.dev_activated ? 1 : 0

  role       = aws_iam_role.task_execution[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "task_execution_secrets" {
  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_secret_arn]
  }
}

resource "aws_iam_role_policy" "task_execution_secrets" {
  count = var.dev_activated ? 1 : 0

  name   = "read-database-secret"
  role   = aws_iam_role.task_execution[0].id
  policy = data.aws_iam_policy_document.task_execution_secrets.json
}

# ---------------------------------------------------------------------------
# Task definitions and services (one per local.services entry)
# ---------------------------------------------------------------------------

resource "aws_ecs_task_definition" "service" {
  for_each = local.active_services

  family                   = "${local.name_prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(each.value.cpu)
  memory                   = tostring(each.value.memory)
  execution_role_arn       = aws_iam_role.task_execution[0].arn

  container_definitions = jsonencode([
    {
      name      = each.key
      image     = local.service_images[each.key]
      essential = true
      portMappings = [
        {
          containerPort = each.value.port
          hostPort      = each.value.port
          protocol      = "tcp"
        },
      ]
      environment = local.service_environment[each.key]
      secrets     = lookup(local.service_secrets, each.key, [])
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = each.key
        }
      }
    },
  ])

  tags = {
    Name    = "${local.name_prefix}-${each.key}"
    Service = each.key
  }
}

resource "aws_ecs_service" "service" {
  #checkov:skip=CKV_AWS_333: no NAT gateway (~$32/month plus data): tasks need a public IP to pull images and read secrets; their security group admits only the ALB and each other
  for_each = local.active_services

  name            = "${local.name_prefix}-${each.key}"
  cluster         = aws_ecs_cluster.this[0].id
  task_definition = aws_ecs_task_definition.service[each.key].arn
  desired_count   = var.service_desired_count
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = aws_subnet.public[*].id
    security_groups  = [aws_security_group.ecs_tasks.id]
    assign_public_ip = true # no NAT gateway: see network.tf
  }

  service_registries {
    registry_arn = aws_service_discovery_service.service[each.key].arn
  }

  dynamic "load_balancer" {
    for_each = each.value.load_balanced ? [each.key] : []

    content {
      target_group_arn = aws_lb_target_group.service[load_balancer.value].arn
      container_name   = load_balancer.value
      container_port   = each.value.port
    }
  }

  # ECS refuses a target group that no listener uses yet ("target group ...
  # does not have an associated load balancer"), so load-balanced services
  # must wait for the listeners and the /api/* rule.
  depends_on = [
    aws_lb_listener.http,
    aws_lb_listener.https,
    aws_lb_listener_rule.api,
  ]

  tags = {
    Name    = "${local.name_prefix}-${each.key}"
    Service = each.key
  }

  lifecycle {
    # The provider defaults this to "DISABLED" but the moto emulator never
    # returns it, which would show a change on every plan. Not managed here.
    ignore_changes = [availability_zone_rebalancing]
  }
}
