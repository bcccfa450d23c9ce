//! The embedded default database: no DATABASE_URL, a private PostgreSQL under
//! the data dir on a Unix socket, stopped with the host.

use std::time::Duration;

use crate::support::{component, Server};

#[test]
fn without_database_url_the_host_runs_its_own_postgres_and_stops_it_on_exit() {
    let mut server = Server::start_with(None, &[]);
    let (status, body) = server.push(&component("fixture-ticker"));
    assert_eq!(status, 201, "{body}");
    let run = server.finished_run(server.trigger("manual-echo"), Duration::from_secs(30));
    assert_eq!(run["status"], "succeeded", "{run}");
    let pid_file = server.data_path().join("postgres/data/postmaster.pid");
    assert!(pid_file.exists(), "the cluster lives under the data dir");
    assert!(server.stop().success(), "{}", server.log());
    assert!(
        !pid_file.exists(),
        "the cluster is stopped with the host:\n{}",
        server.log()
    );
}
