//! The OIDC verifier against a real issuer on loopback (discovery, JWKS over HTTP, tokens it signs).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use aloft_auth::oidc::{OidcSettings, OidcVerifier};
use aloft_testkit::oidc::{now_seconds, TestIssuer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn settings(issuer: &TestIssuer) -> OidcSettings {
    serde_yaml::from_str(&format!(
        "{{issuer: \"{}\", audience: aloft, leeway_seconds: 5}}",
        issuer.issuer
    ))
    .unwrap()
}

#[tokio::test]
async fn valid_tokens_pass_and_every_forgery_is_refused_with_its_reason() {
    let shutdown = CancellationToken::new();
    let issuer = TestIssuer::start("aloft", shutdown.clone()).await.unwrap();
    let verifier = OidcVerifier::new(settings(&issuer));
    assert_eq!(verifier.refresh().await.unwrap(), 1);

    let claims = verifier
        .verify(&issuer.token("ada", &["ml", "ops"]))
        .await
        .unwrap();
    assert_eq!(claims.subject, "ada");
    assert_eq!(claims.name, "ada@example.com");
    assert_eq!(claims.groups, vec!["ml", "ops"]);

    let base = issuer.claims("eve");
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = base.clone();
        claims[key] = value;
        claims
    };
    let cases = [
        (issuer.sign(&with("exp", json!(now_seconds() - 60))), "expired"),
        // Within the leeway an expired token still passes; beyond it, not.
        (
            issuer.sign(&with("nbf", json!(now_seconds() + 60))),
            "not valid yet",
        ),
        (
            issuer.sign(&with("iss", json!("http://elsewhere"))),
            "another issuer",
        ),
        (issuer.sign(&with("aud", json!("other"))), "another audience"),
        (issuer.sign_unpublished("key-1", &base).unwrap(), "signature"),
        (issuer.unsigned(&base), "none"),
        (issuer.hmac_with_public_key(&base), "HS256"),
        ("not.a.jwt".to_string(), "not a JWT"),
    ];
    for (token, reason) in cases {
        let error = verifier.verify(&token).await.unwrap_err().to_string();
        assert!(error.contains(reason), "{reason}: {error}");
    }
    let near = verifier
        .verify(&issuer.sign(&with("exp", json!(now_seconds() - 2))))
        .await;
    assert!(near.is_ok(), "2 s past exp is within the 5 s leeway");

    // A token of a key the cache lacks makes the verifier fetch the JWKS again.
    let fetches = issuer.jwks_fetches();
    issuer.rotate().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let rotated = verifier.verify(&issuer.token("bo", &[])).await.unwrap();
    assert_eq!(rotated.subject, "bo");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);
    // An unknown key id right after a fetch does not fetch again (no hammering the issuer).
    let error = verifier
        .verify(&issuer.sign_unpublished("key-404", &base).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("key-404"), "{error}");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);
    shutdown.cancel();
}
