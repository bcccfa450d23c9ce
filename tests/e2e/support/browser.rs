//! A real headless Chromium, driven over WebDriver through chromedriver (both
//! from Debian's packages, installed by tests/setup.sh).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::{eventually, free_port};

/// chromedriver and one browser session; both end when this is dropped.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: Client,
    runtime: tokio::runtime::Runtime,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium.
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually(Duration::from_secs(30), "chromedriver to take a session", || {
            runtime
                .block_on(
                    ClientBuilder::new(HttpConnector::new())
                        .capabilities(caps.clone())
                        .connect(&url),
                )
                .ok()
        });
        Browser {
            driver,
            client,
            runtime,
        }
    }

    /// Runs one WebDriver future to its end.
    pub fn run<T>(&self, f: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>) -> T {
        self.runtime
            .block_on(f)
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.run(self.client.goto(url));
    }

    /// The current URL's path and query.
    pub fn location(&self) -> String {
        let url = self.run(self.client.current_url());
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits until the current location satisfies `arrived` (a click that
    /// submits a form returns before the next page has loaded); returns it.
    pub fn arrive(&self, what: &str, arrived: impl Fn(&str) -> bool) -> String {
        eventually(Duration::from_secs(30), what, || {
            let here = self.location();
            let loaded = self.run(self.client.execute("return document.readyState", vec![]));
            (arrived(&here) && loaded == "complete").then_some(here)
        })
    }

    /// The text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let element = self.run(self.client.find(Locator::Css(css)));
        self.run(element.text())
    }

    /// The text of the first element matching `css`, None while there is none
    /// (a page reloading itself).
    pub fn try_text(&self, css: &str) -> Option<String> {
        let element = self.runtime.block_on(self.client.find(Locator::Css(css))).ok()?;
        self.runtime.block_on(element.text()).ok()
    }

    /// Texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let elements = self.run(self.client.find_all(Locator::Css(css)));
        elements.iter().map(|e| self.run(e.text())).collect()
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.run(self.client.find(Locator::Css(css)));
        self.run(element.send_keys(text));
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        let element = self.run(self.client.find(Locator::Css(css)));
        self.run(element.click());
    }

    /// The document's title.
    pub fn title(&self) -> String {
        self.run(self.client.title())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
