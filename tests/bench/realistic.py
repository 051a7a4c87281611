"""The realistic data set of issue 17: by default 10,000,000 jobs over 10,000 accounts, loaded once
per database (PostgreSQL) and reused by `bench dataset`, `bench scale` and `bench prune`.

The tidy data set (tests.bench.dataset) flatters every page: rows written account by account,
empty payloads and labels, no attempt, no audit row, no dead tuple, one error detail per code.
This one looks like months of traffic instead, under accounts of its own (REAL_PREFIX):
- accounts of skewed sizes (a Pareto draw: a few hold hundreds of thousands of jobs, most a few
  hundred), their jobs interleaved in time as real traffic is: the rows are written in creation
  order across all accounts, so one account's jobs are spread over the whole table;
- four in five jobs belong to a task (a mailbox sync of the account's 5-minute window, with its
  counters and derived status as the workers keep them), the rest are taskless, as a provider
  event's jobs are;
- payloads of 0.1 to 4 KB (log-uniform: most small), labels on a fifth of the jobs;
- an attempt for each run of each job that ran, an audit event for each transition (create,
  claim, succeed / fail / stall, dispatch of a retry, resolve);
- error details drawn from a vocabulary of templates with variable parts, weighted as real
  failures are (a few templates most of the time), with a common term and a rare one (RARE_TERM,
  in about one job in 130,000: a search for it matches < 0.01%);
- dead tuples: UPDATE_SHARE of the jobs updated once more after the load and not vacuumed.

It is generated inside PostgreSQL, in set-based statements (INSERT ... SELECT over
generate_series), with the four tables' secondary indexes and foreign keys dropped and built
again after: row-by-row generation in Python managed 2,000 to 5,000 jobs a second. Random
choices come from `setseed(REAL_SEED)` and hashes of the job id, so every load of one size is
the same data (the times are relative to the load).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.management import call_command
from django.db import connection

from accounts.models import Account
from core.ids import _encode
from jobs import sql as jobs_sql
from jobs.states import JobStatus

REAL_PREFIX = "real-"
REAL_SEED = 0.17
UPDATE_SHARE = 0.05
TASK_SHARE = 0.8
TASK_WINDOW_MS = 300_000  # a mailbox sync every 5 minutes: one task per account and window
RARE_TERM = "quarantined by gateway zephyr"
RARE_SHARE = 1 / 20_000  # of the jobs with an error detail (about 15% of all)
COMMON_TERM = "timed out"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32, as core.ids
TABLES = ("jobs_job", "jobs_jobattempt", "jobs_auditevent", "jobs_task")

FOLDERS = [("INBOX", 60), ("Sent", 10), ("Archive", 10), ("Drafts", 3), ("Spam", 5)]
TEAMS = ["mail", "growth", "billing", "ops", "support"]
HOSTS = [f"imap{i}.mail-{c}.example" for i in range(1, 6) for c in "abcdefgh"]
# (code, detail template, weight); {host}, {n}, {folder}, {uid} are filled per job.
VOCABULARY = [
    ("provider_timeout", "IMAP connection to {host} timed out after {n} s", 400),
    ("provider_timeout", "read timed out waiting for FETCH response from {host}", 150),
    ("provider_timeout", "IDLE keepalive to {host} timed out", 40),
    ("provider_unavailable", "connection refused by {host}:993", 120),
    ("provider_unavailable", "[UNAVAILABLE] Server busy, try again in {n} seconds", 90),
    ("provider_unavailable", "name or service not known: {host}", 30),
    ("provider_unavailable", "connection reset by peer during SELECT {folder}", 25),
    ("provider_auth_failed", "LOGIN failed: [AUTHENTICATIONFAILED] Invalid credentials", 100),
    ("provider_auth_failed", "[AUTHORIZATIONFAILED] application-specific password required", 20),
    ("provider_auth_failed", "OAuth token expired for mailbox on {host}", 15),
    ("provider_tls_error", "certificate verify failed: hostname mismatch for {host}", 10),
    ("provider_tls_error", "STARTTLS not offered by {host}", 4),
    ("provider_protocol_error", "unexpected response to UID FETCH {uid}: BAD parse error", 8),
    ("provider_protocol_error", "malformed BODYSTRUCTURE for UID {uid} in {folder}", 5),
    ("provider_folder_not_found", "[NONEXISTENT] Unknown mailbox {folder}/Projects-{n}", 12),
    ("provider_not_configured", "no IMAP password stored for this account", 6),
    ("internal_error", "KeyError: 'uidvalidity' in mailsync.storage at UID {uid}", 7),
    ("internal_error", "IntegrityError: duplicate key value violates unique constraint", 3),
    ("internal_error", "UnicodeDecodeError: 'utf-8' codec can't decode byte 0x{n} in header", 2),
]
STATUS_MIX = [
    ("succeeded", 78),
    ("failed", 6),
    ("stalled", 1),
    ("resolved", 3),
    ("queued", 4),
    ("scheduled", 6),
    ("running", 2),
]
RAN = ("succeeded", "failed", "stalled", "resolved", "running")


@dataclass(frozen=True)
class RealisticDataset:
    account_ids: list[str]  # largest first
    jobs: int
    tasks: int
    attempts: int
    audit_events: int
    rare_term: str
    common_term: str
    load_seconds: float  # 0.0 when it was already there
    steps: list[tuple[str, float]]  # each step of the load and its seconds
    bytes: int  # the four tables with their indexes and TOAST


def _ulid(epoch_ms: int, rng: random.Random) -> str:
    return _encode((epoch_ms << 80) | rng.getrandbits(80))


# --- SQL pieces ----------------------------------------------------------------------------------


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(_literal(v) for v in values) + "]"


def _pick(draw: str, choices: list[tuple], value=lambda c: _literal(c[0])) -> str:
    """A CASE choosing among weighted `choices` by `draw`, a uniform number in [0, 1)."""
    total = sum(c[-1] for c in choices)
    arms, bound = [], 0.0
    for choice in choices[:-1]:
        bound += choice[-1] / total
        arms.append(f"WHEN {draw} < {bound!r} THEN {value(choice)}")
    return f"CASE {' '.join(arms)} ELSE {value(choices[-1])} END"


def _ulid_time(ms: str) -> str:
    """The first ten characters of a ULID (core.ids): the 48-bit millisecond time in base 32."""
    return " || ".join(
        f"substr('{ALPHABET}', ((({ms}) >> {45 - 5 * k}) & 31)::int + 1, 1)" for k in range(10)
    )


def _hash(job_id: str, salt: str) -> str:
    """A non-negative number from the job id and a salt: the attempt rows and the job row
    derive the same times from it, in different statements."""
    return f"(hashtext({job_id} || {salt}) & 2147483647)"


def _attempt_begin(job_id: str, created: str, k: str) -> str:
    """When attempt `k` of a job began: a lead after its creation, then a step per retry."""
    lead = "(5 + " + _hash(job_id, "'l'") + " % 3995)"
    step = "(30 + " + _hash(job_id, "'s'") + " % 270)"
    return f"({created} + {lead} * interval '1 ms' + ({k} - 1) * {step} * interval '1 s')"


def _duration_ms(job_id: str, k: str) -> str:
    return "(50 + " + _hash(job_id, f"'d' || {k}") + " % 19950)"


def _attempt_end(job_id: str, created: str, k: str) -> str:
    begin = _attempt_begin(job_id, created, k)
    return f"({begin} + {_duration_ms(job_id, k)} * interval '1 ms')"


def _resolved_at(job_id: str, created: str, attempts: str) -> str:
    later = "(60 + " + _hash(job_id, "'r'") + " % 7200)"
    return f"({_attempt_end(job_id, created, attempts)} + {later} * interval '1 s')"


def _jobs_insert(columns: str, start_ms: int, span_ms: int) -> str:
    """Every job in creation order across the accounts of real_sizes (account_id, size)."""
    vocab_codes = _array([v[0] for v in VOCABULARY])
    vocab_details = _array([v[1] for v in VOCABULARY])
    index = _pick("r_error", [(i + 1, v[2]) for i, v in enumerate(VOCABULARY)], lambda c: str(c[0]))
    detail = (
        f"replace(replace(replace(replace(({vocab_details})[err],"
        f" '{{host}}', ({_array(HOSTS)})[1 + floor(r_host * {len(HOSTS)})::int]),"
        " '{n}', (2 + floor(r_n * 119))::int::text), '{folder}', folder), '{uid}', uid::text)"
    )
    ran = ", ".join(_literal(s) for s in RAN)
    created = "to_timestamp(ms / 1000.0)"
    last_begin = _attempt_begin("id", "created", "attempts")
    last_end = _attempt_end("id", "created", "attempts")
    resolved_at = _resolved_at("id", "created", "attempts")
    window_time = _ulid_time(f"(ms / {TASK_WINDOW_MS}) * {TASK_WINDOW_MS}")
    return f"""
WITH drawn AS (
    SELECT s.account_id, {start_ms} + floor(random() * {span_ms})::bigint AS ms,
           random() AS r_status, random() AS r_attempts, random() AS r_error, random() AS r_host,
           random() AS r_n, random() AS r_folder, random() AS r_uid, random() AS r_task,
           random() AS r_size, random() AS r_label, random() AS r_rare, random() AS r_id,
           random() AS r_run, random() AS r_pool
    FROM real_sizes s CROSS JOIN LATERAL generate_series(1, s.size)
    ORDER BY ms
), shaped AS (
    SELECT *,
        'job_' || {_ulid_time("ms")} || upper(substr(md5(r_id::text), 1, 16)) AS id,
        {created} AS created,
        {_pick("r_status", STATUS_MIX)} AS status,
        {_pick("r_folder", FOLDERS)} AS folder,
        1 + floor(r_uid * 500000)::int AS uid,
        {index} AS err
    FROM drawn
), counted AS (
    SELECT *,
        CASE WHEN status NOT IN ({ran}) THEN 0
             WHEN status IN ('succeeded', 'running') AND r_attempts < 0.9 THEN 1
             ELSE 1 + floor(r_attempts * 1000)::int % 5 END AS attempts
    FROM shaped
), erred AS (
    SELECT *,
        CASE WHEN status = 'stalled' THEN 'worker_lost'
             WHEN status IN ('failed', 'resolved') OR attempts > 1 THEN ({vocab_codes})[err]
             ELSE '' END AS code,
        CASE WHEN status = 'stalled' THEN 'Worker w-' || (1 + floor(r_n * 40))::int
                 || ' stopped heart-beating.'
             WHEN status IN ('failed', 'resolved') OR attempts > 1 THEN {detail}
             ELSE '' END AS plain_detail
    FROM counted
), timed AS (
    SELECT *,
        CASE WHEN plain_detail <> '' AND r_rare < {RARE_SHARE!r}
             THEN plain_detail || '; {RARE_TERM}' ELSE plain_detail END AS detail,
        CASE WHEN attempts > 0 THEN {last_begin} END AS started,
        CASE WHEN status = 'resolved' THEN {resolved_at}
             WHEN status IN ('succeeded', 'failed', 'stalled') THEN {last_end} END AS finished
    FROM erred
)
INSERT INTO jobs_job ({columns})
SELECT id, account_id,
    CASE WHEN r_task < {TASK_SHARE} THEN 'tsk_' || {window_time}
        || upper(substr(md5(account_id || (ms / {TASK_WINDOW_MS})::text), 1, 16)) END,
    'imap_sync_messages',
    jsonb_build_object('folder', folder, 'uid_next', uid,
        'since', '2026-' || lpad((1 + floor(r_run * 11))::int::text, 2, '0') || '-'
            || lpad((1 + floor(r_uid * 28))::int::text, 2, '0'),
        'batch_size', (ARRAY[100, 250, 500])[1 + floor(r_pool * 3)::int],
        'headers', substr(
            (SELECT pool.text FROM real_pool pool WHERE pool.n = floor(r_pool * 1000)::int),
            1 + floor(r_label * 1000)::int,
            greatest(0, exp(ln(100) + r_size * (ln(4096) - ln(100)))::int - 90))),
    CASE WHEN r_label < 0.2 THEN jsonb_build_object(
        'team', ({_array(TEAMS)})[1 + floor(r_label * 25)::int],
        'tier', CASE WHEN r_n < 0.3 THEN 'gold' ELSE 'free' END) ELSE '{{}}'::jsonb END,
    status, 0,
    CASE WHEN status = 'scheduled' THEN created + (1 + floor(r_run * 600)) * interval '1 min'
         ELSE created END,
    attempts, 5, code, detail,
    CASE WHEN status IN ('failed', 'stalled', 'resolved') THEN
        CASE WHEN status = 'resolved' THEN {last_end} ELSE finished END END,
    CASE WHEN status = 'running' THEN 'w-' || (1 + floor(r_n * 40))::int ELSE '' END,
    created, coalesce(finished, started, created), started, finished,
    CASE WHEN status = 'queued' THEN created END,
    CASE WHEN status = 'running' THEN started + interval '2 s' END,
    CASE WHEN status = 'resolved' THEN jsonb_build_object('code', 'fixed',
        'note', 'fixed elsewhere', 'by', 'user:operator', 'at', finished) END
FROM timed
"""


def _attempts_insert() -> str:
    created, k = "j.created_at", "k"
    worker = _hash("j.id", "'w' || k")
    last_outcome = (
        "CASE j.status WHEN 'running' THEN 'running' WHEN 'succeeded' THEN 'succeeded'"
        " WHEN 'stalled' THEN 'worker_lost' ELSE 'failed' END"
    )
    return f"""
INSERT INTO jobs_jobattempt
    (job_id, number, worker, started_at, finished_at, duration_ms, outcome, error_code,
     error_detail, traceback)
SELECT j.id, k, 'w-' || (1 + {worker} % 40),
    {_attempt_begin("j.id", created, k)},
    CASE WHEN k = j.attempt_count AND j.status = 'running' THEN NULL
         ELSE {_attempt_end("j.id", created, k)} END,
    CASE WHEN k = j.attempt_count AND j.status = 'running' THEN NULL
         ELSE {_duration_ms("j.id", k)} END,
    CASE WHEN k < j.attempt_count THEN 'retry_scheduled' ELSE {last_outcome} END,
    CASE WHEN k < j.attempt_count OR j.status IN ('failed', 'stalled', 'resolved')
         THEN coalesce(nullif(j.last_error_code, ''), 'provider_timeout') ELSE '' END,
    CASE WHEN k < j.attempt_count OR j.status IN ('failed', 'stalled', 'resolved')
         THEN coalesce(nullif(j.last_error_detail, ''), 'timed out') ELSE '' END,
    ''
FROM jobs_job j CROSS JOIN LATERAL generate_series(1, j.attempt_count) AS k
WHERE j.account_id IN (SELECT account_id FROM real_sizes)
"""


def _audit_insert() -> str:
    created, k = "j.created_at", "k"
    begin, end = _attempt_begin("j.id", created, k), _attempt_end("j.id", created, k)
    finish = (
        "CASE WHEN k < j.attempt_count THEN 'fail' WHEN j.status = 'succeeded' THEN 'succeed'"
        " WHEN j.status = 'stalled' THEN 'stall' ELSE 'fail' END"
    )
    finish_to = (
        "CASE WHEN k < j.attempt_count THEN 'scheduled' WHEN j.status = 'resolved' THEN 'failed'"
        " ELSE j.status END"
    )
    task = "coalesce(j.task_id, '')"
    return f"""
INSERT INTO jobs_auditevent
    (created_at, actor_type, actor, command, account_id, job_id, task_id, from_status,
     to_status, reason, data)
SELECT e.at, e.actor_type, e.actor, e.command, j.account_id, j.id, {task}, e.source,
    e.target, e.reason, '{{}}'::jsonb
FROM jobs_job j CROSS JOIN LATERAL (
    SELECT {created} AS at, 'api_key' AS actor_type, 'key:' || right(j.account_id, 8) AS actor,
        'create' AS command, '' AS source,
        CASE WHEN j.status = 'scheduled' THEN 'scheduled' ELSE 'queued' END AS target,
        '' AS reason, 0 AS k
    UNION ALL
    SELECT {begin}, 'system', 'system:worker', 'claim', 'queued', 'running', '', k
    FROM generate_series(1, j.attempt_count) AS k
    UNION ALL
    SELECT {end}, 'system', 'system:worker', {finish}, 'running', {finish_to}, '', k
    FROM generate_series(1, j.attempt_count) AS k
    WHERE NOT (k = j.attempt_count AND j.status = 'running')
    UNION ALL
    SELECT {end} + interval '1 s', 'system', 'system:dispatcher', 'dispatch', 'scheduled',
        'queued', '', k
    FROM generate_series(1, j.attempt_count - 1) AS k
    UNION ALL
    SELECT j.finished_at, 'user', 'user:operator', 'resolve', 'failed', 'resolved',
        'fixed elsewhere', 99
    WHERE j.status = 'resolved'
    ORDER BY 1, 8
) AS e
WHERE j.account_id IN (SELECT account_id FROM real_sizes)
"""


def _tasks_insert() -> str:
    def count(status: JobStatus) -> str:
        return f"count(*) FILTER (WHERE status = '{status.value}')"

    counters = ", ".join(f"jobs_{status.value}" for status in JobStatus)
    values = ", ".join(count(status) for status in JobStatus)
    return f"""
INSERT INTO jobs_task (id, account_id, kind, params, status, created_at, updated_at, {counters})
SELECT task_id, account_id, 'mailbox_sync', '{{}}'::jsonb, {jobs_sql.task_status_case(count)},
    min(created_at), max(updated_at), {values}
FROM jobs_job
WHERE task_id IS NOT NULL AND account_id IN (SELECT account_id FROM real_sizes)
GROUP BY task_id, account_id
"""


_POOL = """
INSERT INTO real_pool (n, text)
SELECT n, string_agg('X-' || upper(substr(md5(n::text || '-' || i::text), 1, 12)) || ': '
    || substr(md5(i::text || '+' || n::text), 1, 16), '; ')
FROM generate_series(0, 999) AS n CROSS JOIN generate_series(1, 250) AS i
GROUP BY n
"""

_DEAD_TUPLES = """
UPDATE jobs_job SET updated_at = updated_at
WHERE account_id IN (SELECT account_id FROM real_sizes) AND (hashtext(id) & 1023) < %s
"""

# --- the load ------------------------------------------------------------------------------------


def account_sizes(jobs: int, accounts: int, rng: random.Random) -> list[int]:
    """Pareto-distributed account sizes summing to `jobs`, largest first."""
    weights = sorted((rng.paretovariate(1.1) for _ in range(accounts)), reverse=True)
    total = sum(weights)
    sizes = [max(1, int(jobs * w / total)) for w in weights]
    sizes[0] += jobs - sum(sizes)
    return sizes


def real_accounts() -> list[str]:
    """The realistic data set's accounts, largest first (their names number them so)."""
    return list(
        Account.objects.filter(name__startswith=REAL_PREFIX)
        .order_by("name")
        .values_list("id", flat=True)
    )


def total_bytes() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_total_relation_size(c)) FROM unnest(%s::regclass[]) AS c", [list(TABLES)]
        )
        return int(cursor.fetchone()[0] or 0)


@contextmanager
def _dropped_indexes_and_keys(cursor) -> Iterator[None]:
    """Bulk-load practice: the four tables' secondary indexes and foreign keys go for the load
    and come back after (the definitions read from the catalog, so they are exactly Django's):
    maintaining a dozen indexes row by row, and queueing a deferred check per row and key, is
    many times slower than building each index once and checking each key in one join."""
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND (conrelid = ANY(%s::regclass[]) "
        "OR confrelid = ANY(%s::regclass[]))",
        [list(TABLES), list(TABLES)],
    )
    keys = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = ANY(%s::regclass[]))",
        [list(TABLES), list(TABLES)],
    )
    indexes = cursor.fetchall()
    for table, name, _ in keys:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        for _, definition in indexes:
            cursor.execute(definition)
        for table, name, definition in keys:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def _clear(ids: list[str]) -> None:
    """Remove a partial or differently sized load."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobs_auditevent WHERE account_id = ANY(%s)", [ids])
        cursor.execute(
            "DELETE FROM jobs_jobattempt WHERE job_id IN "
            "(SELECT id FROM jobs_job WHERE account_id = ANY(%s))",
            [ids],
        )
        cursor.execute("DELETE FROM jobs_job WHERE account_id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM jobs_task WHERE account_id = ANY(%s)", [ids])
    Account.objects.filter(pk__in=ids).delete()


def describe(ids: list[str], load_seconds: float, steps: list[tuple[str, float]]):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(attempt_count), 0) FROM jobs_job "
            "WHERE account_id = ANY(%s)",
            [ids],
        )
        jobs, attempts = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM jobs_task WHERE account_id = ANY(%s)", [ids])
        tasks = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM jobs_auditevent WHERE account_id = ANY(%s)", [ids])
        events = cursor.fetchone()[0]
    return RealisticDataset(
        ids,
        jobs,
        tasks,
        int(attempts),
        events,
        RARE_TERM,
        COMMON_TERM,
        load_seconds,
        steps,
        total_bytes(),
    )


def ensure_realistic_dataset(
    jobs: int = 10_000_000, accounts: int = 10_000, *, days: float = 30.0, echo=print
) -> RealisticDataset:
    """Make sure the realistic data set is loaded, once per database, and describe it."""
    if connection.vendor != "postgresql":
        raise RuntimeError("The realistic data set needs PostgreSQL (set DATABASE_URL).")
    call_command("migrate", verbosity=0, interactive=False)
    ids = real_accounts()
    if len(ids) == accounts:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM jobs_job WHERE account_id = ANY(%s)", [ids])
            if cursor.fetchone()[0] == jobs:
                return describe(ids, 0.0, [])
    started = time.perf_counter()
    steps: list[tuple[str, float]] = []

    def step(name: str, statement: str, params=None) -> None:
        begun = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.rowcount
        steps.append((name, time.perf_counter() - begun))
        echo(f"  {name}: {rows:,} rows in {steps[-1][1]:,.1f} s", flush=True)

    if ids:
        _clear(ids)
    rng = random.Random(REAL_SEED)
    sizes = account_sizes(jobs, accounts, rng)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - int(days * 86_400_000)
    # Account ids sort by creation, a little before the first job; largest account first.
    ids = [f"acc_{_ulid(start_ms - accounts + i, rng)}" for i in range(accounts)]
    Account.objects.bulk_create(
        [Account(id=account_id, name=f"{REAL_PREFIX}{i:05d}") for i, account_id in enumerate(ids)],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute("SET jit = off")  # compiling the generator's expressions took 10 s
        cursor.execute("SELECT setseed(%s)", [REAL_SEED])
        cursor.execute(
            "CREATE TEMP TABLE real_sizes (account_id varchar(32) PRIMARY KEY, size int)"
            "ON COMMIT PRESERVE ROWS"
        )
        cursor.execute(
            "INSERT INTO real_sizes SELECT * FROM unnest(%s::varchar[], %s::int[])", [ids, sizes]
        )
        cursor.execute("CREATE TEMP TABLE real_pool (n int PRIMARY KEY, text text)")
        cursor.execute(_POOL)
        with _dropped_indexes_and_keys(cursor):
            columns = (
                "id, account_id, task_id, action, payload, labels, status, priority, run_at, "
                "attempt_count, max_attempts, last_error_code, last_error_detail, "
                "last_error_at, worker, created_at, updated_at, started_at, finished_at, "
                "enqueued_at, heartbeat_at, resolution"
            )
            step("jobs", _jobs_insert(columns, start_ms, end_ms - start_ms))
            step("tasks", _tasks_insert())
            step("attempts", _attempts_insert())
            step("audit events", _audit_insert())
            begun = time.perf_counter()
        steps.append(("indexes and foreign keys", time.perf_counter() - begun))
        echo(f"  indexes and foreign keys: {steps[-1][1]:,.1f} s", flush=True)
        for table in TABLES:
            step(f"vacuum analyze {table}", f"VACUUM ANALYZE {table}")
        # Dead tuples, as months of status changes leave them between two vacuums.
        step("dead tuples", _DEAD_TUPLES, [int(UPDATE_SHARE * 1024)])
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("DROP TABLE real_sizes, real_pool")
    return describe(ids, time.perf_counter() - started, steps)
