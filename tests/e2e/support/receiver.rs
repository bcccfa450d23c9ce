//! A real HTTP receiver of webhook POSTs (alerts), checking signatures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::eventually;

/// The key test servers sign alerts with.
pub const KEY: &str = "alert-signing-key-for-tests";
const LIMIT: Duration = Duration::from_secs(60);

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

/// An HTTP receiver that answers 500 to its first `failures` requests, then 200.
#[derive(Clone)]
pub struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    /// Listens on `port`; the first `failures` requests get a 500.
    pub fn start(port: u16, failures: usize) -> Receiver {
        let listener = eventually(LIMIT, &format!("port {port} to be free"), || {
            TcpListener::bind(("127.0.0.1", port)).ok()
        });
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&got);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let Some(delivery) = read_request(&mut stream) else {
                    continue;
                };
                let status = if n < failures {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                seen.lock().unwrap().push(delivery);
            }
        });
        Receiver { got }
    }

    /// The deliveries of `event` so far.
    pub fn of(&self, event: &str) -> Vec<Delivery> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|d| d.body["event"] == event).cloned().collect()
    }

    /// Waits for `count` deliveries of `event`.
    pub fn wait_for(&self, event: &str, count: usize) -> Vec<Delivery> {
        eventually(LIMIT, &format!("{count} {event} deliveries"), || {
            let got = self.of(event);
            (got.len() >= count).then_some(got)
        })
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Delivery> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let signed_ok = check_signature(&headers, &body);
    let mut body: Value = serde_json::from_slice(&body).ok()?;
    body["_signature_ok"] = json!(signed_ok);
    Some(Delivery { path, headers, body })
}

fn check_signature(headers: &HashMap<String, String>, body: &[u8]) -> bool {
    let (Some(ts), Some(sig)) = (
        headers.get("x-pulsehost-timestamp"),
        headers.get("x-pulsehost-signature"),
    ) else {
        return false;
    };
    let ts: i64 = ts.parse().unwrap_or_default();
    pulsehost::signing::verify(&[KEY.to_string()], ts, body, sig).is_some()
}
