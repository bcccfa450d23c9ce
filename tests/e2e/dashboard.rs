//! The dashboard over real HTTP: sign-in cookie, CSRF on actions, escaping of
//! what steps print, and every page answering for a signed-in reader.

use std::time::Duration;

use crate::operators::history;
use crate::support::{Server, TestDb, ADMIN, READ};

struct Browser {
    agent: ureq::Agent,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(30))
            .build();
        Browser {
            agent,
            base: server.url.clone(),
            cookie: None,
        }
    }

    /// (status, Location header, body).
    fn send(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.set("Cookie", c);
        }
        let result = if method == "POST" {
            req.send_form(form)
        } else {
            req.call()
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let location = response.header("location").unwrap_or_default().to_owned();
        (
            response.status(),
            location,
            response.into_string().unwrap_or_default(),
        )
    }

    fn sign_in(&mut self, token: &str) -> u16 {
        let (status, _, _) = self.send("GET", "/ui/login", &[]);
        assert_eq!(status, 200);
        let mut req = self.agent.post(&format!("{}/ui/login", self.base));
        if let Some(c) = &self.cookie {
            req = req.set("Cookie", c);
        }
        let response = match req.send_form(&[("token", token)]) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("sign in: {e}"),
        };
        if let Some(set) = response.header("set-cookie") {
            assert!(
                set.contains("HttpOnly") && set.contains("SameSite=Strict"),
                "{set}"
            );
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        response.status()
    }

    fn page(&self, path: &str) -> String {
        let (status, location, body) = self.send("GET", path, &[]);
        assert_eq!(status, 200, "GET {path} -> {location}: {body}");
        body
    }
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_owned()
}

#[test]
fn signing_in_needs_a_real_token_and_every_page_answers() {
    let db = TestDb::new();
    let (server, ids) = history(&db);
    let mut browser = Browser::new(&server);
    let (status, location, _) = browser.send("GET", "/", &[]);
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/login"),
        "signed out goes to sign in"
    );
    assert_eq!(browser.sign_in("not-a-token"), 401);
    assert!(browser.cookie.is_none(), "a wrong token gets no session");
    assert_eq!(browser.sign_in(READ), 303);
    for path in [
        "/",
        "/ui/tasks",
        "/ui/runs",
        "/ui/pulses",
        "/ui/plugins",
        &format!("/ui/runs/{}", ids[0].1),
    ] {
        let page = browser.page(path);
        assert!(page.contains("sign out (read)"), "{path}: {page}");
    }
    let tasks = browser.page("/ui/tasks");
    assert!(!tasks.contains("Run now"), "a reader sees no actions");
    let overview = browser.page("/");
    assert!(overview.contains("failures, last 24 h"), "{overview}");
}

#[test]
fn markup_a_step_prints_is_shown_as_text_and_raw_bytes_safely() {
    let db = TestDb::new();
    let (server, ids) = history(&db);
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN);
    let markup = ids[3].1;
    let page = browser.page(&format!("/ui/runs/{markup}"));
    assert!(!page.contains("<script>document.title"), "{page}");
    assert!(page.contains("&lt;script&gt;document.title"), "{page}");
    assert!(page.contains("not UTF-8"), "{page}");
    let (_, _, headers_page) = browser.send("GET", "/ui/runs", &[]);
    assert!(headers_page.contains("markup"));
}

#[test]
fn actions_need_the_admin_session_and_its_csrf_token() {
    let db = TestDb::new();
    let (server, _) = history(&db);
    let boom = server.task_id("boom");
    let path = format!("/ui/tasks/{boom}/run");

    let mut reader = Browser::new(&server);
    reader.sign_in(READ);
    let token = csrf(&reader.page("/ui/tasks"));
    let (status, _, _) = reader.send("POST", &path, &[("csrf", &token)]);
    assert_eq!(status, 403, "a reader cannot act");

    let mut admin = Browser::new(&server);
    admin.sign_in(ADMIN);
    let (status, _, _) = admin.send("POST", &path, &[("csrf", "forged")]);
    assert_eq!(status, 403, "a wrong CSRF token is refused");
    let (status, _, _) = Browser::new(&server).send("POST", &path, &[("csrf", "x")]);
    assert_eq!(status, 303, "signed out is sent to sign in");
    let before = server.get("/v1/runs")["runs"].as_array().unwrap().len();
    let token = csrf(&admin.page("/ui/tasks"));
    let (status, location, _) = admin.send("POST", &path, &[("csrf", &token)]);
    assert_eq!(status, 303);
    assert!(location.starts_with("/ui/runs/"), "{location}");
    assert_eq!(
        server.get("/v1/runs")["runs"].as_array().unwrap().len(),
        before + 1,
        "one run queued"
    );
}

#[test]
fn the_tasks_page_shows_fifty_tasks_at_a_time() {
    let db = TestDb::new();
    let server = Server::start(&db.url);
    let (status, body) = server.push(&crate::support::component("fixture-crowd"));
    assert_eq!(status, 201, "{body}");
    let mut browser = Browser::new(&server);
    browser.sign_in(READ);
    let first = browser.page("/ui/tasks");
    assert_eq!(first.matches("<tr class=\"task\"").count(), 50);
    assert!(
        first.contains("page 1 of 3") && first.contains("tasks?page=1\" id=\"next\""),
        "{first}"
    );
    let last = browser.page("/ui/tasks?page=2");
    assert_eq!(
        last.matches("<tr class=\"task\"").count(),
        1,
        "101 tasks: 50, 50, 1"
    );
}
