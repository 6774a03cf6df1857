-- Sample data for the Neon stand-in: the app's projects and a few related tables.
CREATE TABLE technologies (
    id   serial PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE projects (
    id          serial PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    title       text NOT NULL,
    description text,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived', 'draft')),
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'
);

CREATE TABLE project_technologies (
    project_id    integer NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    technology_id integer NOT NULL REFERENCES technologies (id),
    PRIMARY KEY (project_id, technology_id)
);

CREATE TABLE contact_messages (
    id         bigserial PRIMARY KEY,
    project_id integer REFERENCES projects (id) ON DELETE SET NULL,
    email      text NOT NULL,
    body       text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT '2026-01-02T00:00:00Z'
);

CREATE INDEX contact_messages_project_idx ON contact_messages (project_id);

INSERT INTO technologies (name) VALUES
    ('PostgreSQL'), ('Terraform'), ('Python'), ('TypeScript'), ('Next.js'), ('Grafana');

INSERT INTO projects (slug, title, description, status, metadata) VALUES
    ('portfolio-site', 'Portfolio site', 'Personal site with a project gallery', 'active', '{"stars": 12, "featured": true}'),
    ('pilot-light', 'Pilot light AWS', 'Dev environment that idles cheaply', 'active', '{"stars": 7}'),
    ('metrics-stack', 'Metrics stack', 'Prometheus and Grafana on ECS', 'active', '{"dashboards": 4}'),
    ('db-sync', 'Neon/RDS sync', 'Full-replace sync through S3', 'draft', '{}'),
    ('old-blog', 'Old blog', 'Static blog, retired', 'archived', '{"retired": "2025-06-01"}');

INSERT INTO project_technologies (project_id, technology_id) VALUES
    (1, 4), (1, 5), (2, 2), (2, 3), (3, 6), (3, 2), (4, 1), (4, 3), (5, 4);

INSERT INTO contact_messages (project_id, email, body) VALUES
    (1, 'ada@example.com', 'Lovely gallery.'),
    (2, 'grace@example.com', 'How much does pilot light cost per month?'),
    (NULL, 'linus@example.com', 'General hello.');
