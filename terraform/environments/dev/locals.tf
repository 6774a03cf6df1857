locals {
  name_prefix = "${var.project_name}-dev"
  db_major    = split(".", var.db_engine_version)[0]

  # Applied to every resource through the provider's default_tags.
  common_tags = {
    Project     = var.project_name
    Environment = "dev"
    ManagedBy   = "terraform"
  }

  azs = length(var.availability_zones) > 0 ? var.availability_zones : ["${var.aws_region}a", "${var.aws_region}b"]

  # ECR repositories (always on): "<project>/<name>".
  ecr_repositories = toset(["backend", "frontend", "grafana"])

  # The four ECS services of the active set. `ecr_repo` names the ECR
  # repository the image comes from (null: `image` is used as is);
  # `load_balanced` services get an ALB target group.
  services = {
    backend = {
      port          = 3001
      cpu           = 256
      memory        = 512
      ecr_repo      = "backend"
      image         = null
      load_balanced = true
    }
    frontend = {
      port          = 3000
      cpu           = 256
      memory        = 512
      ecr_repo      = "frontend"
      image         = null
      load_balanced = true
    }
    prometheus = {
      port          = 9090
      cpu           = 256
      memory        = 512
      ecr_repo      = null
      image         = var.prometheus_image
      load_balanced = false
    }
    grafana = {
      port          = 3000
      cpu           = 256
      memory        = 512
      ecr_repo      = "grafana"
      image         = null
      load_balanced = false
    }
  }

  # What exists right now: everything when activated, nothing in pilot light.
  active_services = var.dev_activated ? local.services : {}
  active_lb_services = {
    for name, svc in local.active_services : name => svc if svc.load_balanced
  }

  use_https = var.certificate_arn != ""
}
