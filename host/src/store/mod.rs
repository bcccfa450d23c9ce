//! Persistence: the only module that speaks Diesel. PostgreSQL is the system of
//! record and the coordination engine between replicas (unique slots, row locks,
//! leases). Diesel is synchronous, so async callers go through [`Db::run`], which
//! moves the work onto tokio's blocking pool.

pub mod embedded;
pub mod finish;
pub mod hooks;
pub mod models;
pub mod plugins;
pub mod pulses;
pub mod runs;
pub mod schema;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Key of the advisory lock that serialises migrations between replicas starting at once.
const MIGRATION_LOCK_KEY: i64 = 0x7075_6c73_6568_6f73; // "pulsehos"

/// Connections kept open to PostgreSQL.
const POOL_SIZE: u32 = 16;

/// A database connection from the pool.
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (database down or overloaded).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A value could not be encoded for storage.
    #[error("cannot encode {0}")]
    Encoding(String),
    /// The row asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<PgConnection>>,
}

impl Db {
    /// Connects to `url` and applies pending migrations under an advisory lock.
    pub fn connect(url: &str) -> StoreResult<Db> {
        let manager = ConnectionManager::<PgConnection>::new(url);
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(manager)?;
        let db = Db { pool };
        db.migrate()?;
        Ok(db)
    }

    /// Applies pending migrations; replicas starting together wait on one lock.
    pub fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.conn()?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(&mut conn)?;
        applied
    }

    /// A connection from the pool (blocking).
    pub fn conn(&self) -> StoreResult<Conn> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a connection inside one transaction, on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> StoreResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.conn()?;
            conn.transaction(|c| f(c))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("database worker stopped: {e}")))?
    }

    /// True when a trivial query succeeds.
    pub async fn ping(&self) -> bool {
        self.run(|c| Ok(diesel::sql_query("SELECT 1").execute(c)?))
            .await
            .is_ok()
    }
}
