//! Bearer tokens per role.

use crate::support::{component, Server, TestDb, ADMIN, PULSE, READ};

#[test]
fn each_role_reaches_only_its_endpoints_and_admin_reaches_all() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let wasm = component("hello");
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("POST", "/v1/plugins", None, 401),
        ("POST", "/v1/plugins", Some("wrong"), 401),
        ("POST", "/v1/plugins", Some(READ), 401),
        ("POST", "/v1/plugins", Some(PULSE), 401),
        ("POST", "/v1/plugins", Some(ADMIN), 201),
        ("POST", "/v1/pulse", None, 401),
        ("POST", "/v1/pulse", Some(READ), 401),
        ("POST", "/v1/pulse", Some(PULSE), 200),
        ("POST", "/v1/pulse", Some(ADMIN), 200),
        ("GET", "/v1/runs", None, 401),
        ("GET", "/v1/runs", Some(PULSE), 401),
        ("GET", "/v1/runs", Some(READ), 200),
        ("GET", "/v1/runs", Some(ADMIN), 200),
        ("GET", "/v1/tasks", Some(READ), 200),
        ("GET", "/v1/plugins", Some(READ), 200),
        ("GET", "/healthz", None, 200),
    ];
    for (method, path, token, expected) in cases {
        let body = (*path == "/v1/plugins" && *method == "POST").then_some(wasm.as_slice());
        let (status, answer) = server.request(method, path, *token, body);
        assert_eq!(status, *expected, "{method} {path} with {token:?}: {answer}");
        if status == 401 {
            assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");
        }
    }
    assert_eq!(db.count("plugins"), 1, "only the admin's upload was stored");
}
