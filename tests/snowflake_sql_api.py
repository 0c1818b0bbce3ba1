"""A test harness that speaks Snowflake's SQL API v2 over HTTP on 127.0.0.1 and runs the statements
on fakesnow (Snowflake SQL on DuckDB), reading stages from S3 on moto.

sfpipe's Snowflake client and the exact SQL it sends are tested against it. Where fakesnow lacks a
Snowflake feature the product relies on, the harness fills in, and never the product:

- `BEGIN`/`COMMIT`/`ROLLBACK` follow Snowflake's session rules: a failed statement ends the
  request, DDL commits an open transaction, and outside a transaction every statement is atomic on
  its own. A transaction a request leaves open (a statement failed before its COMMIT) is not rolled
  back when the request ends: it stays open, detached, its changes unseen and its tables locked
  until it is aborted (Snowflake aborts a detached transaction after up to 4 hours, or on
  SYSTEM$ABORT_TRANSACTION; here never), so a later write to those tables fails with a lock
  timeout (000625). Only an explicit ROLLBACK releases it at once.
  (fakesnow cannot run a writing DuckDB transaction, so a transaction is a snapshot of the
  schema's tables, put back on rollback.)
- Snowflake Scripting anonymous blocks, `EXECUTE IMMEDIATE $$ [DECLARE ...] BEGIN ... [EXCEPTION
  WHEN OTHER THEN ...] END; $$`, as far as sfpipe uses them: scalar and RESULTSET variables,
  `:name` binds, `x := SQLROWCOUNT` (NULL once a statement other than DML ran after the last DML,
  as under the 2025_01 behaviour bundle), `x := (query)`, `RETURN TABLE(x)`, `ROLLBACK` and
  `RAISE` in the handler. Anything else in a block is refused.
- `VARCHAR(n)` lengths are enforced after each write, with Snowflake's error 100074 ("String ... is
  too long and would be truncated"); DuckDB itself ignores the length. `NUMBER(p,s)` precision is
  enforced by DuckDB's DECIMAL (scale rounds, as in Snowflake).
- `TIMESTAMP_INPUT_FORMAT` and `DATE_INPUT_FORMAT`: set with `ALTER ACCOUNT SET` (every later
  session) or `ALTER SESSION SET` (this request); a cast to a timestamp or a date fails unless
  the session's format is `AUTO`, as Salesforce's ISO values would under any fixed format.
- A multi-statement request without a `warehouse` fails with 000606 ("No active warehouse
  selected"): the harness's user has no default warehouse.
- The request body's `database`, `schema`, `warehouse` and `role` are case-sensitive, as in
  Snowflake: every object here is upper case, so a lower-case name is refused.
- A `slow` fault keeps a request running for N more polls, also after its client stops waiting,
  so a resubmission with the same `requestId` attaches to it. A resubmission whose body is not
  the first one's is answered the same way and listed in `/__harness/log` as
  `changed_resubmissions` (Snowflake documents resubmitting the same request, not another).
- The warehouse's bill: each request that runs statements keeps the warehouse busy from its
  submission until its result is ready; a suspended warehouse resumes for it and bills per
  second, at least `--minimum-seconds` (60) from each resume, until `--auto-suspend` seconds
  (60) after its last statement; `/__harness/log` reports resumes, busy and billed seconds and
  credits at `--credits-per-hour` (X-Small: 1).
- Injected SQL errors carry Snowflake's code, SQL state and HTTP status (422, or 408 for a
  statement timeout).
- Errors are reported as Snowflake reports them: an error raised out of an anonymous block keeps
  its code and state, its message prefixed with "Uncaught exception of type 'STATEMENT_ERROR' on
  line N at position 4 : "; a statement failing inside a multi-statement request fails the
  request with 422, code 100132 and SQL state P0000, the statement's message embedded in a
  JavaScript error and its code lost.
- `COPY INTO t (cols) FROM (SELECT $1, ..., METADATA$FILENAME, METADATA$FILE_ROW_NUMBER FROM
  @stage) FILES = (...)` is run here: every value is read as text (DuckDB would otherwise guess types and turn '001' into 1);
  METADATA$FILENAME is the file's path with the stage location's own path before it.
- Result partitions after the first are sent gzipped (`Content-Encoding: gzip`), whether or not
  the request said it accepts gzip ("Retrieving additional partitions" allows either).

Usage: snowflake_sql_api.py --moto URL --bucket B [--prefix P] --account A --user U
       --public-key PEM_FILE [--oauth-token T] [--partition-rows N]
Prints one JSON line {"port": N} when ready; exits when its standard input closes.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import gzip
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import duckdb
import jwt
import sqlglot
from cryptography.hazmat.primitives import serialization
from fakesnow.instance import FakeSnow
from sqlglot import exp
from snowflake.connector.util_text import split_statements

SET_PARAMETERS = re.compile(r"^\s*ALTER\s+(SESSION|ACCOUNT)\s+SET\s+(.*)$", re.I | re.S)
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|TRUNCATE)\b", re.I)
WRITE = re.compile(r"^\s*(MERGE|INSERT|UPDATE|DELETE)\b", re.I)
BLOCK = re.compile(r"^\s*EXECUTE\s+IMMEDIATE\s+\$\$(.*)\$\$\s*$", re.I | re.S)
BLOCK_PARTS = re.compile(
    r"^\s*(?:DECLARE\b(?P<declare>.*?))?\bBEGIN\b(?!\s+TRANSACTION)(?P<body>.*?)"
    r"(?:\bEXCEPTION\b(?P<handler>.*?))?\bEND\s*;?\s*$",
    re.I | re.S,
)
TRANSACTION = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK)(\s+(TRANSACTION|WORK))?\s*$", re.I)


class SqlError(Exception):
    def __init__(self, code: str, sql_state: str, message: str, http: int = 422):
        super().__init__(message)
        self.code, self.sql_state, self.message, self.http = code, sql_state, message, http
        self.line = 1  # its line in an anonymous block


class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.lock = threading.Lock()
        self.snow = FakeSnow()
        # Input formats the account (or user) sets; each request's session starts with them.
        self.account_formats = {"TIMESTAMP_INPUT_FORMAT": "AUTO", "DATE_INPUT_FORMAT": "AUTO"}
        duck = self.snow.duck_conn
        import duckdb_extension_httpfs

        extension = os.path.join(
            os.path.dirname(duckdb_extension_httpfs.__file__),
            "extensions",
            f"v{duckdb.__version__}",
            "httpfs.duckdb_extension",
        )
        duck.execute(f"LOAD '{extension}'")
        endpoint = urlparse(args.moto).netloc
        duck.execute(
            f"CREATE OR REPLACE SECRET moto (TYPE S3, KEY_ID '{args.s3_key_id}', SECRET '{args.s3_secret}', "
            "REGION 'us-east-1', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
        )
        public = serialization.load_pem_public_key(open(args.public_key, "rb").read())
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = public
        self.fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()
        self.qualified_user = f"{args.account.upper()}.{args.user.upper()}"
        self.results: dict[str, dict] = {}  # statement handle -> response body (status 200 or 422)
        self.status: dict[str, int] = {}
        self.pending: dict[str, int] = {}  # handle -> polls still answered with 202
        self.by_request: dict[str, str] = {}  # requestId -> handle
        self.executions: dict[str, int] = {}  # requestId -> times executed
        self.bodies: dict[str, dict] = {}  # requestId -> the body first submitted
        # Resubmissions whose body differed from the first: Snowflake documents resubmitting
        # "the same request" and not what it does with another one under the same id; this
        # harness answers with the first request's statement, and tests assert there are none.
        self.changed_resubmissions: list[str] = []
        self.log: list[dict] = []
        self.faults: list[dict] = []
        self.locks: dict[str, str] = {}  # table -> the request whose detached transaction holds it
        self.busy: dict[str, list[float]] = {}  # handle -> [submitted, last seen running], wall clock

    # -- authentication -------------------------------------------------------------------------
    def authorized(self, headers) -> bool:
        auth = headers.get("Authorization", "")
        kind = headers.get("X-Snowflake-Authorization-Token-Type", "")
        if not auth.startswith("Bearer "):
            return False
        token = auth[len("Bearer ") :]
        if kind == "OAUTH":
            return bool(self.args.oauth_token) and token == self.args.oauth_token
        if kind != "KEYPAIR_JWT":
            return False
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["RS256"], options={"require": ["exp", "iat"]})
        except jwt.PyJWTError:
            return False
        return claims.get("sub") == self.qualified_user and claims.get("iss") == f"{self.qualified_user}.{self.fingerprint}"

    # -- faults ---------------------------------------------------------------------------------
    def take_fault(self, kind: str, sql: str) -> dict | None:
        for fault in self.faults:
            if fault["kind"] == kind and fault.get("match", "") in sql and fault.get("times", 1) > 0:
                fault["times"] = fault.get("times", 1) - 1
                return fault
        return None

    # -- execution ------------------------------------------------------------------------------
    def submit(self, request_id: str, body: dict) -> tuple[int, dict]:
        sql = body.get("statement", "")
        with self.lock:
            if request_id in self.by_request:
                # Snowflake answers a resubmitted request with its statement, not a new run:
                # still running (202) or its result.
                if body != self.bodies.get(request_id):
                    self.changed_resubmissions.append(request_id)
                handle = self.by_request[request_id]
                if self.pending.get(handle, 0) > 0:
                    return 202, self.running(handle)
                return self.status[handle], self.results[handle]
            fault = self.take_fault("status", sql)
            if fault:
                return fault.get("status", 503), {"message": "injected failure"}
            handle = str(uuid.uuid4())
            self.executions[request_id] = self.executions.get(request_id, 0) + 1
            self.busy[handle] = [time.time(), time.time()]
            status, response = self.execute(handle, request_id, body)
            self.busy[handle][1] = time.time()
            self.by_request[request_id] = handle
            self.bodies[request_id] = body
            self.status[handle], self.results[handle] = status, response
            self.pending[handle] = self.args.pending_polls
            slow = self.take_fault("slow", sql)
            if slow:
                # A long statement: it keeps running after the client stops waiting for it.
                self.pending[handle] = slow.get("polls", 100)
                return 202, self.running(handle)
            if self.take_fault("lose_response", sql):
                return 503, {"message": "injected: the response was lost after the statement ran"}
            return status, response

    def execute(self, handle: str, request_id: str, body: dict) -> tuple[int, dict]:
        sql = body["statement"]
        statements = [s for s, _ in split_statements(io.StringIO(sql), remove_comments=True) if s.strip()]
        wanted = int((body.get("parameters") or {}).get("MULTI_STATEMENT_COUNT", "1"))
        if wanted != 0 and wanted != len(statements):
            return 422, self.error(
                handle,
                SqlError(
                    "000008",
                    "0A000",
                    f"Actual statement count {len(statements)} did not match the desired statement count {wanted}.",
                ),
            )
        # A multi-statement request runs only on a warehouse (the harness's user has no default
        # one): Snowflake's "No active warehouse selected" (000606, 57P03).
        if len(statements) > 1 and not body.get("warehouse"):
            return 422, self.error(
                handle,
                SqlError(
                    "000606",
                    "57P03",
                    "No active warehouse selected in the current session.  Select an active warehouse with the 'use warehouse' command.",
                ),
            )
        # The body's names are taken as written, like quoted identifiers: every object here is
        # created unquoted (upper case), so a lower-case `database` names nothing, as in Snowflake.
        for field, kind in (("database", "Database"), ("schema", "Schema"), ("warehouse", "Warehouse"), ("role", "Role")):
            value = body.get(field)
            if value and value != value.upper():
                return 422, self.error(
                    handle,
                    SqlError("002043", "02000", f"{kind} '{value}' does not exist or not authorized."),
                )
        conn = self.snow.connect(database=body.get("database"), schema=body.get("schema"))
        session = {"snapshot": None, "formats": dict(self.account_formats), "written": set(), "id": request_id}
        try:
            handles = []
            for number, statement in enumerate(statements):
                child = str(uuid.uuid4()) if len(statements) > 1 else handle
                try:
                    columns, rows = self.run_logged(conn, session, statement)
                except SqlError as e:
                    if len(statements) > 1:
                        e = self.wrapped(statements, number, e)
                    return e.http, self.error(handle, e)
                self.results[child] = self.result(child, columns, rows)
                self.status[child] = 200
                self.pending[child] = 0
                handles.append(child)
            if len(statements) == 1:
                return 200, self.results[handle]
            return 200, {
                **self.result(handle, ["multiple statement execution"], [["Multiple statements executed successfully."]]),
                "statementHandles": handles,
            }
        finally:
            if session["snapshot"] is not None:
                # The request ends with its transaction open: it stays open, detached. Its changes
                # are not seen, and the tables it wrote stay locked until it is aborted.
                self.restore(conn, session["snapshot"])
                for table in session["written"]:
                    self.locks[table] = request_id
                self.log.append(
                    {
                        "request_id": request_id,
                        "sql": "-- request ended with its transaction open: detached, holding locks on "
                        + ", ".join(sorted(session["written"])),
                    }
                )
            conn.close()

    @staticmethod
    def wrapped(statements: list[str], number: int, error: SqlError) -> SqlError:
        """A statement failing inside a multi-statement request: Snowflake answers 422 with its own
        code 100132 and SQL state P0000, the failing statement's message embedded in a JavaScript
        error, and not its code ("Submitting multiple statements in a single request")."""
        line = 1 + sum(s.count("\n") + 1 for s in statements[:number])
        text = statements[number].strip()
        shown = text if len(text) <= 30 else text[:30] + "..."
        return SqlError(
            "100132",
            "P0000",
            f'JavaScript execution error: Uncaught Execution of multiple statements failed on statement "{shown}" '
            f"(at line {line}, position 0).\n{error.message} in SYSTEM$MULTISTMT at '    throw `Execution of "
            "multiple statements failed on statement {0} (at line {1}, position {2}).`.replace('{1}', LINES[i])' "
            "position 4\nstackstrace: \nSYSTEM$MULTISTMT line: 10",
            422,
        )

    def run_logged(self, conn, session: dict, statement: str):
        """Runs one statement of a request or a block, logged, with the faults injected for it."""
        statement = statement.rstrip(";").strip()
        entry = {"request_id": session["id"], "sql": statement}
        self.log.append(entry)
        try:
            block = BLOCK.match(statement)
            if block:
                # Faults match the block's own statements, not the block.
                return self.run_block(conn, session, block.group(1))
            fault = self.take_fault("sql_error", statement)
            if fault:
                raise SqlError(
                    fault.get("code", "100000"),
                    fault.get("sql_state", "22000"),
                    fault.get("message", "injected SQL error"),
                    fault.get("http", 422),
                )
            return self.run_one(conn, session, statement)
        except SqlError as e:
            entry.setdefault("error", e.message)
            raise
        except Exception as e:  # fakesnow and DuckDB errors
            code = getattr(e, "errno", None) or 100000
            state = getattr(e, "sqlstate", None) or "22000"
            entry["error"] = str(e)
            raise SqlError(str(code).zfill(6), state, str(e)) from e

    # -- Snowflake Scripting ---------------------------------------------------------------------
    def run_block(self, conn, session: dict, text: str):
        parts = BLOCK_PARTS.match(text)
        if not parts:
            raise SqlError("001003", "42000", "SQL compilation error: the harness reads no such block")
        variables: dict[str, object] = {}
        for declaration in self.split(parts.group("declare") or ""):
            name, _, rest = declaration.partition(" ")
            default = re.search(r"\bDEFAULT\s+(.+)$", rest, re.I | re.S)
            variables[name.upper()] = self.constant(default.group(1)) if default else None
        state = {"rowcount": None}
        try:
            return self.run_block_body(conn, session, variables, state, parts.group("body"))
        except SqlError as error:
            handler = parts.group("handler")
            if handler is None:
                raise
            when = re.match(r"^\s*WHEN\s+OTHER\s+THEN\b(.*)$", handler, re.I | re.S)
            if not when:
                raise SqlError("001003", "42000", "SQL compilation error: the harness reads WHEN OTHER only")
            for statement in self.split(when.group(1)):
                if statement.upper() == "RAISE":
                    # Re-raised out of the block, the error keeps its code and state; its message
                    # names the exception's type and place, as Snowflake's does.
                    raise SqlError(
                        error.code,
                        error.sql_state,
                        f"Uncaught exception of type 'STATEMENT_ERROR' on line {error.line} at position 4 : {error.message}",
                        error.http,
                    )
                self.run_logged(conn, session, statement)
            return ["anonymous block"], [[None]]

    def run_block_body(self, conn, session, variables, state, body: str):
        for number, statement in enumerate(self.split(body)):
            try:
                returned = self.run_block_statement(conn, session, variables, state, statement)
            except SqlError as error:
                error.line = number + 1
                raise
            if returned is not None:
                return returned
        return ["anonymous block"], [[None]]

    def run_block_statement(self, conn, session, variables, state, statement: str):
        """One statement of a block; a `RETURN TABLE` answers its table, anything else None."""
        returned = re.match(r"^RETURN\s+TABLE\s*\(\s*(\w+)\s*\)$", statement, re.I)
        if returned:
            columns, rows = variables[returned.group(1).upper()]
            return columns, rows
        assigned = re.match(r"^(?:LET\s+)?(\w+)(?:\s+\w+)?\s*:=\s*(.+)$", statement, re.I | re.S)
        if assigned:
            name, value = assigned.group(1).upper(), assigned.group(2).strip()
            if name not in variables and not statement.upper().startswith("LET"):
                raise SqlError("000904", "42000", f"SQL compilation error: invalid identifier '{name}'")
            if value.upper() == "SQLROWCOUNT":
                variables[name] = state["rowcount"]
            elif value.startswith("(") and value.endswith(")"):
                variables[name] = self.run_logged(conn, session, self.bind(value[1:-1], variables))
                state["rowcount"] = None
            else:
                variables[name] = self.constant(value)
            return None
        if re.match(r"^(RETURN|RAISE|IF|FOR|WHILE|LOOP|CASE|DECLARE|LET)\b", statement, re.I):
            raise SqlError("001003", "42000", f"SQL compilation error: the harness does not run {statement[:40]!r} in a block")
        columns, rows = self.run_logged(conn, session, self.bind(statement, variables))
        # Snowflake sets SQLROWCOUNT after DML; any other statement makes it NULL (2025_01).
        if WRITE.match(statement):
            counts = [i for i, c in enumerate(columns) if str(c).lower().startswith("number of rows")]
            state["rowcount"] = sum(int(rows[0][i] or 0) for i in counts) if rows else 0
        else:
            state["rowcount"] = None
        return None

    @staticmethod
    def split(text: str) -> list[str]:
        return [s.rstrip(";").strip() for s, _ in split_statements(io.StringIO(text), remove_comments=True) if s.strip().rstrip(";").strip()]

    @staticmethod
    def constant(text: str):
        text = text.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if text.upper() == "NULL":
            return None
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("''", "'")
        raise SqlError("001003", "42000", f"SQL compilation error: the harness reads no such value {text!r}")

    @staticmethod
    def bind(statement: str, variables: dict) -> str:
        def value(match):
            name = match.group(1).upper()
            if name not in variables:
                return match.group(0)
            v = variables[name]
            if v is None:
                return "NULL"
            if isinstance(v, int):
                return str(v)
            if isinstance(v, str):
                return "'" + v.replace("'", "''") + "'"
            raise SqlError("002016", "22000", f"SQL compilation error: {name} is a RESULTSET, not a value")

        return re.sub(r"(?<![:\w]):(\w+)", value, statement)

    def run_one(self, conn, session: dict, statement: str):
        parameters = SET_PARAMETERS.match(statement)
        if parameters:
            # Input formats are modelled: set for the account (every later session) or a session.
            target = self.account_formats if parameters.group(1).upper() == "ACCOUNT" else session["formats"]
            for name, value in re.findall(r"(\w+)\s*=\s*'([^']*)'", parameters.group(2)):
                if name.upper() in target:
                    target[name.upper()] = value
            return ["status"], [["Statement executed successfully."]]
        for name, cast in (("TIMESTAMP_INPUT_FORMAT", r"\bAS\s+TIMESTAMP"), ("DATE_INPUT_FORMAT", r"\bAS\s+DATE\b")):
            format = session["formats"][name]
            if format.upper() != "AUTO" and re.search(cast, statement, re.I):
                # Salesforce writes 2026-01-01T00:00:00.000Z and 2026-01-01: only AUTO reads both.
                raise SqlError("100035", "22007", f"Timestamp '2026-01-01T00:00:00.000Z' is not recognized ({name} is '{format}')")
        keyword = TRANSACTION.match(statement)
        if keyword:
            word = keyword.group(1).upper()
            if word in ("BEGIN", "START") and session["snapshot"] is None:
                session["snapshot"] = self.snapshot(conn, self.user_tables(conn))
            elif word == "COMMIT":
                self.drop(conn, session.pop("snapshot", None) or {})
                session["snapshot"] = None
            elif word == "ROLLBACK" and session["snapshot"] is not None:
                self.restore(conn, session["snapshot"])
                session["snapshot"] = None
            if word in ("COMMIT", "ROLLBACK"):
                session["written"] = set()
            return ["status"], [["Statement executed successfully."]]
        if DDL.match(statement) and session["snapshot"] is not None:
            # DDL commits the open transaction first, in Snowflake.
            self.drop(conn, session["snapshot"])
            session["snapshot"] = None
        own = None
        if WRITE.match(statement):
            target = self.target_table(statement)
            holder = self.locks.get(target) if target else None
            if holder is not None and holder != session["id"]:
                raise SqlError(
                    "000625",
                    "57014",
                    f"Statement '{uuid.uuid4()}' has locked table {target} in transaction of request "
                    f"{holder} and this lock has not yet been released. Your statement was aborted "
                    "because the lock wait timed out.",
                )
            if session["snapshot"] is not None and target:
                session["written"].add(target)
            elif session["snapshot"] is None:
                # Outside a transaction, a statement is atomic on its own (autocommit).
                own = self.snapshot(conn, [target] if target else [])
        try:
            if re.match(r"^\s*COPY\s+INTO\b", statement, re.I) and "METADATA$FILENAME" in statement.upper():
                result = self.copy_with_filenames(conn, statement)
            else:
                cur = conn.cursor()
                cur.execute(statement)
                columns = [d[0] for d in cur.description] if cur.description else ["status"]
                rows = cur.fetchall() if cur.description else [["Statement executed successfully."]]
                result = columns, rows
            self.check_lengths(conn, statement)
        except BaseException:
            if own is not None:
                self.restore(conn, own)
            raise
        if own is not None:
            self.drop(conn, own)
        return result

    # fakesnow cannot run a DuckDB transaction that writes (its MERGE also writes its own
    # bookkeeping database), so a transaction is a snapshot of the tables it may change, put back
    # on ROLLBACK or when the session ends with the transaction open.
    def user_tables(self, conn) -> list[str]:
        rows = conn._duck_conn.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables() "
            "WHERE NOT temporary AND schema_name <> '_fs_information_schema' AND database_name = current_database() "
            "AND schema_name = current_schema()"
        ).fetchall()
        return [f'"{d}"."{s}"."{t}"' for d, s, t in rows]

    def target_table(self, statement: str) -> str | None:
        try:
            parsed = sqlglot.parse_one(statement, read="snowflake")
        except sqlglot.errors.ParseError:
            return None
        target = parsed.this
        if isinstance(target, exp.Schema):
            target = target.this
        if not isinstance(target, exp.Table) or target.name.upper().startswith("_SFPIPE_LOAD"):
            return None
        return '"' + target.name.replace('"', '""') + '"'

    def snapshot(self, conn, tables: list[str]) -> dict:
        duck = conn._duck_conn
        saved = {}
        for table in tables:
            copy = f"__harness_snapshot_{uuid.uuid4().hex}"
            try:
                duck.execute(f"CREATE TEMP TABLE {copy} AS SELECT * FROM {table}")
            except duckdb.Error:
                continue  # not created yet: nothing to put back
            saved[table] = copy
        return saved

    def restore(self, conn, saved: dict):
        duck = conn._duck_conn
        for table, copy in saved.items():
            duck.execute(f"DELETE FROM {table}")
            duck.execute(f"INSERT INTO {table} SELECT * FROM {copy}")
        self.drop(conn, saved)

    def drop(self, conn, saved: dict):
        for copy in saved.values():
            conn._duck_conn.execute(f"DROP TABLE IF EXISTS {copy}")

    def check_lengths(self, conn, statement: str):
        """Snowflake refuses a value longer than its column's VARCHAR(n); DuckDB stores it."""
        if not WRITE.match(statement):
            return
        target = self.target_table(statement)
        if target is None:
            return
        table = target.strip('"')
        duck = conn._duck_conn
        limits = duck.execute(
            "SELECT ext_column_name, ext_character_maximum_length FROM _fs_global._fs_information_schema._fs_columns_ext "
            "WHERE ext_table_name = ? AND ext_character_maximum_length < 16777216",
            [table],
        ).fetchall()
        for column, limit in limits:
            quoted = '"' + column.replace('"', '""') + '"'
            table_quoted = '"' + table.replace('"', '""') + '"'
            try:
                long = duck.execute(
                    f"SELECT {quoted} FROM {table_quoted} WHERE length({quoted}) > ? LIMIT 1", [limit]
                ).fetchone()
            except duckdb.Error:
                continue
            if long:
                raise SqlError(
                    "100074",
                    "22000",
                    f"String '{long[0][:60]}' is too long and would be truncated",
                )

    def copy_with_filenames(self, conn, statement: str):
        copy = sqlglot.parse_one(statement, read="snowflake")
        target = copy.this
        table = target.this.name if isinstance(target, exp.Schema) else target.name
        columns = [c.name for c in target.expressions]
        select = copy.args["files"][0].this
        stage = select.args["from_"].this.this.this.lstrip("@")
        files, skip = [], 0
        for param in copy.args.get("params", []):
            name = param.this.name.upper()
            if name == "FILES":
                files = [lit.name for lit in param.find_all(exp.Literal)]
            elif name == "FILE_FORMAT":
                for option in param.expressions:
                    if option.name.upper() == "SKIP_HEADER":
                        skip = int(option.args["value"].name)
        location = self.stage_location(stage)
        # s3://bucket/path/ -> path/: what precedes a file's name in METADATA$FILENAME.
        stage_path = location.split("://", 1)[-1].partition("/")[2]
        results = []
        duck = conn._duck_conn
        positions = [int(e.name) for e in select.expressions if isinstance(e, exp.Parameter)]
        width = max(positions, default=0)
        # Every field as text. A COPY with a transformation ignores ERROR_ON_COLUMN_COUNT_MISMATCH,
        # as Snowflake documents: positions past a record's end are NULL, fields past the last
        # position selected are dropped.
        types = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(1, width + 1)) + "}"
        for file in files:
            picks = []
            for expression in select.expressions:
                if isinstance(expression, exp.Parameter):
                    picks.append(f"c{int(expression.name)}")
                elif expression.sql().upper() == "METADATA$FILENAME":
                    # The file's full path in the stage's location, the location's own path
                    # included ("Querying metadata for staged files"), not the FILES entry.
                    path = stage_path + file
                    picks.append("'" + path.replace("'", "''") + "'")
                elif expression.sql().upper() == "METADATA$FILE_ROW_NUMBER":
                    picks.append("row_number() OVER ()")
                else:
                    raise SqlError("002000", "0A000", f"harness: unsupported COPY column {expression.sql()}")
            url = location + file
            quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
            try:
                count = duck.execute(
                    f'INSERT INTO "{table}" ({quoted}) SELECT {", ".join(picks)} FROM read_csv(?, header = false, '
                    f"skip = {skip}, delim = ',', quote = '\"', escape = '\"', columns = {types}, auto_detect = false, "
                    "null_padding = true, strict_mode = false, parallel = false)",
                    [url],
                ).fetchall()[0][0]
            except duckdb.Error as e:
                raise SqlError("100016", "22000", f"File '{file}': {e}") from None
            results.append([file, "LOADED", count, count, 1, 0, None, None, None, None])
        names = ["file", "status", "rows_parsed", "rows_loaded", "error_limit", "errors_seen", "first_error",
                 "first_error_line", "first_error_character", "first_error_column_name"]
        return names, results

    def stage_location(self, stage: str) -> str:
        name = stage.split(".")[-1].strip('"').upper()
        row = self.snow.duck_conn.execute(
            "SELECT url FROM _fs_global._fs_information_schema._fs_stages WHERE upper(name) = ?", [name]
        ).fetchone()
        if not row or not row[0]:
            raise SqlError("002003", "02000", f"Stage '{stage}' does not exist or not authorized.")
        return row[0] if row[0].endswith("/") else row[0] + "/"

    # -- responses ------------------------------------------------------------------------------
    @staticmethod
    def text(value):
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.timezone.utc)
            offset = int(value.utcoffset().total_seconds() // 60)
            return f"{value.timestamp():.9f} {1440 + offset}"
        if isinstance(value, datetime.date):
            return str((value - datetime.date(1970, 1, 1)).days)
        if isinstance(value, decimal.Decimal | float | int):
            return str(value)
        return str(value)

    def result(self, handle: str, columns, rows) -> dict:
        data = [[self.text(v) for v in row] for row in rows]
        size = max(1, self.args.partition_rows)
        partitions = [data[i : i + size] for i in range(0, len(data), size)] or [[]]
        return {
            "resultSetMetaData": {
                "numRows": len(data),
                "format": "jsonv2",
                "rowType": [{"name": c, "type": "text", "nullable": True} for c in columns],
                "partitionInfo": [{"rowCount": len(p)} for p in partitions],
            },
            "data": partitions[0],
            "partitions": partitions,
            "code": "090001",
            "sqlState": "00000",
            "message": "Statement executed successfully.",
            "statementHandle": handle,
            "statementStatusUrl": f"/api/v2/statements/{handle}",
            "createdOn": int(time.time() * 1000),
        }

    def error(self, handle: str, error: SqlError) -> dict:
        return {
            "code": error.code,
            "sqlState": error.sql_state,
            "message": error.message,
            "statementHandle": handle,
            "statementStatusUrl": f"/api/v2/statements/{handle}",
        }

    def poll(self, handle: str, partition: int) -> tuple[int, dict]:
        with self.lock:
            if handle not in self.results:
                return 404, {"message": f"statement {handle} not found"}
            if self.pending.get(handle, 0) > 0:
                self.pending[handle] -= 1
                if handle in self.busy:
                    self.busy[handle][1] = time.time()
                return 202, self.running(handle)
            body = self.results[handle]
            if self.status[handle] != 200 or "partitions" not in body:
                return self.status[handle], body
            if partition > 0:
                return 200, {"data": body["partitions"][partition]}
            return 200, body

    def warehouse_bill(self) -> dict:
        """What the warehouse would bill for the requests so far: sessions from a resume to
        auto-suspend after the last busy moment, each at least the minimum."""
        suspend, minimum = self.args.auto_suspend, self.args.minimum_seconds
        spans = sorted(tuple(span) for span in self.busy.values())
        resumes, billed, busy, busy_until = 0, 0.0, 0.0, None
        session = None
        for start, end in spans:
            busy += max(0.0, end - max(start, busy_until if busy_until is not None else start))
            busy_until = end if busy_until is None else max(busy_until, end)
            if session and start <= session[1] + suspend:
                session[1] = max(session[1], end)
                continue
            if session:
                resumes += 1
                billed += max(minimum, session[1] + suspend - session[0])
            session = [start, end]
        if session:
            resumes += 1
            billed += max(minimum, session[1] + suspend - session[0])
        return {
            "resumes": resumes,
            "busy_seconds": busy,
            "billed_seconds": billed,
            "credits": billed / 3600 * self.args.credits_per_hour,
        }

    @staticmethod
    def running(handle: str) -> dict:
        return {
            "code": "333334",
            "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.",
            "statementHandle": handle,
            "statementStatusUrl": f"/api/v2/statements/{handle}",
        }


def serve(harness: Harness) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def reply(self, status: int, body: dict, gzipped: bool = False):
            body = {k: v for k, v in body.items() if k != "partitions"}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if gzipped:
                raw = gzip.compress(raw)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/__harness/log":
                with harness.lock:
                    return self.reply(
                        200,
                        {
                            "statements": harness.log,
                            "executions": harness.executions,
                            "changed_resubmissions": harness.changed_resubmissions,
                            "warehouse": harness.warehouse_bill(),
                        },
                    )
            if not harness.authorized(self.headers):
                return self.reply(401, {"code": "390144", "message": "JWT token is invalid."})
            match = re.fullmatch(r"/api/v2/statements/([0-9a-f-]+)", url.path)
            if not match:
                return self.reply(404, {"message": "not found"})
            partition = int(parse_qs(url.query).get("partition", ["0"])[0])
            status, body = harness.poll(match.group(1), partition)
            # Partitions after the first come gzipped, whatever the request accepts.
            self.reply(status, body, gzipped=status == 200 and partition > 0)

        def do_POST(self):
            url = urlparse(self.path)
            if url.path == "/__harness/faults":
                with harness.lock:
                    harness.faults.extend(self.body().get("faults", []))
                return self.reply(200, {"ok": True})
            if url.path != "/api/v2/statements":
                return self.reply(404, {"message": "not found"})
            if not harness.authorized(self.headers):
                return self.reply(401, {"code": "390144", "message": "JWT token is invalid."})
            query = parse_qs(url.query)
            request_id = query.get("requestId", [str(uuid.uuid4())])[0]
            status, body = harness.submit(request_id, self.body())
            if status in (200, 422) and query.get("async", ["false"])[0] == "true":
                handle = body["statementHandle"]
                with harness.lock:
                    if harness.pending.get(handle, 0) > 0:
                        harness.pending[handle] -= 1
                        return self.reply(202, harness.running(handle))
            self.reply(status, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moto", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--account", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--oauth-token", default="")
    parser.add_argument("--partition-rows", type=int, default=1000)
    parser.add_argument("--pending-polls", type=int, default=1)
    parser.add_argument("--auto-suspend", type=float, default=60.0)
    parser.add_argument("--minimum-seconds", type=float, default=60.0)
    parser.add_argument("--credits-per-hour", type=float, default=1.0)
    # The stage's credentials (Snowflake's storage integration role); moto's defaults otherwise.
    parser.add_argument("--s3-key-id", default="testing")
    parser.add_argument("--s3-secret", default="testing")
    args = parser.parse_args()
    harness = Harness(args)
    server = serve(harness)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    # Stop with the test that started us, however it ends.
    for _ in sys.stdin:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
