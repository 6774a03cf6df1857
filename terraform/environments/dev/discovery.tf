# Active only: Cloud Map private DNS namespace "<project>.local" and one
# service per ECS service, so tasks find each other as
# <service>.<project>.local (e.g. backend.davidshaevel.local:3001).

resource "aws_service_discovery_private_dns_namespace" "this" {
  count = var.dev_activated ? 1 : 0

  name        = "${var.project_name}.local"
  description = "Service discovery for ${local.name_prefix}"
  vpc         = aws_vpc.this.id

  tags = {
    Name = "${var.project_name}.local"
  }
}

resource "aws_service_discovery_service" "service" {
  for_each = local.active_services

  name = each.key

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this[0].id
    routing_policy = "MULTIVALUE"

    dns_records {
      ttl  = 10
      type = "A"
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }

  # Deregister leftover instances so deactivation never gets stuck.
  force_destroy = true

  tags = {
    Name    = "${each.key}.${var.project_name}.local"
    Service = each.key
  }
}
