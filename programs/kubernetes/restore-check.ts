/**
 * The check a restored volume passes before the database moves to it: a volume restored
 * from a snapshot that no CSI driver ever filled binds and mounts like any other, empty, so "the claim
 * is bound" proves nothing. The check starts PostgreSQL on the restored data directory (on a Unix socket
 * in a private directory, no TCP, no WAL archiving), asks it for the schema stackpin's migrations
 * recorded (`stackpin_migrations`, as the local program keeps it) and compares it with the schema the
 * database was at when the snapshot was taken. It stops the server again either way.
 *
 * It runs as a Job in the database image (PGDATA the restored claim's mount). On failure its last output
 * line is a restore-impossible refusal (`lib/engine/refusal.ts`), which the pod's termination message carries
 * (`FallbackToLogsOnError`) into the provider's error and stackpin types as a failed database change.
 *
 * Environment: PGDATA, RESTORE (the restore's name), SNAPSHOT, EXPECT_SCHEMA (empty: only that the database answers), DATABASE (the one the migrations use).
 */
import { refusalMarker } from "../../lib/engine/refusal";

/** The check, as a shell script. */
export const restoreCheckScript = String.raw`set -u
say() { printf '%s\n' "$*"; }
fail() { say "${refusalMarker("restore-impossible")} restore $RESTORE from snapshot $SNAPSHOT failed its check: $*; the database and the app stay on the volume they were on"; exit 1; }
# PostgreSQL refuses to run as root; the database image runs the check as root, with runuser at hand.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ -s "$PGDATA/PG_VERSION" ] || fail "the restored volume holds no PostgreSQL data directory (no $PGDATA/PG_VERSION): the snapshot's data never reached it (is a CSI driver that supports snapshots serving the class?)"
sock=$(mktemp -d)
[ "$(id -u)" = 0 ] && chown postgres "$sock"
if ! as_pg pg_ctl -D "$PGDATA" -l "$sock/log" -w -t 300 -o "-c listen_addresses='' -c port=5432 -c unix_socket_directories=$sock -c archive_mode=off" start >/dev/null; then
  tail -n 5 "$sock/log" 2>/dev/null
  rm -rf "$sock"
  fail "PostgreSQL did not start on the restored data directory"
fi
q() { as_pg psql -h "$sock" -p 5432 -d "$DATABASE" -XtAq -v ON_ERROR_STOP=1 -c "$1"; }
if has=$(q "select to_regclass('public.stackpin_migrations') is not null"); then
  if [ "$has" = t ]; then schema=$(q "select coalesce(max(schema), 0) from stackpin_migrations") || schema="?"; else schema=0; fi
else
  schema="?"
fi
as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
rm -rf "$sock"
[ "$schema" != "?" ] || fail "the restored database did not answer a query"
if [ -n "$EXPECT_SCHEMA" ] && [ "$schema" != "$EXPECT_SCHEMA" ]; then
  fail "the restored database holds schema $schema, the snapshot held schema $EXPECT_SCHEMA"
fi
say "restore $RESTORE from snapshot $SNAPSHOT: the database answers at schema $schema"
`;
