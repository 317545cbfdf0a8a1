//! The loopback HTTP server with scripted answers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::net::{accept_until, now_millis};

/// One request the HTTP sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status the sink answered with.
    pub status: u16,
    pub received_at: i64,
}

#[derive(Default)]
struct HttpScript {
    /// Statuses to answer next, per path, before falling back to `always` or 200.
    next: HashMap<String, VecDeque<u16>>,
    always: HashMap<String, u16>,
    /// `Retry-After` seconds sent with non-2xx answers, per path.
    retry_after: HashMap<String, u64>,
    received: Vec<ReceivedRequest>,
}

/// An HTTP/1.1 server on 127.0.0.1 that records requests and answers as scripted (200 by default).
#[derive(Clone)]
pub struct HttpSink {
    pub address: SocketAddr,
    script: Arc<Mutex<HttpScript>>,
}

impl HttpSink {
    pub async fn start(shutdown: CancellationToken) -> std::io::Result<HttpSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sink = HttpSink {
            address: listener.local_addr()?,
            script: Arc::default(),
        };
        let script = Arc::clone(&sink.script);
        accept_until(listener, shutdown, move |stream| {
            let script = Arc::clone(&script);
            async move {
                let _ = serve_http(stream, script).await;
            }
        });
        Ok(sink)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Answers the next requests to `path` with `statuses`, in order.
    pub fn answer_next(&self, path: &str, statuses: &[u16]) {
        let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        script.next.entry(path.to_string()).or_default().extend(statuses);
    }

    /// Answers every request to `path` with `status` (after any scripted ones).
    pub fn answer_always(&self, path: &str, status: u16) {
        let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        script.always.insert(path.to_string(), status);
    }

    /// Sends `Retry-After: seconds` with every non-2xx answer to `path`.
    pub fn ask_to_retry_after(&self, path: &str, seconds: u64) {
        let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        script.retry_after.insert(path.to_string(), seconds);
    }

    pub fn received(&self, path: &str) -> Vec<ReceivedRequest> {
        let script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        script
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn serve_http(stream: tokio::net::TcpStream, script: Arc<Mutex<HttpScript>>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let (status, retry_after) = {
            let mut script = script.lock().unwrap_or_else(|p| p.into_inner());
            let scripted = script.next.get_mut(&path).and_then(VecDeque::pop_front);
            let status = scripted
                .or_else(|| script.always.get(&path).copied())
                .unwrap_or(200);
            script.received.push(ReceivedRequest {
                path: path.clone(),
                headers: headers.clone(),
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
                received_at: now_millis(),
            });
            let retry_after = script.retry_after.get(&path).copied().filter(|_| status >= 300);
            (status, retry_after)
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let text = format!("status {status}\n");
        let retry_header = retry_after
            .map(|seconds| format!("retry-after: {seconds}\r\n"))
            .unwrap_or_default();
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\n{retry_header}content-length: {}\r\n\r\n{text}",
            text.len()
        );
        writer.write_all(response.as_bytes()).await?;
        if headers.get("connection").map(|v| v.eq_ignore_ascii_case("close")) == Some(true) {
            return Ok(());
        }
    }
}
