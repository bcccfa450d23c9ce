//! One private database per test on the machine's PostgreSQL, dropped when the
//! test ends; databases left by killed test processes are swept on the next start.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use diesel::{Connection, PgConnection, RunQueryDsl};

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();
const PREFIX: &str = "pulsehost_test_";

/// The maintenance database tests create their databases from.
pub fn admin_url() -> String {
    std::env::var("PULSEHOST_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    format!("{base}/{name}")
}

/// A database that exists for one test.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its connection URL.
    pub url: String,
}

impl TestDb {
    /// Creates an empty database (the server under test migrates it).
    pub fn new() -> TestDb {
        let mut admin = PgConnection::establish(&admin_url())
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {}: {e}", admin_url()));
        SWEEP.call_once(|| sweep(&mut admin));
        let name = format!(
            "{PREFIX}{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create test database");
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    /// A direct connection, for assertions on what was stored.
    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to test database")
    }

    /// `SELECT count(*) FROM <table>`.
    pub fn count(&self, table: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Count> = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .load(&mut self.conn())
            .expect("count");
        rows[0].n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&admin_url()) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut admin);
        }
    }
}

/// Drops test databases whose creating process is gone.
fn sweep(admin: &mut PgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let names: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    ))
    .load(admin)
    .unwrap_or_default();
    for Name { datname } in names {
        let pid = datname
            .trim_start_matches(PREFIX)
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)")).execute(admin);
        }
    }
}
