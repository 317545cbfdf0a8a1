//! OIDC bearer tokens: a JWT is accepted only when signed by a key in the issuer's JWKS (fetched through the
//! issuer's discovery document, cached, and fetched again when a token names a key id the cache lacks),
//! with the configured issuer and audience, within its validity (a small leeway for clock skew), and with
//! a public-key algorithm that matches the key: `none` and HMAC are refused before any key is looked at, so
//! a token "signed" with the issuer's public key as an HMAC secret never reaches a verifier.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// The asymmetric algorithms an issuer may sign with.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Clone, Deserialize)]
pub struct OidcSettings {
    /// The `iss` tokens must carry, and where discovery is (`<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The `aud` tokens must carry (the client id Aloft is registered as).
    pub audience: String,
    /// The claim naming the user's groups (for group bindings).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim shown as the user's name in the audit trail.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// The client id the console and CLI log in with (authorization code + PKCE); defaults to the audience.
    #[serde(default)]
    pub client_id: Option<String>,
}

fn default_groups_claim() -> String {
    "groups".to_string()
}
fn default_name_claim() -> String {
    "email".to_string()
}
fn default_leeway() -> u64 {
    30
}

/// Who a valid token says the caller is.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    pub subject: String,
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0} is not accepted (only RSA, ECDSA and EdDSA signatures are)")]
    Algorithm(String),
    #[error("the token names no key id (kid)")]
    NoKeyId,
    #[error("the issuer has no signing key {0:?}")]
    UnknownKey(String),
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the issuer's keys cannot be fetched: {0}")]
    Jwks(String),
}

struct KeyCache {
    keys: HashMap<String, (Jwk, DecodingKey)>,
    fetched_at: Option<Instant>,
}

/// How long a token that verified is trusted again without checking its signature (never past its `exp`).
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Tokens remembered at most; the memory is cleared when full.
const VERIFIED_MAX: usize = 10_000;

pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Tokens that verified, by the SHA-256 of the token: a caller's next calls skip the signature check.
    verified: std::sync::Mutex<HashMap<[u8; 32], (TokenClaims, Instant)>>,
    /// An unknown key id refreshes the JWKS at most this often, so tokens with made-up key ids cannot
    /// make Aloft hammer the issuer.
    min_refresh: Duration,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> OidcVerifier {
        OidcVerifier {
            settings,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            verified: std::sync::Mutex::new(HashMap::new()),
            min_refresh: Duration::from_secs(5),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Fetches the issuer's keys now (at start, so the first request does not wait, and a wrong issuer URL
    /// is found before serving).
    pub async fn refresh(&self) -> Result<usize, TokenError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&discovery_url).await?;
        let set: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => {
                    keys.insert(kid, (jwk, key));
                }
                Err(error) => tracing::warn!(%kid, %error, "skipping a JWKS key that cannot verify"),
            }
        }
        let count = keys.len();
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(count)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, TokenError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| TokenError::Jwks(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(TokenError::Jwks(format!("GET {url}: HTTP {}", response.status())));
        }
        response
            .json()
            .await
            .map_err(|e| TokenError::Jwks(format!("GET {url}: {e}")))
    }

    async fn key(&self, kid: &str) -> Result<(Jwk, DecodingKey), TokenError> {
        {
            let cache = self.cache.read().await;
            if let Some(found) = cache.keys.get(kid) {
                return Ok(found.clone());
            }
            if cache.fetched_at.is_some_and(|at| at.elapsed() < self.min_refresh) {
                return Err(TokenError::UnknownKey(kid.to_string()));
            }
        }
        // The issuer may have rotated its keys since the last fetch.
        self.refresh().await?;
        let cache = self.cache.read().await;
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKey(kid.to_string()))
    }

    /// The caller `token` names, if it is valid. A token that verified within the last minute (and has not
    /// expired since) is trusted without checking its signature again.
    pub async fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Ok(verified) = self.verified.lock() {
            if let Some((claims, until)) = verified.get(&digest) {
                if Instant::now() < *until {
                    return Ok(claims.clone());
                }
            }
        }
        let (claims, expires_in) = self.verify_signed(token).await?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
            verified.insert(
                digest,
                (claims.clone(), Instant::now() + expires_in.min(VERIFIED_FOR)),
            );
        }
        Ok(claims)
    }

    /// Checks `token` in full: its claims and how long it stays valid.
    async fn verify_signed(&self, token: &str) -> Result<(TokenClaims, Duration), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` (or any name jsonwebtoken does not know) fails to parse as a header.
            jsonwebtoken::errors::ErrorKind::Json(_) => TokenError::Algorithm(unparsed_alg(token)),
            _ => TokenError::Malformed(e.to_string()),
        })?;
        if !ALLOWED.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let (jwk, key) = self.key(&kid).await?;
        if !algorithm_fits_key(header.alg, &jwk) {
            return Err(TokenError::Algorithm(format!(
                "{:?} (key {kid} is not a key of that algorithm)",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_audience(&[self.settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
                .map_err(|e| TokenError::Invalid(describe(&e)))?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .ok_or_else(|| TokenError::Invalid("no sub claim".to_string()))?
            .to_string();
        let name = claims
            .get(&self.settings.name_claim)
            .or_else(|| claims.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or(&subject)
            .to_string();
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let expires_in = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .map(|exp| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                Duration::from_secs(exp.saturating_sub(now).max(0) as u64)
            })
            .unwrap_or_default();
        Ok((
            TokenClaims {
                subject,
                name,
                groups,
            },
            expires_in,
        ))
    }
}

/// The `alg` a header names when jsonwebtoken cannot parse it (for the message).
fn unparsed_alg(token: &str) -> String {
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|h| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_string))
        .unwrap_or_else(|| "(unreadable)".to_string())
}

fn algorithm_fits_key(alg: Algorithm, jwk: &Jwk) -> bool {
    if let Some(declared) = jwk.common.key_algorithm {
        if format!("{declared:?}") != format!("{alg:?}") {
            return false;
        }
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    }
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "it has expired".to_string(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".to_string(),
        ErrorKind::InvalidIssuer => "it was issued by another issuer".to_string(),
        ErrorKind::InvalidAudience => "it is for another audience".to_string(),
        ErrorKind::InvalidSignature => "its signature does not verify".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
        other => format!("{other:?}"),
    }
}
