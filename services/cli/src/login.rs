//! `aloft login`: an OIDC authorization-code login with PKCE through the user's browser and a listener on
//! loopback (RFC 8252), so no client secret is needed and the code is useless to anyone who intercepts it.
//! Admin says which issuer and client id to use (GetAuthInfo, answered without credentials).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the CLI waits for the browser to come back.
const WAIT: Duration = Duration::from_secs(300);

#[derive(serde::Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

#[derive(serde::Deserialize)]
struct Tokens {
    access_token: String,
}

fn random(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Logs in at `issuer` as `client_id`; returns the access token. `show` is told the URL to open.
pub async fn authorization_code(
    issuer: &str,
    client_id: &str,
    show: impl Fn(&str),
) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery: Discovery = http
        .get(&discovery_url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{discovery_url}: {e}"))?
        .error_for_status()
        .map_err(|e| anyhow::anyhow!("{discovery_url}: {e}"))?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("{discovery_url}: not a discovery document: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirect_uri = format!("http://{}/callback", listener.local_addr()?);
    let verifier = random(64);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let state = random(24);
    let url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile%20email&code_challenge={challenge}\
         &code_challenge_method=S256&state={state}",
        discovery.authorization_endpoint,
        escape(client_id),
        escape(&redirect_uri),
    );
    show(&url);
    let code = tokio::time::timeout(WAIT, callback(&listener, &state))
        .await
        .map_err(|_| anyhow::anyhow!("no login within {} s; run aloft login again", WAIT.as_secs()))??;
    let response = http
        .post(&discovery.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", client_id),
        ])
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", discovery.token_endpoint))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the issuer refused the login code ({status}): {body}");
    }
    let tokens: Tokens = response.json().await?;
    Ok(tokens.access_token)
}

/// Waits for the browser's redirect to the loopback listener and returns its code (after checking `state`).
async fn callback(listener: &tokio::net::TcpListener, state: &str) -> anyhow::Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0u8; 8192];
        let read = stream.read(&mut buffer).await?;
        let request = String::from_utf8_lossy(&buffer[..read]).to_string();
        let target = request.split_whitespace().nth(1).unwrap_or_default().to_string();
        let Some(query) = target.strip_prefix("/callback?") else {
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
            continue;
        };
        let params: std::collections::HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let (status, page, outcome) = match (params.get("code"), params.get("state"), params.get("error")) {
            (_, _, Some(error)) => (
                "400 Bad Request",
                "Login failed.",
                Err(anyhow::anyhow!("the issuer said: {error}")),
            ),
            (Some(code), Some(got), _) if got == state => (
                "200 OK",
                "Logged in to Aloft; you can close this tab.",
                Ok(code.clone()),
            ),
            _ => (
                "400 Bad Request",
                "Login failed.",
                Err(anyhow::anyhow!(
                    "the login answer did not match this login (state)"
                )),
            ),
        };
        let body = format!("<!doctype html><title>Aloft</title><p>{page}</p>");
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return outcome;
    }
}
