//! A scratch database for one benchmark run, on the PostgreSQL named by
//! `PULSEHOST_BENCH_DATABASE_URL` (default: the test server), dropped with it.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// A database that lives as long as this value.
pub struct BenchDb {
    admin: PgConnection,
    name: String,
    /// Its connection URL.
    pub url: String,
}

impl BenchDb {
    /// Creates `pulsehost_bench_<label>_<pid>`.
    pub fn create(label: &str) -> BenchDb {
        let admin_url = std::env::var("PULSEHOST_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("pulsehost_bench_{label}_{}", std::process::id());
        let mut admin = PgConnection::establish(&admin_url).expect("bench PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap();
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        BenchDb { admin, name, url }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let _ =
            diesel::sql_query(format!("DROP DATABASE {} WITH (FORCE)", self.name)).execute(&mut self.admin);
    }
}
