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
    conn.close()
    return result


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
