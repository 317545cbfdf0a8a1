//! Email over STARTTLS and implicit TLS with credentials from secret references, against the loopback SMTP
//! server speaking TLS with a certificate from a private CA (trusted through `ca_file`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use aloft_core::notify::{EmailChannel, MessageContext, NotificationRule, SmtpServer, SmtpTls};
use aloft_core::ExecutionId;
use aloft_notifier::channels::{Channels, SendOutcome};
use aloft_notifier::store::PendingDelivery;
use aloft_testkit::{SinkTls, SmtpSink, SmtpSinkOptions};
use tokio_util::sync::CancellationToken;

/// A CA and a certificate it signed for `localhost`, as (CA PEM, server acceptor).
fn private_ca() -> (String, tokio_rustls::TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "aloft test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn delivery(port: u16, tls: SmtpTls, ca_file: Option<String>) -> PendingDelivery {
    let rule = NotificationRule {
        phases: vec!["FAILED".into()],
        slack: None,
        webhook: None,
        email: Some(EmailChannel {
            to: vec!["team@example.com".into()],
            from: "aloft@example.com".into(),
            smtp: SmtpServer {
                host: "localhost".into(),
                port: Some(port),
                tls,
                username: Some("env:ALOFT_TEST_SMTP_USER".into()),
                password: Some("env:ALOFT_TEST_SMTP_PASSWORD".into()),
                ca_file,
            },
            subject: Some("{{name}} {{phase}}".into()),
            body: None,
        }),
    };
    PendingDelivery {
        delivery_id: "d1".into(),
        execution: ExecutionId {
            project: "p".into(),
            domain: "d".into(),
            name: "run-1".into(),
        },
        recipient: "email:team@example.com".into(),
        traceparent: String::new(),
        rule,
        context: MessageContext {
            project: "p".into(),
            domain: "d".into(),
            name: "run-1".into(),
            launch_plan: "-".into(),
            phase: "FAILED".into(),
            error: "boom".into(),
            duration_ms: 10,
            url: "http://console/x".into(),
            finished_at: 0,
        },
        attempts: 0,
    }
}

#[tokio::test]
async fn email_goes_over_starttls_and_implicit_tls_authenticated_and_an_untrusted_server_is_refused() {
    // Process-wide, set once here: the only test in this binary reads them.
    std::env::set_var("ALOFT_TEST_SMTP_USER", "aloft");
    std::env::set_var("ALOFT_TEST_SMTP_PASSWORD", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, acceptor) = private_ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let ca_file = Some(ca_file.display().to_string());
    let shutdown = CancellationToken::new();
    let credentials = Some(("aloft".to_string(), "s3cret".to_string()));

    for (tls, mode) in [
        (SmtpTls::Starttls, SinkTls::Starttls(acceptor.clone())),
        (SmtpTls::Tls, SinkTls::Implicit(acceptor.clone())),
    ] {
        let sink = SmtpSink::start_with(
            shutdown.clone(),
            SmtpSinkOptions {
                tls: Some(mode),
                credentials: credentials.clone(),
            },
        )
        .await
        .unwrap();
        let channels = Channels::new().unwrap();
        let outcome = channels
            .send(&delivery(sink.address.port(), tls, ca_file.clone()))
            .await;
        assert_eq!(outcome, SendOutcome::Delivered, "{tls:?}");
        let mail = sink.received().pop().unwrap();
        assert!(mail.encrypted, "{tls:?}: the message travelled over TLS");
        assert_eq!(
            mail.user.as_deref(),
            Some("aloft"),
            "{tls:?}: authenticated with the secret's user"
        );
        assert_eq!(mail.subject(), "run-1 FAILED");

        // Without the private CA the server's certificate is not trusted: nothing is sent.
        let untrusted = Channels::new()
            .unwrap()
            .send(&delivery(sink.address.port(), tls, None))
            .await;
        assert!(
            matches!(&untrusted, SendOutcome::Transient(reason) | SendOutcome::Permanent(reason)
                if reason.to_lowercase().contains("certificate") || reason.to_lowercase().contains("tls")),
            "{tls:?}: {untrusted:?}"
        );
        assert_eq!(sink.received().len(), 1, "{tls:?}: nothing more arrived");
    }

    // A wrong password is refused by the server, for good.
    std::env::set_var("ALOFT_TEST_SMTP_PASSWORD", "wrong");
    let sink = SmtpSink::start_with(
        shutdown.clone(),
        SmtpSinkOptions {
            tls: Some(SinkTls::Starttls(acceptor)),
            credentials,
        },
    )
    .await
    .unwrap();
    let refused = Channels::new()
        .unwrap()
        .send(&delivery(sink.address.port(), SmtpTls::Starttls, ca_file))
        .await;
    assert!(
        matches!(refused, SendOutcome::Permanent(ref reason) if reason.contains("535")),
        "{refused:?}"
    );
    assert!(sink.received().is_empty());
    shutdown.cancel();
}
