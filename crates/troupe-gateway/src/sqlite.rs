//! Durable [`TaskStore`] in one SQLite file (the embedded default for `troupe up`), so
//! task history and resumable pauses survive a mesh restart without an external
//! database.
//!
//! Every call runs on the blocking pool behind one connection mutex: SQLite serialises
//! writers anyway, and a single connection makes each compare-and-set atomic without
//! explicit transactions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{params, Connection, Row};
use time::OffsetDateTime;

use crate::status::TaskStatus;
use crate::store::{CasOutcome, ListFilter, StoreError, TaskPage, TaskStore};
use crate::task::{Task, TaskData};

/// Bumped when the table layout changes, so an old file is recognised.
const SCHEMA_VERSION: i64 = 1;

// `seq` preserves insertion order for newest-first listing; the implicit rowid cannot be
// used because VACUUM may renumber it. `deadline_at` is the parsed deadline in unix
// nanoseconds (NULL when absent or unparseable) so the overdue query is an index range.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id              TEXT PRIMARY KEY NOT NULL,
    seq             INTEGER NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    parent_id       TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deadline_at     INTEGER,
    sla_remaining_s INTEGER,
    data            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks (parent_id, seq);
CREATE INDEX IF NOT EXISTS tasks_deadline ON tasks (deadline_at, id);
";

const COLUMNS: &str = "id, status, created_at, updated_at, sla_remaining_s, data";

/// Keeps tasks in a SQLite database file (WAL mode).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Status of every stored task, kept in memory and updated under the connection
    /// lock: sidecars ask for the status of every message they see (pre-flight, and
    /// whether to report at all), mostly for ids the gateway never stored, and a
    /// database round trip per message would cost more than the rest of the hop.
    statuses: Arc<Mutex<HashMap<String, TaskStatus>>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn nanos(t: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        unavailable(format!(
            "timestamp {t} is outside the range the task store can hold"
        ))
    })
}

// Deadlines only feed the `<` comparison of the overdue query, so saturating keeps the
// order correct even for absurd dates.
fn deadline_nanos(task: &Task) -> Option<i64> {
    task.deadline().map(|d| {
        let n = d.unix_timestamp_nanos();
        i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
    })
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Column values of a task, computed before taking the lock.
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
        deadline_at: deadline_nanos(task),
        sla_remaining_s: task
            .sla_remaining_s
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        data,
    })
}

/// Raw row as read; decoded outside the row callback so failures carry the id.
struct RawRow {
    id: String,
    status: String,
    created_at: i64,
    updated_at: i64,
    sla_remaining_s: Option<i64>,
    data: String,
}

fn raw(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        status: row.get(1)?,
        created_at: row.get(2)?,
        updated_at: row.get(3)?,
        sla_remaining_s: row.get(4)?,
        data: row.get(5)?,
    })
}

fn decode(r: RawRow) -> Result<Task, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: r.id.clone(),
        reason,
    };
    let status = TaskStatus::parse(&r.status)
        .ok_or_else(|| corrupt(format!("unknown status '{}'", r.status)))?;
    let ts = |n: i64, what: &str| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
            .map_err(|e| corrupt(format!("{what} out of range: {e}")))
    };
    let created_at = ts(r.created_at, "created_at")?;
    let updated_at = ts(r.updated_at, "updated_at")?;
    let data: TaskData = serde_json::from_str(&r.data)
        .map_err(|e| corrupt(format!("data is not valid task JSON: {e}")))?;
    let sla_remaining_s = r
        .sla_remaining_s
        .map(|s| u64::try_from(s).map_err(|_| corrupt(format!("negative sla_remaining_s {s}"))))
        .transpose()?;
    Ok(Task {
        id: r.id,
        status,
        data,
        created_at,
        updated_at,
        sla_remaining_s,
    })
}

fn query_tasks(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(params, raw)
        .map_err(unavailable)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(unavailable)?;
    rows.into_iter().map(decode).collect()
}

/// The status index; a panic while holding it cannot leave the map inconsistent.
fn lock_index(
    m: &Mutex<HashMap<String, TaskStatus>>,
) -> std::sync::MutexGuard<'_, HashMap<String, TaskStatus>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and its schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fail = |e: rusqlite::Error| {
            StoreError::Unavailable(format!(
                "cannot open task database {}: {e}; check that the directory exists and is writable",
                path.display()
            ))
        };
        let conn = Connection::open(path).map_err(fail)?;
        // journal_mode answers with the resulting mode, so it is read, not executed.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "task database {} refused WAL journal mode (got '{mode}'); is it on a network filesystem?",
                path.display()
            )));
        }
        // NORMAL is durable across process crashes in WAL mode; only an OS crash can
        // lose the last commits, which the SLA backstop and sidecar retries tolerate.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "task database {} has schema version {version}, newer than this build ({SCHEMA_VERSION}); upgrade troupe or move the file aside",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(fail)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail)?;
        let mut statuses = HashMap::new();
        {
            let mut st = conn.prepare("SELECT id, status FROM tasks").map_err(fail)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(fail)?;
            for row in rows {
                let (id, status) = row.map_err(fail)?;
                let status = TaskStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
                    id: id.clone(),
                    reason: format!("unknown status '{status}'"),
                })?;
                statuses.insert(id, status);
            }
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            statuses: Arc::new(Mutex::new(statuses)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-call leaves SQLite itself consistent (statements are atomic),
            // so a poisoned lock is still safe to use.
            let guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&guard)
        })
        .await
        .map_err(|e| unavailable(format!("store worker failed: {e}")))?
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn insert(&self, task: Task) -> Result<bool, StoreError> {
        let enc = encode(&task)?;
        let status = task.status;
        let id = task.id;
        let statuses = self.statuses.clone();
        self.with_conn(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO tasks
                     (id, seq, status, parent_id, created_at, updated_at, deadline_at, sla_remaining_s, data)
                     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        enc.status,
                        enc.parent_id,
                        enc.created_at,
                        enc.updated_at,
                        enc.deadline_at,
                        enc.sla_remaining_s,
                        enc.data
                    ])
                })
                .map_err(unavailable)?;
            if n == 1 {
                lock_index(&statuses).insert(id, status);
            }
            Ok(n == 1)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
            Ok(query_tasks(c, &sql, params![id])?.into_iter().next())
        })
        .await
    }

    async fn status(&self, id: &str) -> Result<Option<TaskStatus>, StoreError> {
        Ok(lock_index(&self.statuses).get(id).copied())
    }

    async fn compare_and_set(
        &self,
        expected: TaskStatus,
        task: Task,
    ) -> Result<CasOutcome, StoreError> {
        let enc = encode(&task)?;
        let status = task.status;
        let id = task.id;
        let statuses = self.statuses.clone();
        self.with_conn(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE tasks SET status = ?2, parent_id = ?3, created_at = ?4, updated_at = ?5,
                     deadline_at = ?6, sla_remaining_s = ?7, data = ?8
                     WHERE id = ?1 AND status = ?9",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        enc.status,
                        enc.parent_id,
                        enc.created_at,
                        enc.updated_at,
                        enc.deadline_at,
                        enc.sla_remaining_s,
                        enc.data,
                        expected.as_str()
                    ])
                })
                .map_err(unavailable)?;
            if n == 1 {
                lock_index(&statuses).insert(id, status);
                return Ok(CasOutcome::Applied);
            }
            // Still under the connection lock, so the record cannot appear or vanish
            // between the update and this check.
            let exists = c
                .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")
                .and_then(|mut s| s.exists(params![id]))
                .map_err(unavailable)?;
            Ok(if exists {
                CasOutcome::Conflict
            } else {
                CasOutcome::NotFound
            })
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let statuses = self.statuses.clone();
        self.with_conn(move |c| {
            let n = c
                .prepare_cached("DELETE FROM tasks WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map_err(unavailable)?;
            lock_index(&statuses).remove(&id);
            Ok(n == 1)
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        let status = filter.status.map(TaskStatus::as_str);
        let parent = filter.parent_id.clone();
        let limit = to_i64(filter.limit);
        let offset = to_i64(filter.offset);
        self.with_conn(move |c| {
            // `?n IS NULL OR` lets one cached statement serve every filter combination.
            const WHERE: &str =
                "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR parent_id = ?2)";
            let total: i64 = c
                .prepare_cached(&format!("SELECT COUNT(*) FROM tasks {WHERE}"))
                .and_then(|mut s| s.query_row(params![status, parent], |r| r.get(0)))
                .map_err(unavailable)?;
            let sql =
                format!("SELECT {COLUMNS} FROM tasks {WHERE} ORDER BY seq DESC LIMIT ?3 OFFSET ?4");
            let tasks = query_tasks(c, &sql, params![status, parent, limit, offset])?;
            Ok(TaskPage {
                tasks,
                total: usize::try_from(total).unwrap_or(0),
            })
        })
        .await
    }

    async fn children(&self, parent_id: &str) -> Result<Vec<Task>, StoreError> {
        let parent = parent_id.to_owned();
        self.with_conn(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM tasks WHERE parent_id = ?1 ORDER BY seq");
            query_tasks(c, &sql, params![parent])
        })
        .await
    }

    async fn overdue(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Task>, StoreError> {
        let now = {
            let n = now.unix_timestamp_nanos();
            i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
        };
        let limit = to_i64(limit);
        self.with_conn(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks
                 WHERE deadline_at < ?1 AND status IN ('pending', 'running')
                 ORDER BY deadline_at, id LIMIT ?2"
            );
            query_tasks(c, &sql, params![now, limit])
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }
}
