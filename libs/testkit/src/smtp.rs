//! The loopback SMTP server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::net::{accept_until, now_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (after dot-unstuffing).
    pub data: String,
    pub received_at: i64,
    /// The message came over TLS (STARTTLS or implicit).
    pub encrypted: bool,
    /// The user the client authenticated as (AUTH PLAIN), if it did.
    pub user: Option<String>,
}

impl ReceivedMail {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .split("\r\n\r\n")
            .next()?
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_string())
    }

    pub fn subject(&self) -> String {
        self.header("subject").unwrap_or_default()
    }

    /// The body as a reader sees it (quoted-printable decoded when the message says it is).
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        let quoted_printable = self
            .header("content-transfer-encoding")
            .is_some_and(|encoding| encoding.eq_ignore_ascii_case("quoted-printable"));
        if quoted_printable {
            decode_quoted_printable(&raw)
        } else {
            raw
        }
    }
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'=' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                decoded.push(byte);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// How the SMTP sink offers TLS.
#[derive(Clone)]
pub enum SinkTls {
    /// Plain connections that may upgrade with STARTTLS.
    Starttls(tokio_rustls::TlsAcceptor),
    /// TLS from the first byte (SMTPS).
    Implicit(tokio_rustls::TlsAcceptor),
}

/// What the SMTP sink accepts.
#[derive(Clone, Default)]
pub struct SmtpSinkOptions {
    pub tls: Option<SinkTls>,
    /// Require AUTH PLAIN with these credentials before MAIL.
    pub credentials: Option<(String, String)>,
}

/// An SMTP server on 127.0.0.1. Recipients containing `reject` are refused with 550 (a permanent error).
#[derive(Clone)]
pub struct SmtpSink {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpSink {
    pub async fn start(shutdown: CancellationToken) -> std::io::Result<SmtpSink> {
        SmtpSink::start_with(shutdown, SmtpSinkOptions::default()).await
    }

    pub async fn start_with(
        shutdown: CancellationToken,
        options: SmtpSinkOptions,
    ) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sink = SmtpSink {
            address: listener.local_addr()?,
            received: Arc::default(),
        };
        let received = Arc::clone(&sink.received);
        accept_until(listener, shutdown, move |stream| {
            let (received, options) = (Arc::clone(&received), options.clone());
            async move {
                let _ = serve_connection(stream, received, options).await;
            }
        });
        Ok(sink)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A rule emailing `to` through this server (plain SMTP) when an execution FAILS.
    pub fn failure_email_rule(
        &self,
        to: &str,
        subject: Option<&str>,
    ) -> aloft_core::notify::NotificationRule {
        use aloft_core::notify::{EmailChannel, NotificationRule, SmtpServer, SmtpTls};
        NotificationRule {
            phases: vec!["FAILED".into()],
            slack: None,
            email: Some(EmailChannel {
                to: vec![to.to_string()],
                from: "aloft@example.com".into(),
                smtp: SmtpServer {
                    host: "127.0.0.1".into(),
                    port: Some(self.address.port()),
                    tls: SmtpTls::None,
                    username: None,
                    password: None,
                    ca_file: None,
                },
                subject: subject.map(str::to_string),
                body: None,
            }),
            webhook: None,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    options: SmtpSinkOptions,
) -> std::io::Result<()> {
    let credentials = options.credentials.clone();
    match options.tls {
        Some(SinkTls::Implicit(acceptor)) => {
            let stream = acceptor.accept(stream).await?;
            serve_smtp(stream, &received, &credentials, Session::encrypted()).await?;
        }
        Some(SinkTls::Starttls(acceptor)) => {
            if let Some(plain) = serve_smtp(stream, &received, &credentials, Session::plain(true)).await? {
                let stream = acceptor.accept(plain).await?;
                serve_smtp(stream, &received, &credentials, Session::upgraded()).await?;
            }
        }
        None => {
            serve_smtp(stream, &received, &credentials, Session::plain(false)).await?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Session {
    greet: bool,
    encrypted: bool,
    offer_starttls: bool,
}

impl Session {
    fn plain(offer_starttls: bool) -> Session {
        Session {
            greet: true,
            encrypted: false,
            offer_starttls,
        }
    }

    fn encrypted() -> Session {
        Session {
            greet: true,
            encrypted: true,
            offer_starttls: false,
        }
    }

    fn upgraded() -> Session {
        Session {
            greet: false,
            encrypted: true,
            offer_starttls: false,
        }
    }
}

/// Serves SMTP on `stream`; returns the stream when the client asked for STARTTLS (to be upgraded).
async fn serve_smtp<S>(
    stream: S,
    received: &Mutex<Vec<ReceivedMail>>,
    credentials: &Option<(String, String)>,
    session: Session,
) -> std::io::Result<Option<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    if session.greet {
        stream.write_all(b"220 aloft-sink ESMTP ready\r\n").await?;
    }
    let (mut from, mut to) = (String::new(), Vec::<String>::new());
    let mut user: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: Vec<u8> = match verb.as_str() {
            "EHLO" => {
                let mut reply = "250-aloft-sink\r\n250-8BITMIME\r\n".to_string();
                if session.offer_starttls && !session.encrypted {
                    reply.push_str("250-STARTTLS\r\n");
                }
                if credentials.is_some() {
                    reply.push_str("250-AUTH PLAIN\r\n");
                }
                reply.push_str("250 SMTPUTF8\r\n");
                reply.into_bytes()
            }
            "STARTTLS" if session.offer_starttls && !session.encrypted => {
                stream.write_all(b"220 ready to start TLS\r\n").await?;
                stream.flush().await?;
                return Ok(Some(stream.into_inner()));
            }
            "AUTH" => match (credentials, plain_credentials(&command)) {
                (Some(expected), Some(given)) if *expected == given => {
                    user = Some(given.0);
                    b"235 2.7.0 authenticated\r\n".to_vec()
                }
                _ => b"535 5.7.8 authentication failed\r\n".to_vec(),
            },
            "HELO" | "NOOP" => b"250 OK\r\n".to_vec(),
            "MAIL" if credentials.is_some() && user.is_none() => {
                b"530 5.7.0 authentication required\r\n".to_vec()
            }
            "MAIL" => {
                from = angle_address(&command);
                to.clear();
                b"250 OK\r\n".to_vec()
            }
            "RCPT" => {
                let address = angle_address(&command);
                if address.contains("reject") {
                    b"550 5.1.1 no such mailbox\r\n".to_vec()
                } else {
                    to.push(address);
                    b"250 OK\r\n".to_vec()
                }
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n".to_vec()
            }
            "DATA" => {
                if to.is_empty() {
                    stream.write_all(b"554 no valid recipients\r\n").await?;
                    continue;
                }
                stream.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                stream.flush().await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await? == 0 {
                        return Ok(None);
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                received
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(ReceivedMail {
                        from: from.clone(),
                        to: std::mem::take(&mut to),
                        data,
                        received_at: now_millis(),
                        encrypted: session.encrypted,
                        user: user.clone(),
                    });
                b"250 OK queued\r\n".to_vec()
            }
            "QUIT" => {
                stream.write_all(b"221 bye\r\n").await?;
                stream.flush().await?;
                return Ok(None);
            }
            _ => b"502 command not implemented\r\n".to_vec(),
        };
        stream.write_all(&reply).await?;
        stream.flush().await?;
    }
}

/// `AUTH PLAIN <base64(authzid NUL user NUL password)>`.
fn plain_credentials(command: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = command.split_whitespace().nth(2)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let mut parts = decoded.split(|byte| *byte == 0).skip(1);
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((user, password))
}

fn angle_address(command: &str) -> String {
    match (command.find('<'), command.find('>')) {
        (Some(start), Some(end)) if end > start => command[start + 1..end].to_string(),
        _ => command.split(':').nth(1).unwrap_or("").trim().to_string(),
    }
}
