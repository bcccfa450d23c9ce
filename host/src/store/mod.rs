//! Persistence: the only module that speaks Diesel. PostgreSQL is the system of
//! record and the coordination engine between replicas (unique slots, row locks,
//! advisory locks, heartbeats judged by its clock). Diesel is synchronous, so
//! async callers go through [`Db::run`], which moves the work onto tokio's
//! blocking pool and hands the work a [`Tx`]: callers outside this module never
//! see a Diesel type. `store/` persists what the other stages decide; it makes
//! no scheduling decisions of its own.

pub mod alerts;
pub mod asks;
mod clock;
pub mod deps;
pub mod embedded;
pub mod finish;
pub mod health;
pub mod history;
pub mod hooks;
pub mod hosts;
pub mod models;
pub mod pauses;
pub mod plugins;
pub mod pulses;
pub mod queue;
pub mod retention;
pub mod runs;
pub mod schema;
pub mod services;
pub mod signatures;
pub mod stats;
pub mod versions;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::result::DatabaseErrorKind;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use clock::DbClock;

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Key of the advisory lock that serialises migrations between replicas starting at once.
const MIGRATION_LOCK_KEY: i64 = 0x7075_6c73_6568_6f73; // "pulsehos"

/// Longest wait for a pooled connection. While PostgreSQL is unreachable every
/// caller gets [`StoreError::Unavailable`] within this, so the API answers 503
/// within two seconds instead of hanging.
const POOL_WAIT: Duration = Duration::from_millis(1000);

/// Default number of connections kept open to PostgreSQL (`PULSEHOST_DB_POOL_SIZE`).
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had, or the one in use broke (database down,
    /// unreachable or overloaded). Retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A transaction lost a race that retrying resolves (a deadlock, a
    /// serialization failure); the database itself is fine.
    #[error("database conflict, retry: {0}")]
    Conflict(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A value could not be encoded for storage, or a stored one decoded.
    #[error("cannot encode {0}")]
    Encoding(String),
    /// The row asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request contradicts what is stored; the message says what to do.
    #[error("{0}")]
    Refused(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::Error::{BrokenTransactionManager, DatabaseError, RollbackErrorOnCommit};
        const CONFLICT: [&str; 3] = [
            "deadlock detected",
            "could not obtain lock",
            "canceling statement due to",
        ];
        const GONE: [&str; 4] = [
            "terminating connection",
            "the database system is",
            "could not write",
            "No space left",
        ];
        match e {
            DatabaseError(
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction,
                _,
            )
            | BrokenTransactionManager => StoreError::Unavailable(e.to_string()),
            DatabaseError(DatabaseErrorKind::SerializationFailure, _) => StoreError::Conflict(e.to_string()),
            // PostgreSQL reports these without a kind Diesel names.
            DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if CONFLICT.iter().any(|m| info.message().contains(m)) =>
            {
                StoreError::Conflict(e.to_string())
            }
            DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if GONE.iter().any(|m| info.message().contains(m)) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            RollbackErrorOnCommit { commit_error, .. } => StoreError::from(*commit_error),
            other => StoreError::Query(other),
        }
    }
}

impl StoreError {
    /// True for errors that retrying the same work later can cure.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// One database transaction, handed to the work passed to [`Db::run`]. Only
/// `store/` can reach the connection inside.
pub struct Tx<'c> {
    conn: &'c mut PgConnection,
}

impl Tx<'_> {
    fn c(&mut self) -> &mut PgConnection {
        self.conn
    }
}

/// How the pool is sized.
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    /// Connections kept open at most.
    pub pool_size: u32,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
}

/// A pool of connections to one PostgreSQL database, with what the host has
/// learnt about it: whether it answers, and its clock.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<PgConnection>>,
    /// One connection of its own for heartbeats.
    heartbeat: Pool<ConnectionManager<PgConnection>>,
    health: std::sync::Arc<Health>,
    clock: std::sync::Arc<DbClock>,
}

impl Db {
    /// Connects to `url` with default options and applies pending migrations.
    pub fn connect(url: &str) -> StoreResult<Db> {
        Self::connect_with(url, DbOptions::default())
    }

    /// Connects to `url` and applies pending migrations under an advisory lock.
    pub fn connect_with(url: &str, options: DbOptions) -> StoreResult<Db> {
        let pool = Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            .build(ConnectionManager::<PgConnection>::new(url))?;
        let heartbeat = Pool::builder()
            .max_size(1)
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            .build(ConnectionManager::<PgConnection>::new(url))?;
        let db = Db {
            pool,
            heartbeat,
            health: Default::default(),
            clock: Default::default(),
        };
        db.migrate()?;
        db.sync_clock()?;
        Ok(db)
    }

    /// Applies pending migrations; replicas starting together wait on one lock.
    pub fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.get()?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(&mut conn)?;
        applied
    }

    /// Runs `f` in one transaction on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.run_blocking(f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("database worker stopped: {e}")))?
    }

    /// Runs `f` in one transaction on the calling thread.
    pub fn run_blocking<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        Self::transact(&self.pool, &self.health, f)
    }

    /// Runs `f` on the host's own connection for heartbeats, which busy request
    /// handlers cannot starve: a live host is never declared lost because its
    /// pool was full.
    pub async fn run_heartbeat<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || Self::transact(&db.heartbeat, &db.health, f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("database worker stopped: {e}")))?
    }

    fn transact<T>(
        pool: &Pool<ConnectionManager<PgConnection>>,
        health: &Health,
        f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let conn = pool.get();
        // A pool that timed out without a connection error (r2d2 appends the
        // last one it met) was only busy: the database itself answered.
        let busy = matches!(&conn, Err(e) if !e.to_string().contains(": "));
        let outcome = conn
            .map_err(StoreError::from)
            .and_then(|mut conn| conn.transaction(|c| f(&mut Tx { conn: c })));
        match &outcome {
            Err(StoreError::Unavailable(_)) if !busy => health.failed(),
            Err(StoreError::Unavailable(_)) => {}
            _ => health.succeeded(),
        }
        outcome
    }

    /// True when a trivial query succeeds (within the pool's wait).
    pub async fn ping(&self) -> bool {
        self.run(|tx| Ok(diesel::sql_query("SELECT 1").execute(tx.c())?))
            .await
            .is_ok()
    }

    /// Measures the database's clock against this host's (see [`DbClock`]).
    pub fn sync_clock(&self) -> StoreResult<()> {
        let clock = std::sync::Arc::clone(&self.clock);
        self.run_blocking(move |tx| clock::sample(tx, &clock))
    }

    /// The database's clock as this host estimates it (see [`DbClock`]).
    pub fn clock(&self) -> &DbClock {
        &self.clock
    }

    /// How long the database has answered without interruption, as far as this
    /// host has seen since it connected; None while it does not answer.
    pub fn reachable_for(&self) -> Option<Duration> {
        self.health.reachable_for()
    }
}

/// Whether the database answers, from the outcomes of this host's own calls.
/// It counts from when this host first connected: a host that just started
/// knows as little about its peers as one that just reconnected.
struct Health {
    state: Mutex<Option<Instant>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: Mutex::new(Some(Instant::now())),
        }
    }
}

impl Health {
    fn failed(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn succeeded(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
    }

    fn reachable_for(&self) -> Option<Duration> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|since| since.elapsed())
    }
}
