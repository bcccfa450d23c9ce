//! Remote files: fetched from a real HTTP server the test starts, verified,
//! cached by sha256 and placed before the run's first process; a failed
//! download or a wrong hash fails the run as `resources` before anything runs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{component, Server, TestDb};

/// The address the fixture's URLs name.
const ADDRESS: &str = "127.0.0.1:47391";

/// Serves `/tool.sh` and `/data.txt` (404 otherwise); counts the requests.
fn serve_files() -> Arc<AtomicUsize> {
    let listener = TcpListener::bind(ADDRESS).expect("the fixture's port is free");
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let body: Option<&[u8]> = match path.as_str() {
                "/tool.sh" => Some(b"#!/bin/sh\necho tool-ran \"$@\"\n"),
                "/data.txt" => Some(b"some data\n"),
                _ => None,
            };
            let mut stream = &stream;
            let _ = match body {
                Some(b) => write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                )
                .and_then(|_| stream.write_all(b)),
                None => write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    requests
}

#[test]
fn remote_files_are_fetched_verified_cached_and_placed_before_the_first_step() {
    let requests = serve_files();
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&component("fixture-resources"));
    assert_eq!(status, 201, "{body}");

    let run = server.finished_run(server.trigger("fetch-and-run"), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = run["steps"][0]["stdout"].as_str().unwrap();
    assert!(out.contains("tool-ran hello\nsome data\n-r-xr-xr-x"), "{out}");
    let fetched = requests.load(Ordering::SeqCst);
    assert_eq!(fetched, 2, "one request per file");
    let again = server.finished_run(server.trigger("fetch-and-run"), Duration::from_secs(60));
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        fetched,
        "the second run came from the cache"
    );

    for task in ["wrong-hash", "missing"] {
        let failed = server.finished_run(server.trigger(task), Duration::from_secs(60));
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["failure_type"], "resources", "{failed}");
        assert!(
            failed["steps"].as_array().unwrap().is_empty(),
            "nothing ran: {failed}"
        );
        let error = failed["error"].as_str().unwrap();
        let expected = if task == "wrong-hash" {
            "sha256 mismatch"
        } else {
            "404"
        };
        assert!(error.contains(expected) && error.contains("resource"), "{error}");
    }
}
