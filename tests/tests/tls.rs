//! TLS on admin's listener: gRPC, REST and the console over TLS with a certificate of the deployment's own
//! CA, and a renewed certificate (of another CA here, so the test can tell) served without a restart.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

/// A CA, and a certificate it signed for 127.0.0.1: (CA PEM, certificate PEM, key PEM).
fn issue(ca_name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Replaces a file as a renewal tool would: written aside, then renamed over it.
fn replace(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_tls_and_picks_up_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_1, cert_1, key_1) = issue("aloft test CA 1");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, &cert_1).unwrap();
    std::fs::write(&key_path, &key_1).unwrap();
    let port = free_port();
    let ops_port = free_port();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let log = std::fs::File::create(dir.path().join("admin.log")).unwrap();
    let mut admin = Command::new(binary("aloft-admin"))
        .env("ALOFT_DATA_DIR", dir.path().join("data"))
        .env("ALOFT_ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("ALOFT_BOOTSTRAP_PROJECT", PROJECT)
        .env("ALOFT_TLS_CERT", &cert_path)
        .env("ALOFT_TLS_KEY", &key_path)
        .env("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
        .env_remove("ALOFT_KAFKA_BROKERS")
        .env_remove("ALOFT_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/api/v1/auth");
    let first = trusting(&ca_1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match first.get(&url).send().await {
            Ok(response) if response.status().is_success() => break,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "admin never answered over TLS: {}",
                    std::fs::read_to_string(dir.path().join("admin.log")).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // The operations endpoints are served through TLS as well.
    let healthz = first
        .get(format!("https://127.0.0.1:{ops_port}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(healthz.status().is_success());
    let plain_ops = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{ops_port}/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain_ops.is_err() || !plain_ops.unwrap().status().is_success());
    // Plain HTTP on a TLS listener gets nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/auth"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // gRPC over TLS, trusting the CA named by ALOFT_CA_CERT.
    let ca_path = dir.path().join("ca-1.pem");
    std::fs::write(&ca_path, &ca_1).unwrap();
    std::env::set_var("ALOFT_CA_CERT", &ca_path);
    let mut client = aloft_cli::client::connect_as(&format!("https://127.0.0.1:{port}"), None)
        .await
        .unwrap();
    let info = client
        .get_auth_info(wire::GetAuthInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!info.enabled);

    // Renewed: a certificate of another CA. New connections get it within seconds; no restart.
    let (ca_2, cert_2, key_2) = issue("aloft test CA 2");
    replace(&key_path, &key_2);
    replace(&cert_path, &cert_2);
    let second = trusting(&ca_2);
    let renewed = Instant::now();
    loop {
        // A fresh client each time: a kept-alive connection would keep the old certificate.
        if trusting(&ca_2)
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            renewed.elapsed() < Duration::from_secs(15),
            "the renewed certificate was not served within 15 s: {}",
            std::fs::read_to_string(dir.path().join("admin.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "the renewed certificate was served {:?} after the files changed",
        renewed.elapsed()
    );
    assert!(second.get(&url).send().await.unwrap().status().is_success());
    assert!(
        trusting(&ca_1).get(&url).send().await.is_err(),
        "the old CA no longer verifies the listener"
    );
    admin.kill().unwrap();
    let _ = admin.wait();
}
