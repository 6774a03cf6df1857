"""The restore script on its way to psql, as pure logic: where each archive entry begins (so that a psql
error's line names the object), and the closing COMMIT held back until the verification passed."""

from __future__ import annotations

import pytest

from devops.sync.processes import PipelineError
from devops.sync.restore import restore_list
from devops.sync.script import TAIL, Script, in_batches, psql_error, without_final_commit

SCRIPT = (b"--\n-- PostgreSQL database dump\n--\nBEGIN;\n\n"
          b"--\n-- Name: users; Type: TABLE; Schema: public; Owner: -\n--\n\n"
          b"CREATE TABLE public.users (\n    id integer NOT NULL\n);\n\n"
          b"--\n-- Name: big_orders; Type: VIEW; Schema: app; Owner: -\n--\n\n"
          b"CREATE VIEW app.big_orders AS\n SELECT 1;\n\n"
          b"--\n-- Name: EXTENSION pgcrypto; Type: COMMENT; Schema: -; Owner: \n--\n\n"
          b"COMMENT ON EXTENSION pgcrypto IS 'x';\n\n"
          b"COMMIT;\n\n--\n-- PostgreSQL database dump complete\n--\n\n")


def lines_of(text: bytes, needle: bytes) -> int:
    return text[:text.index(needle)].count(b"\n") + 1


@pytest.mark.parametrize("size", [len(SCRIPT), 7, 1])
def test_each_entry_starts_where_its_header_is_whatever_the_chunks(size):
    script = Script()
    for start in range(0, len(SCRIPT), size):
        script.feed(SCRIPT[start:start + size])
    assert script.lines == SCRIPT.count(b"\n")
    users = lines_of(SCRIPT, b"-- Name: users")
    view = lines_of(SCRIPT, b"-- Name: big_orders")
    assert [(line, what) for line, what, _ in script.entries] == [
        (users, "TABLE public.users"), (view, "VIEW app.big_orders"),
        (lines_of(SCRIPT, b"-- Name: EXTENSION"), "COMMENT EXTENSION pgcrypto")]
    if size == len(SCRIPT):
        assert script.entries[1][2] == "CREATE VIEW app.big_orders AS"
    # A psql error on the view's statement names the view; one before any entry names nothing.
    assert script.entry_at(lines_of(SCRIPT, b" SELECT 1"))[0] == "VIEW app.big_orders"
    assert script.entry_at(users + 5)[0] == "TABLE public.users"
    assert script.entry_at(1) is None


def test_the_final_commit_is_withheld_and_everything_before_it_passed_on():
    body = b"BEGIN;\n" + b"INSERT INTO t VALUES (1);\n" * (3 * TAIL // 26) + b"COMMIT;\n\n--\n-- done\n--\n"
    out = b"".join(without_final_commit(iter([body[i:i + 1000] for i in range(0, len(body), 1000)])))
    assert out == body[:body.rindex(b"COMMIT;")] and not out.rstrip().endswith(b"COMMIT;")


def test_a_script_without_its_commit_commits_nothing():
    with pytest.raises(PipelineError, match="did not end with its COMMIT: nothing was committed"):
        list(without_final_commit(iter([b"BEGIN;\nCREATE TABLE t ();\n"])))


def test_psqls_first_error_keeps_the_servers_detail_and_hint():
    stderr = ("psql:<stdin>:12: ERROR:  out of shared memory\n"
              "HINT:  You might need to increase max_locks_per_transaction.\n"
              "psql:<stdin>:13: ERROR:  current transaction is aborted\n")
    assert psql_error(stderr) == (12, "out of shared memory (HINT: You might need to increase "
                                      "max_locks_per_transaction.)")
    detail = "psql:<stdin>:40: ERROR:  cannot drop table t\nDETAIL:  view v depends on table t\n"
    assert psql_error(detail) == (40, "cannot drop table t (DETAIL: view v depends on table t)")
    assert psql_error("psql:<stdin>:3: ERROR:  must be owner of schema theirs\n") == (
        3, "must be owner of schema theirs")
    assert psql_error("could not connect to server\n") is None


def test_the_error_is_masked():
    found = psql_error("psql:<stdin>:7: ERROR:  bad\nDETAIL:  postgresql://app:s3cret@db.example/app\n")
    assert found and "s3cret" not in found[1]


BATCHED = (b"SET statement_timeout = 0;\n\n"
           b"--\n-- Name: items; Type: TABLE; Schema: public; Owner: -\n--\n\n"
           b"CREATE TABLE public.items (\n    id integer\n);\n\n\n"
           b"--\n-- Name: f; Type: FUNCTION; Schema: public; Owner: -\n--\n\n"
           b"CREATE FUNCTION public.f() RETURNS integer AS $$ SELECT 1; $$ LANGUAGE sql;\n\n\n"
           b"--\n-- Data for Name: items; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
           b"COPY public.items (id) FROM stdin;\n1;\n2;\n\\.\n\n\n"
           b"--\n-- Name: items_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n"
           b"ALTER TABLE ONLY public.items ADD CONSTRAINT items_pkey PRIMARY KEY (id);\n\n")


@pytest.mark.parametrize("size", [len(BATCHED), 13, 1])
def test_entries_go_in_batches_with_markers_and_a_copys_rows_pass_untouched(size):
    out = b"".join(in_batches(iter([BATCHED[i:i + size] for i in range(0, len(BATCHED), size)])))
    # The statement that ends an entry is joined to the next entry's marker (\;), so one query carries both.
    assert b"SET statement_timeout = 0\\; SELECT 'devops-entry 0'\\;\n" in out
    assert b"\n)\\; SELECT 'devops-entry 1'\\;\n" in out
    # Before a table's data the batch ends with a plain ';' (COPY goes alone), and its rows, ';' in them
    # included, pass as they are; after them a new batch starts with the next entry's marker.
    assert b"LANGUAGE sql;\n" in out and b"COPY public.items (id) FROM stdin;\n1;\n2;\n\\.\n" in out
    assert b"\\.\n\n\n--\nSELECT 'devops-entry 3'\\;\n-- Name: items_pkey" in out
    assert out.replace(b"\\;", b";").count(b"devops-entry") == 3
    assert out.endswith(b"PRIMARY KEY (id);\n\n")


def test_the_table_of_contents_leaves_out_what_a_managed_service_refuses_and_the_schemas_the_target_keeps():
    listing = ("; Archive created at 2026-12-07\n"
               "5; 2615 2200 SCHEMA - public pg_database_owner\n"
               "6; 2615 16390 SCHEMA - app owner\n"
               "3383; 0 0 COMMENT - EXTENSION pgcrypto \n"
               "220; 1259 16400 TABLE app items owner\n"
               "3390; 6104 16500 PUBLICATION - pub owner\n")
    lines, left_out = restore_list(listing, {"public"})
    assert lines == ["; Archive created at 2026-12-07", ";5; 2615 2200 SCHEMA - public pg_database_owner",
                     "6; 2615 16390 SCHEMA - app owner", ";3383; 0 0 COMMENT - EXTENSION pgcrypto ",
                     "220; 1259 16400 TABLE app items owner", ";3390; 6104 16500 PUBLICATION - pub owner"]
    assert left_out[0] == "COMMENT ON EXTENSION pgcrypto" and left_out[1].startswith("PUBLICATION pub")
