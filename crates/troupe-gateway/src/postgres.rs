//! [`TaskStore`] in PostgreSQL (gateway.md §1 "Storage"), for several gateway replicas
//! sharing one database; [`attach_postgres_fanout`] carries their SSE events across
//! replicas over LISTEN/NOTIFY (§1 "Replicas").
//!
//! Layout mirrors [`crate::SqliteStore`]: the task data is kept as JSON text (JSONB would
//! reject a `\u0000` inside a payload string and renormalise numbers, and nothing queries
//! into it), timestamps as unix nanoseconds (`timestamptz` stops at microseconds, and
//! records must round-trip exactly), and `seq` gives the newest-first list order.
//! Unlike SQLite there is no in-memory status index: another replica may change any
//! record, so every read goes to the database.

mod fanout;

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls, Row};

pub use fanout::attach_postgres_fanout;

use crate::status::TaskStatus;
use crate::store::{CasOutcome, ListFilter, StoreError, TaskPage, TaskStore};
use crate::task::{Task, TaskData};

/// Bumped when the table layout changes, so an older build refuses a newer database.
const SCHEMA_VERSION: i64 = 1;

/// Pool size per store: requests are short single statements, and several replicas
/// share the server's `max_connections`.
const POOL_SIZE: usize = 8;

/// How long a request waits for a connection (or for one to be made) before it fails
/// as unavailable instead of hanging the HTTP request.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Applied when the URL sets no `connect_timeout`, so an unreachable host fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// Run under an advisory lock (see `ensure_schema`): `CREATE ... IF NOT EXISTS` alone
// still races on the catalog when several replicas start at once.
//
// - `troupe_gateway_tasks_overdue` is partial on exactly the overdue query's status
//   predicate, so the backstop scans only live tasks with a deadline.
// - `troupe_gateway_event_bodies` holds fan-out events too large for a NOTIFY payload;
//   UNLOGGED because rows live for seconds and losing them in a crash only loses events
//   that LISTEN/NOTIFY would have lost anyway.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS troupe_gateway_meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS troupe_gateway_tasks (
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    status          TEXT NOT NULL,
    parent_id       TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deadline_at     BIGINT,
    sla_remaining_s BIGINT,
    data            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS troupe_gateway_tasks_status
    ON troupe_gateway_tasks (status, seq);
CREATE INDEX IF NOT EXISTS troupe_gateway_tasks_parent
    ON troupe_gateway_tasks (parent_id, seq) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS troupe_gateway_tasks_overdue
    ON troupe_gateway_tasks (deadline_at, id)
    WHERE status IN ('pending', 'running') AND deadline_at IS NOT NULL;
CREATE UNLOGGED TABLE IF NOT EXISTS troupe_gateway_event_bodies (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replica    TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS troupe_gateway_event_bodies_created
    ON troupe_gateway_event_bodies (created_at);
";

const COLUMNS: &str = "id, status, created_at, updated_at, sla_remaining_s, data";

/// Keeps tasks in a PostgreSQL database; cheap to clone (clones share one pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// `postgres://user@host:port/db`, for error messages (never the password).
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The error text of `e` with its causes: tokio-postgres's own text is only the kind
/// ("db error"), the server's message is in the source chain.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    // Server messages carry DETAIL/HINT on their own lines; keep log lines whole.
    out.replace('\n', "; ")
}

fn describe_pool(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe(e),
        other => describe(other),
    }
}

/// Parses `url`, adding the timeouts and keepalives a long-lived server process needs.
pub(crate) fn parse_config(url: &str, application: &str) -> Result<Config, StoreError> {
    // The parse error names the offending option, never its value, so no password leaks.
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::Unavailable(format!(
            "PostgreSQL URL is not valid ({}); expected postgres://USER[:PASSWORD]@HOST:PORT/DATABASE",
            describe(&e)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // Keepalives let a half-open connection (a vanished server or NAT) fail instead of
    // hanging; the fan-out listener relies on that to notice an outage.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    Ok(config)
}

/// `postgres://user@host:port/db` without the password.
pub(crate) fn target_of(config: &Config) -> String {
    let hosts = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            // A single port applies to every host.
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect::<Vec<_>>()
        .join(",");
    let user = config.get_user().unwrap_or("(default user)");
    let db = config.get_dbname().unwrap_or("(default database)");
    format!("postgres://{user}@{hosts}/{db}")
}

/// A connection failure, phrased so an operator knows what to check.
pub(crate) fn unreachable(target: &str, reason: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "PostgreSQL at {target}: {reason}; check that the server is running and accepts TCP \
         connections at that address, and that the URL's user, password and database are right"
    ))
}

/// A pool of up to `size` connections that fails requests after [`POOL_TIMEOUT`].
pub(crate) fn build_pool(config: Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // Fast: a broken connection is still noticed (`is_closed`) without a round
            // trip per checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL pool: {e}")))
}

/// Creates the tables and indexes if missing; safe when several replicas run it at once.
pub(crate) async fn ensure_schema(pool: &Pool, target: &str) -> Result<(), StoreError> {
    let fail = |e: &dyn std::error::Error| {
        StoreError::Unavailable(format!(
            "cannot create the task tables in PostgreSQL at {target}: {}; check that the user may \
             create tables in the first schema of its search_path",
            describe(e)
        ))
    };
    let mut client = pool
        .get()
        .await
        .map_err(|e| unreachable(target, &describe_pool(&e)))?;
    let tx = client.transaction().await.map_err(|e| fail(&e))?;
    // The lock serialises concurrent schema creation per schema (released at commit);
    // the quieter level spares every start one "already exists, skipping" NOTICE per
    // object in the log.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         SELECT pg_advisory_xact_lock(hashtext('troupe_gateway_schema'), hashtext(current_schema()))",
    )
    .await
    .map_err(|e| fail(&e))?;
    tx.batch_execute(SCHEMA).await.map_err(|e| fail(&e))?;
    tx.execute(
        "INSERT INTO troupe_gateway_meta (name, value) VALUES ('schema_version', $1)
         ON CONFLICT (name) DO NOTHING",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(|e| fail(&e))?;
    let version: i64 = tx
        .query_one(
            "SELECT value FROM troupe_gateway_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .map_err(|e| fail(&e))?
        .try_get(0)
        .map_err(|e| fail(&e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "PostgreSQL at {target} holds task schema version {version}, newer than this build \
             ({SCHEMA_VERSION}); upgrade troupe"
        )));
    }
    tx.commit().await.map_err(|e| fail(&e))
}

fn nanos(t: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        StoreError::Unavailable(format!(
            "timestamp {t} is outside the range the task store can hold"
        ))
    })
}

// Deadlines only feed the `<` comparison of the overdue query, so saturating keeps the
// order correct even for absurd dates.
fn saturating_nanos(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Column values of a task.
struct Encoded {
    status: &'static str,
    parent_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    deadline_at: Option<i64>,
    sla_remaining_s: Option<i64>,
    data: String,
}

fn encode(task: &Task) -> Result<Encoded, StoreError> {
    let data = task.data_text().map_err(|e| StoreError::Corrupt {
        id: task.id.clone(),
        reason: format!("data cannot be encoded as JSON: {e}"),
    })?;
    Ok(Encoded {
        status: task.status.as_str(),
        parent_id: task.parent_id().map(str::to_owned),
        created_at: nanos(task.created_at)?,
        updated_at: nanos(task.updated_at)?,
        deadline_at: task.deadline().map(saturating_nanos),
        sla_remaining_s: task
            .sla_remaining_s
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        data,
    })
}

fn decode(row: &Row) -> Result<Task, StoreError> {
    let id: String = row.try_get(0).map_err(|e| StoreError::Corrupt {
        id: "?".into(),
        reason: format!("id column: {}", describe(&e)),
    })?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let column = |e: tokio_postgres::Error| corrupt(describe(&e));
    let status: String = row.try_get(1).map_err(column)?;
    let created_at: i64 = row.try_get(2).map_err(column)?;
    let updated_at: i64 = row.try_get(3).map_err(column)?;
    let sla_remaining_s: Option<i64> = row.try_get(4).map_err(column)?;
    let data: String = row.try_get(5).map_err(column)?;

    let status =
        TaskStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown status '{status}'")))?;
    let ts = |n: i64, what: &str| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
            .map_err(|e| corrupt(format!("{what} out of range: {e}")))
    };
    let created_at = ts(created_at, "created_at")?;
    let updated_at = ts(updated_at, "updated_at")?;
    let data: TaskData = serde_json::from_str(&data)
        .map_err(|e| corrupt(format!("data is not valid task JSON: {e}")))?;
    let sla_remaining_s = sla_remaining_s
        .map(|s| u64::try_from(s).map_err(|_| corrupt(format!("negative sla_remaining_s {s}"))))
        .transpose()?;
    Ok(Task {
        id,
        status,
        data,
        created_at,
        updated_at,
        sla_remaining_s,
    })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`, plain TCP, no TLS)
    /// and creates the tables and indexes if missing, in the first schema of the
    /// connection's search path (`?options=-csearch_path%3DNAME` picks another).
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let config = parse_config(url, "troupe-gateway")?;
        let target = target_of(&config);
        let pool = build_pool(config, POOL_SIZE)?;
        ensure_schema(&pool, &target).await?;
        Ok(PostgresStore { pool, target })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| unreachable(&self.target, &describe_pool(&e)))
    }

    fn failed(&self, e: &tokio_postgres::Error) -> StoreError {
        if e.is_closed() || e.as_db_error().is_none() {
            unreachable(&self.target, &describe(e))
        } else {
            StoreError::Unavailable(format!("PostgreSQL at {}: {}", self.target, describe(e)))
        }
    }

    /// Runs a row-returning statement (prepared once per connection).
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.failed(&e))?;
        client
            .query(&stmt, params)
            .await
            .map_err(|e| self.failed(&e))
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.failed(&e))?;
        client
            .execute(&stmt, params)
            .await
            .map_err(|e| self.failed(&e))
    }

    async fn query_tasks(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Task>, StoreError> {
        self.query(sql, params).await?.iter().map(decode).collect()
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn insert(&self, task: Task) -> Result<bool, StoreError> {
        let e = encode(&task)?;
        let n = self
            .execute(
                "INSERT INTO troupe_gateway_tasks
                 (id, status, parent_id, created_at, updated_at, deadline_at, sla_remaining_s, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &task.id,
                    &e.status,
                    &e.parent_id,
                    &e.created_at,
                    &e.updated_at,
                    &e.deadline_at,
                    &e.sla_remaining_s,
                    &e.data,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM troupe_gateway_tasks WHERE id = $1");
        Ok(self.query_tasks(&sql, &[&id]).await?.into_iter().next())
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, StoreError> {
        let rows = self
            .query(
                "SELECT status FROM troupe_gateway_tasks WHERE id = $1",
                &[&id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.to_owned(),
            reason,
        };
        let status: String = row.try_get(0).map_err(|e| corrupt(describe(&e)))?;
        TaskStatus::parse(&status)
            .map(Some)
            .ok_or_else(|| corrupt(format!("unknown status '{status}'")))
    }

    async fn compare_and_set(
        &self,
        expected: TaskStatus,
        task: Task,
    ) -> Result<CasOutcome, StoreError> {
        let e = encode(&task)?;
        // One statement: the conditional UPDATE is the compare-and-set (a concurrent
        // writer's row lock makes it re-check `status` after that writer commits), and
        // the EXISTS, evaluated on the statement's snapshot, tells a lost race (Conflict)
        // from a missing record (NotFound) without a second round trip.
        let rows = self
            .query(
                "WITH upd AS (
                     UPDATE troupe_gateway_tasks SET status = $2, parent_id = $3, created_at = $4,
                         updated_at = $5, deadline_at = $6, sla_remaining_s = $7, data = $8
                     WHERE id = $1 AND status = $9
                     RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM upd),
                        EXISTS (SELECT 1 FROM troupe_gateway_tasks WHERE id = $1)",
                &[
                    &task.id,
                    &e.status,
                    &e.parent_id,
                    &e.created_at,
                    &e.updated_at,
                    &e.deadline_at,
                    &e.sla_remaining_s,
                    &e.data,
                    &expected.as_str(),
                ],
            )
            .await?;
        let flags = rows
            .first()
            .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
            .map_err(|e| self.failed(&e))?;
        Ok(match flags {
            Some((true, _)) => CasOutcome::Applied,
            Some((false, true)) => CasOutcome::Conflict,
            _ => CasOutcome::NotFound,
        })
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .execute("DELETE FROM troupe_gateway_tasks WHERE id = $1", &[&id])
            .await?;
        Ok(n == 1)
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        let status = filter.status.map(TaskStatus::as_str);
        // One statement text per filter combination (four in all, each prepared once per
        // connection) instead of `$1 IS NULL OR ...`, so each plan can use its index.
        let mut conds = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(s) = &status {
            params.push(s);
            conds.push(format!("status = ${}", params.len()));
        }
        if let Some(p) = &filter.parent_id {
            params.push(p);
            conds.push(format!("parent_id = ${}", params.len()));
        }
        let filter_sql = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) FROM troupe_gateway_tasks {filter_sql}");
        let rows = self.query(&count_sql, &params).await?;
        let total: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.failed(&e))?
            .unwrap_or(0);

        let limit = to_i64(filter.limit);
        let offset = to_i64(filter.offset);
        let n = params.len();
        params.push(&limit);
        params.push(&offset);
        let page_sql = format!(
            "SELECT {COLUMNS} FROM troupe_gateway_tasks {filter_sql}
             ORDER BY seq DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let tasks = self.query_tasks(&page_sql, &params).await?;
        Ok(TaskPage {
            tasks,
            total: usize::try_from(total).unwrap_or(0),
        })
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Task>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM troupe_gateway_tasks WHERE parent_id = $1 ORDER BY seq");
        self.query_tasks(&sql, &[&parent_id]).await
    }

    async fn overdue(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Task>, StoreError> {
        // The status predicate is spelled exactly as the partial index's so the planner
        // can use it.
        let sql = format!(
            "SELECT {COLUMNS} FROM troupe_gateway_tasks
             WHERE status IN ('pending', 'running') AND deadline_at < $1
             ORDER BY deadline_at, id LIMIT $2"
        );
        self.query_tasks(&sql, &[&saturating_nanos(now), &to_i64(limit)])
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| self.failed(&e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn target_omits_the_password() {
        let c = parse_config("postgres://troupe:s3cret@db.internal:6543/tasks", "t").unwrap();
        let t = target_of(&c);
        assert_eq!(t, "postgres://troupe@db.internal:6543/tasks");
        assert!(!t.contains("s3cret"));
    }

    #[test]
    fn bad_url_is_unavailable_without_echoing_it() {
        let err = parse_config("postgres://u:s3cret@h:notaport/db", "t").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgres://USER"), "{text}");
    }

    #[test]
    fn url_options_reach_the_config() {
        let c = parse_config(
            "postgres://u@h/db?options=-csearch_path%3Dcase_1&application_name=mine",
            "t",
        )
        .unwrap();
        assert_eq!(c.get_options(), Some("-csearch_path=case_1"));
        assert_eq!(c.get_application_name(), Some("mine"));
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }
}
