//! The HTTP client behind the client subcommands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};

/// Which token a request needs; the client falls back to the admin token.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// `PULSEHOST_ADMIN_TOKEN`.
    Admin,
    /// `PULSEHOST_PULSE_TOKEN`, else admin.
    Pulse,
    /// `PULSEHOST_READ_TOKEN`, else admin.
    Read,
}

/// Talks to one pulsehost server.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    admin: Option<String>,
    pulse: Option<String>,
    read: Option<String>,
}

impl Client {
    /// From `PULSEHOST_URL` and the token variables. Without an admin token in the
    /// environment, the one `pulsehost serve` generated in its data dir is used.
    pub fn from_env() -> anyhow::Result<Client> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let base = var("PULSEHOST_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let admin = var("PULSEHOST_ADMIN_TOKEN").or_else(|| {
            let dir = PathBuf::from(var("PULSEHOST_DATA_DIR").unwrap_or_else(|| "./.pulsehost".into()));
            std::fs::read_to_string(dir.join("admin-token"))
                .ok()
                .map(|t| t.trim().to_string())
        });
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(300))
            .build();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            admin,
            pulse: var("PULSEHOST_PULSE_TOKEN"),
            read: var("PULSEHOST_READ_TOKEN"),
        })
    }

    /// GET a JSON resource.
    pub fn get(&self, path: &str, need: Need) -> anyhow::Result<serde_json::Value> {
        self.send(self.request("GET", path, need), None)
    }

    /// GET a JSON resource with query parameters (encoded here).
    pub fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
        need: Need,
    ) -> anyhow::Result<serde_json::Value> {
        let request = query
            .iter()
            .fold(self.request("GET", path, need), |r, (k, v)| r.query(k, v));
        self.send(request, None)
    }

    /// GET a JSON answer whatever its status (probes answer 503 with a body).
    pub fn get_any(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        match self.agent.get(&format!("{}{path}", self.base)).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                r.into_json().context("the server's answer is not JSON")
            }
            Err(ureq::Error::Transport(t)) => Err(anyhow!("cannot reach pulsehost at {}: {t}", self.base)),
        }
    }

    /// POST without a body.
    pub fn post(&self, path: &str, need: Need) -> anyhow::Result<serde_json::Value> {
        self.send(self.request("POST", path, need), Some(Vec::new()))
    }

    /// POST a JSON body.
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        need: Need,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.request("POST", path, need)
                .set("Content-Type", "application/json"),
            Some(body.to_string().into_bytes()),
        )
    }

    /// POST a nonce signed with `PULSEHOST_PULSE_SIGNING_KEY` at the current
    /// time, without a token.
    pub fn post_signed(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let key = std::env::var("PULSEHOST_PULSE_SIGNING_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "--sign needs PULSEHOST_PULSE_SIGNING_KEY: one of the server's PULSEHOST_PULSE_SIGNING_KEYS"
                )
            })?;
        let timestamp = chrono::Utc::now().timestamp();
        // A nonce makes two pulses sent within one second two messages (the
        // host ignores a pulse's body).
        let body = format!("{{\"nonce\":\"{:016x}\"}}", rand::random::<u64>()).into_bytes();
        let signature = crate::signing::sign(key.trim().as_bytes(), timestamp, &body);
        let request = self
            .agent
            .request("POST", &format!("{}{path}", self.base))
            .set(crate::signing::TIMESTAMP_HEADER, &timestamp.to_string())
            .set(crate::signing::SIGNATURE_HEADER, &signature);
        self.send(request, Some(body))
    }

    /// DELETE a resource.
    pub fn delete(&self, path: &str, need: Need) -> anyhow::Result<serde_json::Value> {
        self.send(self.request("DELETE", path, need), None)
    }

    /// POST raw bytes.
    pub fn post_bytes(&self, path: &str, body: Vec<u8>, need: Need) -> anyhow::Result<serde_json::Value> {
        self.send(
            self.request("POST", path, need)
                .set("Content-Type", "application/wasm"),
            Some(body),
        )
    }

    fn request(&self, method: &str, path: &str, need: Need) -> ureq::Request {
        let token = match need {
            Need::Admin => self.admin.as_ref(),
            Need::Pulse => self.pulse.as_ref().or(self.admin.as_ref()),
            Need::Read => self.read.as_ref().or(self.admin.as_ref()),
        };
        let request = self.agent.request(method, &format!("{}{path}", self.base));
        match token {
            Some(t) => request.set("Authorization", &format!("Bearer {t}")),
            None => request,
        }
    }

    fn send(&self, request: ureq::Request, body: Option<Vec<u8>>) -> anyhow::Result<serde_json::Value> {
        let response = match body {
            Some(body) => request.send_bytes(&body),
            None => request.call(),
        };
        match response {
            Ok(r) => r.into_json().context("the server's answer is not JSON"),
            Err(ureq::Error::Status(status, r)) => {
                let body: serde_json::Value = r.into_json().unwrap_or_default();
                Err(anyhow!("{}", describe_error(status, &body)))
            }
            Err(ureq::Error::Transport(t)) => Err(anyhow!(
                "cannot reach pulsehost at {}: {t} (is `pulsehost serve` running? set PULSEHOST_URL)",
                self.base
            )),
        }
    }
}

fn describe_error(status: u16, body: &serde_json::Value) -> String {
    let error = &body["error"];
    let mut text = format!(
        "{status} {}: {}",
        error["code"].as_str().unwrap_or("error"),
        error["message"].as_str().unwrap_or("")
    );
    if let Some(problems) = error["problems"].as_array() {
        for p in problems {
            text.push_str(&format!(
                "\n  - {}: {}",
                p["field"].as_str().unwrap_or(""),
                p["message"].as_str().unwrap_or("")
            ));
        }
    }
    text
}
