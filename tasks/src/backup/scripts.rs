//! The shell scripts the client containers run (POSIX sh, psql, pg_dump, pg_restore, awk:
//! what any Postgres image has). Lines on stderr that start with `lifeos-` are for lifeos:
//! `lifeos-meta {json}` (server version, a table's row count). The read-back script's own
//! output is on stdout: `lifeos-rows N TABLE` (rows of a table as read back from a dump),
//! apart from pg_restore's messages on stderr (one stream each, so they never interleave).

/// Per-table row counts as JSON lines, tables named as pg_dump names them in COPY.
const COUNT_SQL: &str = r#"SELECT format('SELECT json_build_object(''table'', %L, ''rows'', count(*)) FROM %I.%I', quote_ident(n.nspname) || '.' || quote_ident(c.relname), n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1 \gexec"#;

/// `pg_dump -Fc` to stdout, inside a repeatable-read transaction whose snapshot pg_dump
/// uses: the row counts taken in the same transaction describe exactly the dumped data.
pub fn dump() -> String {
    format!(
        r#"set -eu
meta=$(mktemp)
LIFEOS_FAILED=$(mktemp -u)
export LIFEOS_FAILED
psql -X -q -w -v ON_ERROR_STOP=1 -t -A -o "$meta" <<'SQL'
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS lifeos_snapshot \gset
\setenv LIFEOS_SNAPSHOT :lifeos_snapshot
\! pg_dump -Fc -w --snapshot="$LIFEOS_SNAPSHOT" || echo $? > "$LIFEOS_FAILED"
SELECT json_build_object('server_version', current_setting('server_version'));
{COUNT_SQL}
COMMIT;
SQL
if [ -e "$LIFEOS_FAILED" ]; then echo "pg_dump failed (exit $(cat "$LIFEOS_FAILED"))" >&2; exit 1; fi
sed 's/^/lifeos-meta /' "$meta" >&2
"#
    )
}

/// A full read of a custom-format dump from stdin (`pg_restore -f -`: every data block is
/// decompressed, so truncation and damage are found), counting the rows of each table
/// (on stdout).
pub fn read_back() -> String {
    r#"set -eu
failed=$(mktemp -u)
{ pg_restore -f - || echo $? > "$failed"; } | awk '
  copying && $0 == "\\." { printf "lifeos-rows %d %s\n", n, t; copying = 0; next }
  copying { n++; next }
  /^COPY .* FROM stdin;$/ { t = substr($0, 6); sub(/ FROM stdin;$/, "", t); sub(/ \(.*$/, "", t); n = 0; copying = 1 }
'
if [ -e "$failed" ]; then exit 1; fi
"#
    .to_string()
}

/// Restore the dump on stdin into a new database `$LIFEOS_SCRATCH` (in one transaction),
/// then count its rows.
pub fn restore_scratch() -> String {
    format!(
        r#"set -eu
createdb -w --maintenance-db="$LIFEOS_MAINTENANCE" -- "$LIFEOS_SCRATCH"
pg_restore -w --single-transaction -d "$LIFEOS_SCRATCH"
psql -X -q -w -v ON_ERROR_STOP=1 -t -A -d "$LIFEOS_SCRATCH" <<'SQL' | sed 's/^/lifeos-meta /' >&2
SELECT json_build_object('server_version', current_setting('server_version'));
{COUNT_SQL}
SQL
"#
    )
}

/// Drop `$LIFEOS_SCRATCH` if it exists.
pub fn drop_scratch() -> String {
    r#"set -eu
psql -X -q -w -v ON_ERROR_STOP=1 -d "$LIFEOS_MAINTENANCE" -v db="$LIFEOS_SCRATCH" <<'SQL'
SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid();
DROP DATABASE IF EXISTS :"db";
SQL
"#
    .to_string()
}

/// Swap `$LIFEOS_SCRATCH` in as `$LIFEOS_LIVE`, keeping the live one as `$LIFEOS_OLD`: both
/// renames in one transaction, so the live name always names a whole database. Sessions on
/// the live database are ended first (a rename needs it unused); a few tries, since a client
/// may reconnect in between.
pub fn swap() -> String {
    r#"set -eu
try=0
while :; do
  if psql -X -q -w -v ON_ERROR_STOP=1 -d "$LIFEOS_MAINTENANCE" -v live="$LIFEOS_LIVE" -v old="$LIFEOS_OLD" -v scratch="$LIFEOS_SCRATCH" <<'SQL'
SELECT count(*) > 0 AS live_exists FROM pg_database WHERE datname = :'live' \gset
SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = :'live' AND pid <> pg_backend_pid() \g /dev/null
BEGIN;
\if :live_exists
ALTER DATABASE :"live" RENAME TO :"old";
\endif
ALTER DATABASE :"scratch" RENAME TO :"live";
COMMIT;
SQL
  then exit 0; fi
  try=$((try + 1))
  if [ "$try" -ge 5 ]; then exit 1; fi
  sleep 1
done
"#
    .to_string()
}
