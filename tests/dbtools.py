"""Independent views of a database for tests: what is in it, read without the engine's own code."""

from __future__ import annotations

import io

import psycopg2
from psycopg2 import sql

SYSTEM = ("pg_catalog", "information_schema")


def snapshot(url: str) -> dict:
    """Every user table's columns and full content (sorted COPY text), and every sequence's state."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN %s AND table_schema NOT LIKE 'pg_toast%%' "
            "ORDER BY 1, 2", (SYSTEM,))
        tables = cur.fetchall()
        result: dict = {"tables": {}, "sequences": {}}
        for schema, table in tables:
            cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (schema, table))
            columns = cur.fetchall()
            buffer = io.StringIO()
            cur.copy_expert(sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT").format(
                sql.Identifier(schema, table),
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c, _ in columns)).as_string(cur),
                buffer)
            result["tables"][f"{schema}.{table}"] = {"columns": columns, "rows": buffer.getvalue()}
        cur.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2")
        result["sequences"] = {f"{s}.{n}": v for s, n, v in cur.fetchall()}
        cur.execute("SELECT table_schema, table_name FROM information_schema.views WHERE table_schema NOT IN %s "
                    "ORDER BY 1, 2", (SYSTEM,))
        result["views"] = cur.fetchall()
        result.update(objects(cur))
    conn.close()
    return result


# Everything but tables' rows and sequences, each read from the catalogs as plainly as possible: names,
# signatures, bodies as written, and the contents of every view and materialized view (deparsed text such as
# a view's definition differs between server majors, so views are compared by what they return). Objects
# that belong to an extension are left out, and so are the extensions: a sync leaves them alone.
NOT_EXTENSION = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {catalog}::regclass "
                 "AND d.objid = {oid} AND d.deptype = 'e')")
OBJECT_QUERIES = {
    "schemas": "SELECT nspname FROM pg_namespace n WHERE nspname NOT IN ('pg_catalog', 'information_schema') "
               "AND nspname !~ '^pg_' AND " + NOT_EXTENSION.format(catalog="'pg_namespace'", oid="n.oid") + " ORDER BY 1",
    "relations": "SELECT n.nspname, c.relname, c.relkind::text, c.relrowsecurity, c.relispartition, "
                 "pg_get_expr(c.relpartbound, c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND n.nspname NOT IN ('pg_catalog', "
                 "'information_schema') AND n.nspname !~ '^pg_' AND "
                 + NOT_EXTENSION.format(catalog="'pg_class'", oid="c.oid") + " ORDER BY 1, 2",
    "columns": "SELECT table_schema, table_name, column_name, data_type, udt_schema, udt_name, is_nullable, "
               "is_identity, is_generated, generation_expression, collation_name FROM information_schema.columns "
               "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, ordinal_position",
    "routines": "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind::text, "
                "l.lanname, p.prosrc, pg_get_function_result(p.oid) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
                + NOT_EXTENSION.format(catalog="'pg_proc'", oid="p.oid") + " ORDER BY 1, 2, 3",
    "types": "SELECT n.nspname, t.typname, t.typtype::text, format_type(t.typbasetype, t.typtypmod), "
             "(SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid), "
             "(SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum) FROM pg_attribute "
             " WHERE attrelid = t.typrelid AND attnum > 0 AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'), "
             "(SELECT array_agg(pg_get_constraintdef(oid) ORDER BY conname) FROM pg_constraint WHERE contypid = t.oid) "
             "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype IN ('e', 'c', 'd', 'r') "
             "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' "
             "AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') AND "
             + NOT_EXTENSION.format(catalog="'pg_type'", oid="t.oid") + " ORDER BY 1, 2",
    "collations": "SELECT n.nspname, c.collname, c.collprovider::text FROM pg_collation c "
                  "JOIN pg_namespace n ON n.oid = c.collnamespace WHERE n.nspname NOT IN ('pg_catalog', "
                  "'information_schema') AND " + NOT_EXTENSION.format(catalog="'pg_collation'", oid="c.oid")
                  + " ORDER BY 1, 2",
    "operators": "SELECT n.nspname, o.oprname, format_type(o.oprleft, NULL), format_type(o.oprright, NULL) "
                 "FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE n.nspname NOT IN "
                 "('pg_catalog', 'information_schema') AND "
                 + NOT_EXTENSION.format(catalog="'pg_operator'", oid="o.oid") + " ORDER BY 1, 2",
    # NOT NULL is catalogued as a constraint (contype 'n') from PostgreSQL 18 on: compared through the
    # columns' is_nullable instead, which every major has.
    "constraints": "SELECT conrelid::regclass::text, conname, contype::text, condeferrable FROM pg_constraint "
                   "WHERE conrelid <> 0 AND contype <> 'n' AND connamespace::regnamespace::text NOT IN "
                   "('pg_catalog', 'information_schema') ORDER BY 1, 2",
    "indexes": "SELECT schemaname, tablename, indexname FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', "
               "'information_schema') ORDER BY 1, 2, 3",
    "triggers": "SELECT tgrelid::regclass::text, tgname, tgfoid::regproc::text, tgtype, tgenabled::text "
                "FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    "policies": "SELECT schemaname, tablename, policyname, permissive, roles::text[], cmd FROM pg_policies "
                "ORDER BY 1, 2, 3",
    "large_objects": "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1",
}


def objects(cur) -> dict:
    """Every object kind a full replace must carry (OBJECT_QUERIES), and the rows every view and
    materialized view returns."""
    found = {}
    for kind, query in OBJECT_QUERIES.items():
        cur.execute(query)
        found[kind] = cur.fetchall()
    found["view_rows"] = {}
    for schema, name, kind, *_ in found["relations"]:
        if kind in ("v", "m"):
            buffer = io.StringIO()
            cur.copy_expert(sql.SQL("COPY (SELECT * FROM {} ORDER BY 1) TO STDOUT").format(
                sql.Identifier(schema, name)).as_string(cur), buffer)
            found["view_rows"][f"{schema}.{name}"] = sorted(buffer.getvalue().splitlines())
    return found


def execute(url: str, statements: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statements)
    finally:
        conn.close()


def scalar(url: str, query: str):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()[0]
    finally:
        conn.close()


def reset(url: str) -> None:
    """Drop everything the owner role owns in the database: an empty starting point."""
    execute(url, "DROP OWNED BY CURRENT_USER CASCADE")


RICH_DATA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('happy', 'sad');
CREATE TABLE app.customers (
    id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE, mood app.mood,
    profile jsonb, tags text[], balance numeric(12, 2), born date, seen timestamptz, photo bytea
);
CREATE TABLE app.orders (
    id serial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES app.customers (id), total double precision,
    note text, placed timestamptz DEFAULT '2026-01-01T00:00:00Z'
);
CREATE INDEX orders_customer_idx ON app.orders (customer_id);
CREATE VIEW app.big_orders AS SELECT * FROM app.orders WHERE total > 100;
CREATE TABLE public.settings (key text PRIMARY KEY, value jsonb);
COMMENT ON TABLE app.customers IS 'people who buy things';
INSERT INTO app.customers (name, email, mood, profile, tags, balance, born, seen, photo)
SELECT 'customer ' || g, 'c' || g || '@example.com', (ARRAY['happy', 'sad'])[1 + g % 2]::app.mood,
       jsonb_build_object('n', g, 'nested', jsonb_build_object('ok', g % 3 = 0)),
       ARRAY['t' || g % 5, 'ünïcødé ' || g], g * 1.25, date '2000-01-01' + g, timestamptz '2026-01-01' + g * interval '1 hour',
       CASE WHEN g % 7 = 0 THEN NULL ELSE gen_random_bytes(64) END
FROM generate_series(1, 300) g;
INSERT INTO app.orders (customer_id, total, note)
SELECT 1 + g % 300, g * 3.3, CASE WHEN g % 4 = 0 THEN NULL ELSE E'line\\twith\\ttabs and\\nnewlines ' || g END
FROM generate_series(1, 1000) g;
INSERT INTO public.settings VALUES ('theme', '"dark"'), ('limits', '{"max": 10}');
"""


def every_kind(scale: int) -> str:
    """A schema with every object kind a full replace must handle, across schemas and with dependencies
    between them; ``scale`` varies the contents, so that two databases built from it differ."""
    return f"""
CREATE SCHEMA ext;
CREATE EXTENSION citext SCHEMA ext;                       -- extension objects in a schema of their own
CREATE EXTENSION IF NOT EXISTS pgcrypto;                  -- ... and in public
CREATE SCHEMA app;
CREATE SCHEMA reporting;
CREATE TYPE app.mood AS ENUM ('happy', 'sad', 'meh');
CREATE TYPE app.address AS (street text, city text);
CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
CREATE TYPE app.span AS RANGE (subtype = integer);
CREATE COLLATION app.bytewise FROM "C";
CREATE FUNCTION app.same_text(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower(a) = lower(b)';
CREATE OPERATOR app.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = app.same_text);
CREATE TABLE app.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE app.bytewise NOT NULL,
    email ext.citext UNIQUE,
    mood app.mood,
    home app.address,
    visits app.positive,
    band app.span,
    name_length integer GENERATED ALWAYS AS (length(name)) STORED
);
CREATE TABLE app.orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES app.customers (id),
    total numeric(12, 2),
    updated timestamptz
);
CREATE FUNCTION app.total_for(customer bigint) RETURNS numeric LANGUAGE sql STABLE
    AS 'SELECT coalesce(sum(total), 0) FROM app.orders WHERE customer_id = customer';
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated := '2026-01-01T00:00:00Z'; RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE PROCEDURE app.forget(older_than integer) LANGUAGE plpgsql AS $$
BEGIN DELETE FROM app.orders WHERE id < older_than; END $$;
CREATE AGGREGATE app.total_of(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0');
-- a foreign-key cycle
CREATE TABLE app.teams (id int PRIMARY KEY, lead_id int);
CREATE TABLE app.people (id int PRIMARY KEY, team_id int REFERENCES app.teams (id) DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE app.teams ADD FOREIGN KEY (lead_id) REFERENCES app.people (id) DEFERRABLE INITIALLY DEFERRED;
-- partitions
CREATE TABLE app.events (id int, happened date NOT NULL, what text) PARTITION BY RANGE (happened);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
-- a standalone sequence
CREATE SEQUENCE app.tickets START 100;
-- row-level security
CREATE TABLE app.notes (id int PRIMARY KEY, owner name DEFAULT current_user, body text);
ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_own ON app.notes USING (owner = current_user);
-- views over tables, over views, across schemas; a materialized view over a view
CREATE VIEW app.big_orders AS SELECT * FROM app.orders WHERE total > 10;
CREATE VIEW reporting.customer_totals AS
    SELECT c.id, c.name, app.total_for(c.id) AS total, count(b.id) AS big
    FROM app.customers c LEFT JOIN app.big_orders b ON b.customer_id = c.id GROUP BY c.id, c.name;
CREATE MATERIALIZED VIEW reporting.moods AS
    SELECT c.mood, count(*) AS customers, sum(t.total) AS total
    FROM app.customers c JOIN reporting.customer_totals t ON t.id = c.id GROUP BY c.mood;
CREATE VIEW public.recent_events AS SELECT * FROM app.events WHERE happened > '2025-06-01';

INSERT INTO app.customers (name, email, mood, home, visits, band)
SELECT 'customer ' || g, 'C' || g || '@Example.com', (ARRAY['happy', 'sad', 'meh'])[1 + g % 3]::app.mood,
       ROW('street ' || g, 'city ' || g % 7)::app.address, 1 + g % 9, app.span(g, g + {scale})
FROM generate_series(1, 40 * {scale}) g;
INSERT INTO app.orders (customer_id, total) SELECT 1 + g % (40 * {scale}), g * 1.5 FROM generate_series(1, 90 * {scale}) g;
UPDATE app.orders SET total = total + 1 WHERE id % 10 = 0;
INSERT INTO app.teams VALUES (1, NULL), (2, NULL);
INSERT INTO app.people SELECT g, 1 + g % 2 FROM generate_series(1, 5 * {scale}) g;
UPDATE app.teams SET lead_id = 1;
INSERT INTO app.events SELECT g, date '2025-01-01' + g * 3, 'event ' || g FROM generate_series(1, 100 + {scale}) g;
SELECT nextval('app.tickets') FROM generate_series(1, {scale});
INSERT INTO app.notes (id, body) SELECT g, 'note ' || g FROM generate_series(1, 3 * {scale}) g;
REFRESH MATERIALIZED VIEW reporting.moods;
SELECT lo_from_bytea(0, convert_to('large object ' || g || ' of scale {scale}', 'UTF8')) FROM generate_series(1, {scale}) g;
COMMENT ON VIEW reporting.customer_totals IS 'per customer';
"""


# Objects only a target has before a sync: every one must be gone after it.
TARGET_ONLY = """
CREATE TABLE public.stray (id int PRIMARY KEY);
CREATE VIEW public.stray_view AS SELECT * FROM public.stray;
CREATE FUNCTION public.stray_fn(x app.mood) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TYPE public.stray_type AS ENUM ('x');
CREATE DOMAIN public.stray_domain AS text;
CREATE SCHEMA only_here;
CREATE TABLE only_here.things (id int REFERENCES public.stray (id));
CREATE VIEW app.orders_view AS SELECT * FROM app.orders;
CREATE MATERIALIZED VIEW public.stray_matview AS SELECT * FROM app.big_orders;
CREATE FUNCTION ext.not_the_extensions() RETURNS int LANGUAGE sql AS 'SELECT 2';
"""


# The states the `databases` fixture (tests/conftest.py) sets a database to, by name: the SQL that builds
# each from an empty database. Named here so that tests share them rather than each writing its own.
STATES = {
    "rich": RICH_DATA,
    "keep_me": "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1), (2), (3);",
    # A target's own contents: a table Neon has too (other rows) and one only RDS has.
    "settings_and_rds_only": ("CREATE TABLE public.settings (key text PRIMARY KEY, value jsonb);"
                              "INSERT INTO public.settings VALUES ('old', '1');"
                              "CREATE TABLE public.rds_only (id int); INSERT INTO rds_only VALUES (1), (2);"),
    # Two scales, so that a source and a target built from every_kind differ in contents.
    "every_kind_scale_3": every_kind(scale=3),
    "every_kind_scale_2_and_target_only": every_kind(scale=2) + TARGET_ONLY,
}


def state(name: str) -> str:
    """The SQL of a named state (STATES); an unknown name fails, listing the known ones."""
    try:
        return STATES[name]
    except KeyError:
        raise KeyError(f"no database state {name!r}; known: {', '.join(STATES)}") from None


def big_schema(schemas: int = 6, tables_per_schema: int = 50, rows: int = 3, seed: int = 1) -> str:
    """An application's schema, generated: ``schemas`` x ``tables_per_schema`` tables in schemas s0, s1, ...,
    each with an identity key, a foreign key to the table before it, a text column with a default, jsonb,
    two more indexes, a CHECK, a trigger on a per-schema function and ``rows`` rows; per schema also a
    partitioned table with three partitions, an enum, a domain, a standalone sequence, a view and a SQL
    function. ``seed`` varies the rows, so that two databases built from it differ."""
    parts = []
    for s in range(schemas):
        parts.append(f"""
CREATE SCHEMA s{s};
CREATE TYPE s{s}.status AS ENUM ('new', 'open', 'closed');
CREATE DOMAIN s{s}.amount AS numeric(12, 2) CHECK (VALUE >= 0);
CREATE SEQUENCE s{s}.tickets START 1000;
CREATE FUNCTION s{s}.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated := '2026-01-01T00:00:00Z'; RETURN NEW; END $$;
CREATE TABLE s{s}.events (id bigint, happened date NOT NULL, what text) PARTITION BY RANGE (happened);
CREATE TABLE s{s}.events_2024 PARTITION OF s{s}.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE s{s}.events_2025 PARTITION OF s{s}.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE s{s}.events_2026 PARTITION OF s{s}.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON s{s}.events (happened);
INSERT INTO s{s}.events SELECT g, date '2024-03-01' + g * 100, 'event ' || g || ' seed {seed}' FROM generate_series(1, 9) g;""")
        for t in range(tables_per_schema):
            parent = f"REFERENCES s{s}.t{t - 1} (id)" if t else ""
            parts.append(f"""
CREATE TABLE s{s}.t{t} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, parent_id bigint {parent}, name text NOT NULL DEFAULT 'x',
    status s{s}.status DEFAULT 'new', price s{s}.amount, doc jsonb, updated timestamptz,
    CHECK (length(name) < 200));
CREATE INDEX ON s{s}.t{t} (parent_id);
CREATE INDEX ON s{s}.t{t} (lower(name));
CREATE TRIGGER t{t}_touch BEFORE UPDATE ON s{s}.t{t} FOR EACH ROW EXECUTE FUNCTION s{s}.touch();
INSERT INTO s{s}.t{t} (name, price, doc)
    SELECT 'row ' || g || ' seed {seed}', g * {seed}, jsonb_build_object('g', g) FROM generate_series(1, {rows}) g;""")
        parts.append(f"""
CREATE VIEW s{s}.recent AS SELECT id, name FROM s{s}.t0 WHERE status <> 'closed';
CREATE FUNCTION s{s}.row_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM s{s}.t0';""")
    return "".join(parts)


# An application's schema of 300 tables in 6 schemas (with 1,000+ indexes, 300 triggers, 18 partitions): a
# full replace of it takes about 12,500 locks (tests/test_sync_big.py). Two seeds: two databases that differ.
STATES.update({"big_seed_1": big_schema(seed=1), "big_seed_2": big_schema(seed=2)})
