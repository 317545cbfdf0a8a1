//! A test OIDC issuer on loopback: it serves a discovery document and a JWKS of ECDSA P-256 keys it
//! generated, and signs tokens (ES256) with them, so the auth tests run the real validation path (discovery,
//! JWKS fetch, key rotation) against a real HTTP peer. It can also make the tokens an attacker would: signed
//! by a key it never published, with `alg: none`, or as an HMAC keyed with its public key.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    /// The uncompressed public point: what an attacker would try as an HMAC secret.
    public_raw: Vec<u8>,
}

fn new_key(kid: &str) -> std::io::Result<SigningKey> {
    let pair = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    let encoding =
        EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).map_err(std::io::Error::other)?;
    let raw = pair.public_key_raw().to_vec();
    // 0x04 || x (32 bytes) || y (32 bytes)
    let (x, y) = raw
        .get(1..)
        .unwrap_or_default()
        .split_at(32.min(raw.len().saturating_sub(1)));
    Ok(SigningKey {
        kid: kid.to_string(),
        encoding,
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }),
        public_raw: raw,
    })
}

struct IssuerState {
    published: Vec<SigningKey>,
    jwks_fetches: u64,
    rotations: u32,
    /// Who `/authorize` logs in (it asks nobody: the test decides), and in which groups.
    login: (String, Vec<String>),
    /// Codes handed out by `/authorize`: code -> (PKCE challenge, redirect URI, subject, groups).
    codes: std::collections::HashMap<String, (String, String, String, Vec<String>)>,
}

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
    redirect_uri: String,
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    state: String,
}

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    code_verifier: String,
    redirect_uri: String,
}

#[derive(Clone)]
pub struct TestIssuer {
    pub address: SocketAddr,
    pub issuer: String,
    pub audience: String,
    state: Arc<Mutex<IssuerState>>,
}

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TestIssuer {
    pub async fn start(audience: &str, shutdown: CancellationToken) -> std::io::Result<TestIssuer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let issuer = TestIssuer {
            address,
            issuer: format!("http://{address}"),
            audience: audience.to_string(),
            state: Arc::new(Mutex::new(IssuerState {
                published: vec![new_key("key-1")?],
                jwks_fetches: 0,
                rotations: 1,
                login: ("console-user".to_string(), Vec::new()),
                codes: Default::default(),
            })),
        };
        let discovery = json!({
            "issuer": issuer.issuer,
            "jwks_uri": format!("{}/jwks", issuer.issuer),
            "authorization_endpoint": format!("{}/authorize", issuer.issuer),
            "token_endpoint": format!("{}/token", issuer.issuer),
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let state = Arc::clone(&issuer.state);
        let authorize_issuer = issuer.clone();
        let token_issuer = issuer.clone();
        let app = axum::Router::new()
            .route(
                "/authorize",
                axum::routing::get(move |query: axum::extract::Query<AuthorizeQuery>| {
                    let issuer = authorize_issuer.clone();
                    async move { issuer.authorize(query.0) }
                }),
            )
            .route(
                "/token",
                axum::routing::post(move |form: axum::extract::Form<TokenForm>| {
                    let issuer = token_issuer.clone();
                    async move { issuer.exchange(form.0) }
                })
                .options(|| async { cors(axum::http::StatusCode::NO_CONTENT, String::new()) }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let discovery = discovery.clone();
                    // Read by the console's script, from another origin.
                    async move { cors(axum::http::StatusCode::OK, discovery.to_string()) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let state = Arc::clone(&state);
                    async move {
                        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                        state.jwks_fetches += 1;
                        let keys: Vec<Value> = state.published.iter().map(|k| k.jwk.clone()).collect();
                        axum::Json(json!({ "keys": keys }))
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Ok(issuer)
    }

    /// Who the next authorization-code login is (the issuer logs them in without asking).
    pub fn set_login(&self, subject: &str, groups: &[&str]) {
        self.lock().login = (
            subject.to_string(),
            groups.iter().map(|g| g.to_string()).collect(),
        );
    }

    /// `/authorize`: logs the configured user in at once and redirects back with a code bound to the PKCE
    /// challenge (S256 only, as OAuth 2.1 requires).
    fn authorize(&self, query: AuthorizeQuery) -> axum::response::Response {
        use axum::response::IntoResponse;
        if query.code_challenge_method != "S256" || query.code_challenge.is_empty() {
            return (axum::http::StatusCode::BAD_REQUEST, "PKCE with S256 is required").into_response();
        }
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        let mut state = self.lock();
        let (subject, groups) = state.login.clone();
        state.codes.insert(
            code.clone(),
            (query.code_challenge, query.redirect_uri.clone(), subject, groups),
        );
        let separator = if query.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!(
            "{}{separator}code={code}&state={}",
            query.redirect_uri,
            form_urlencoded::byte_serialize(query.state.as_bytes()).collect::<String>()
        );
        axum::response::Redirect::to(&location).into_response()
    }

    /// `/token`: a code for tokens, once, when the verifier matches its challenge and the redirect URI is
    /// the one it was issued for.
    fn exchange(&self, form: TokenForm) -> axum::response::Response {
        use sha2::Digest;
        let Some((challenge, redirect_uri, subject, groups)) = self.lock().codes.remove(&form.code) else {
            return cors(
                axum::http::StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant"}).to_string(),
            );
        };
        let computed = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(form.code_verifier.as_bytes()));
        if form.grant_type != "authorization_code"
            || computed != challenge
            || redirect_uri != form.redirect_uri
        {
            return cors(
                axum::http::StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant"}).to_string(),
            );
        }
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let token = self.token(&subject, &groups);
        cors(
            axum::http::StatusCode::OK,
            json!({"access_token": token, "id_token": token, "token_type": "Bearer", "expires_in": 3600})
                .to_string(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IssuerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of a valid token for `subject`, valid for an hour.
    pub fn claims(&self, subject: &str) -> Value {
        let now = now_seconds();
        json!({
            "iss": self.issuer, "aud": self.audience, "sub": subject,
            "email": format!("{subject}@example.com"),
            "iat": now, "nbf": now - 5, "exp": now + 3600,
        })
    }

    /// A valid token of `subject` in `groups`.
    pub fn token(&self, subject: &str, groups: &[&str]) -> String {
        let mut claims = self.claims(subject);
        claims["groups"] = json!(groups);
        self.sign(&claims)
    }

    /// `claims` signed with the newest published key.
    pub fn sign(&self, claims: &Value) -> String {
        let state = self.lock();
        let key = state.published.last().expect("the issuer always has a key");
        sign_with(key, claims)
    }

    /// `claims` signed by a key the issuer never published, under `kid`.
    pub fn sign_unpublished(&self, kid: &str, claims: &Value) -> std::io::Result<String> {
        Ok(sign_with(&new_key(kid)?, claims))
    }

    /// Publishes a new key (keeping the old ones) and returns its id: tokens signed after this use it.
    pub fn rotate(&self) -> std::io::Result<String> {
        let mut state = self.lock();
        state.rotations += 1;
        let kid = format!("key-{}", state.rotations);
        state.published.push(new_key(&kid)?);
        Ok(kid)
    }

    pub fn jwks_fetches(&self) -> u64 {
        self.lock().jwks_fetches
    }

    /// `claims` under `alg: none`, with no signature.
    pub fn unsigned(&self, claims: &Value) -> String {
        let kid = self
            .lock()
            .published
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default();
        let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// `claims` as HS256, keyed with the issuer's public key: the algorithm-confusion attack.
    pub fn hmac_with_public_key(&self, claims: &Value) -> String {
        let state = self.lock();
        let key = state.published.last().expect("the issuer always has a key");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.public_raw))
            .expect("HMAC signing does not fail")
    }
}

/// A JSON answer a page on another origin (the console) may read.
fn cors(status: axum::http::StatusCode, body: String) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .header("access-control-allow-headers", "content-type")
        .header("access-control-allow-methods", "POST, OPTIONS")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

fn sign_with(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .expect("ES256 signing with a generated key does not fail")
}
