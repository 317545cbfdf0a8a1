//! One conformance suite for every kind of blob store: a local directory always, a real S3-compatible server
//! when `ALOFT_TEST_S3_ENDPOINT` names one, and Azure's emulator Azurite when `ALOFT_TEST_AZURITE_CONTAINER`
//! names a container in it (`scripts/test.sh` starts moto's server and Azurite on loopback and sets both; with
//! `ALOFT_REQUIRE_REAL_BACKENDS=1` their absence fails instead of skipping).
//!
//! GCS: `object_store` speaks Cloud Storage's XML API, which Google made interoperable with S3's (the same
//! paths, listing and multipart documents), and no GCS emulator installable here serves it whole
//! (gcp-storage-emulator from PyPI has no XML listing, HEAD, DELETE or multipart upload). So the GCS store runs
//! the suite against the same S3 server, through a service-account file that points the client at it
//! (`gcs_base_url`, as `object_store`'s own tests point it at an emulator) with a fresh RSA key: the client
//! signs its bearer tokens (self-signed JWTs) and its V4 signed URLs with it. The server does not check them;
//! its bucket `ALOFT_TEST_GCS_BUCKET` has a policy that lets a signed URL's unauthenticated GET in.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use aloft_blobstore::{BlobError, BlobStore};
use sha2::{Digest, Sha256};

/// Each case runs under its own prefix: cases share a bucket and run in parallel.
fn s3_store(case: &str) -> Option<BlobStore> {
    let Ok(endpoint) = std::env::var("ALOFT_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_S3_ENDPOINT is not set but real backends are required (scripts/test.sh starts moto)"
        );
        eprintln!("skipping the S3 store: ALOFT_TEST_S3_ENDPOINT is not set");
        return None;
    };
    let bucket = std::env::var("ALOFT_TEST_S3_BUCKET").unwrap_or_else(|_| "aloft-test".to_string());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let url = format!("s3://{bucket}/conformance/{run}-{case}?endpoint={endpoint}&region=us-east-1");
    Some(BlobStore::from_url(&url).expect("open the S3 store"))
}

/// A service-account file for the GCS store: a fresh RSA key (the client signs its own bearer tokens and
/// URLs with it, no token exchange), and the S3 server as `gcs_base_url`. Made once per test binary.
fn gcs_service_account(endpoint: &str) -> &'static Path {
    static ACCOUNT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ACCOUNT.get_or_init(|| {
        let key = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("openssl makes the GCS test key");
        assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
        let path = std::env::temp_dir().join(format!("aloft-gcs-account-{}.json", run_id()));
        let account = serde_json::json!({
            "type": "service_account",
            "client_email": "conformance@aloft-test.iam.gserviceaccount.com",
            "private_key_id": "conformance",
            "private_key": String::from_utf8(key.stdout).unwrap(),
            "gcs_base_url": endpoint.trim_end_matches('/'),
        });
        std::fs::write(&path, account.to_string()).unwrap();
        path
    })
}

/// The GCS store over the S3 server's XML API (see the crate doc), under its own prefix of its bucket.
fn gcs_store(case: &str) -> Option<BlobStore> {
    let endpoint = emulator_setting("ALOFT_TEST_S3_ENDPOINT")?;
    let bucket = emulator_setting("ALOFT_TEST_GCS_BUCKET")?;
    let url = format!(
        "gs://{bucket}/conformance-gcs/{}-{case}?service_account={}",
        run_id(),
        gcs_service_account(&endpoint).display()
    );
    Some(BlobStore::from_url(&url).expect("open the GCS store"))
}

/// Azurite's store (`ALOFT_TEST_AZURITE_CONTAINER`: a container that exists there).
fn azure_store(case: &str) -> Option<BlobStore> {
    let container = emulator_setting("ALOFT_TEST_AZURITE_CONTAINER")?;
    let url = format!("az://{container}/conformance/{}-{case}?emulator=true", run_id());
    Some(BlobStore::from_url(&url).expect("open the Azure store"))
}

fn emulator_setting(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "{name} is not set but real backends are required (scripts/test.sh starts the emulators)"
        );
        eprintln!("skipping a store: {name} is not set");
    }
    value
}

fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The stores a case runs against: a fresh local directory, and S3, GCS (over the S3 server) and Azure
/// (Azurite) where they run.
fn stores(case: &str) -> (tempfile::TempDir, Vec<BlobStore>) {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![BlobStore::local(&dir.path().join("store")).unwrap()];
    stores.extend(s3_store(case));
    stores.extend(gcs_store(case));
    stores.extend(azure_store(case));
    (dir, stores)
}

fn sha256_of(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Bytes that differ at every position a part boundary could hide a mistake.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

#[tokio::test]
async fn small_objects_round_trip_and_missing_ones_are_named() {
    let (_dir, stores) = stores("small");
    for store in stores {
        store.check().await.unwrap();
        let uri = store
            .put("a/b/c.txt", bytes::Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(uri, format!("{}/a/b/c.txt", store.root()));
        assert!(store.owns(&uri));
        assert_eq!(&store.get(&uri).await.unwrap()[..], b"hello");
        let missing = format!("{}/a/b/missing", store.root());
        match store.get(&missing).await {
            Err(BlobError::NotFound { uri }) => assert_eq!(uri, missing),
            other => panic!("{}: expected NotFound, got {other:?}", store.root()),
        }
        let foreign = store.get("s3://someone-else/x").await.unwrap_err().to_string();
        assert!(foreign.contains("is not in the blob store"), "{foreign}");
    }
}

/// A file larger than one upload part goes up in parts and comes back byte for byte, with the digest of
/// its bytes.
#[tokio::test]
async fn a_large_file_streams_up_and_down_with_its_digest() {
    let (dir, stores) = stores("large");
    let content = patterned(20 * 1024 * 1024 + 17);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &content).unwrap();
    for (index, store) in stores.into_iter().enumerate() {
        let stored = store.upload(&source, "p/d/e/n/0/out").await.unwrap();
        assert_eq!(stored.size, content.len() as u64, "{}", store.root());
        assert_eq!(stored.digest, sha256_of(&content), "{}", store.root());
        assert_eq!(stored.uri, store.uri_of("p/d/e/n/0/out"));
        let target = dir.path().join(format!("back-{index}.bin"));
        let written = store.download(&stored.uri, &target).await.unwrap();
        assert_eq!(written, content.len() as u64);
        assert!(
            std::fs::read(&target).unwrap() == content,
            "{}: bytes differ",
            store.root()
        );
    }
}

#[tokio::test]
async fn a_directory_round_trips_with_a_digest_of_its_files() {
    let (dir, stores) = stores("directory");
    let source = dir.path().join("tree");
    std::fs::create_dir_all(source.join("sub/deeper")).unwrap();
    std::fs::write(source.join("top.txt"), "top").unwrap();
    std::fs::write(source.join("sub/mid.txt"), "mid").unwrap();
    std::fs::write(source.join("sub/deeper/low.bin"), patterned(1000)).unwrap();
    let mut digests = Vec::new();
    for (index, store) in stores.into_iter().enumerate() {
        let stored = store.upload(&source, "p/d/e/n/0/tree").await.unwrap();
        assert!(stored.uri.ends_with("/tree/"), "{}", stored.uri);
        assert_eq!(stored.size, 1006);
        digests.push(stored.digest.clone());
        let target = dir.path().join(format!("back-{index}"));
        store.download(&stored.uri, &target).await.unwrap();
        assert_eq!(std::fs::read_to_string(target.join("top.txt")).unwrap(), "top");
        assert_eq!(
            std::fs::read_to_string(target.join("sub/mid.txt")).unwrap(),
            "mid"
        );
        assert_eq!(
            std::fs::read(target.join("sub/deeper/low.bin")).unwrap(),
            patterned(1000)
        );
        let missing = format!("{}/p/d/e/n/0/nothing/", store.root());
        assert!(matches!(
            store.download(&missing, &dir.path().join("none")).await,
            Err(BlobError::NotFound { .. })
        ));
    }
    digests.dedup();
    assert_eq!(
        digests.len(),
        1,
        "the same tree has the same digest in every store"
    );
}

#[tokio::test]
async fn listing_and_deleting_a_prefix() {
    let (_dir, stores) = stores("list");
    for store in stores {
        for key in ["x/1", "x/2", "x/y/3", "z/4"] {
            store.put(key, bytes::Bytes::from(key.to_string())).await.unwrap();
        }
        let listed: Vec<String> = store
            .list("x")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, ["x/1", "x/2", "x/y/3"], "{}", store.root());
        assert_eq!(store.delete_prefix("x").await.unwrap(), 3);
        assert!(store.list("x").await.unwrap().is_empty());
        assert_eq!(store.list("z").await.unwrap().len(), 1, "other prefixes stay");
    }
}

/// A log is read from any offset across its chunks, and its size is where the last chunk ends.
#[tokio::test]
async fn log_chunks_read_from_any_offset() {
    let (_dir, stores) = stores("logs");
    for store in stores {
        let prefix = aloft_blobstore::log_prefix("p", "d", "e", "n", 0);
        assert_eq!(store.log_size(&prefix).await.unwrap(), 0);
        assert!(store.read_log(&prefix, 0).await.unwrap().is_empty());
        store
            .put_log_chunk(&prefix, 0, bytes::Bytes::from_static(b"line 1\n"))
            .await
            .unwrap();
        store
            .put_log_chunk(&prefix, 7, bytes::Bytes::from_static(b"line 2\nline 3\n"))
            .await
            .unwrap();
        assert_eq!(store.log_size(&prefix).await.unwrap(), 21);
        let text = |chunks: Vec<aloft_blobstore::LogChunk>| {
            chunks
                .iter()
                .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
                .collect::<String>()
        };
        assert_eq!(
            text(store.read_log(&prefix, 0).await.unwrap()),
            "line 1\nline 2\nline 3\n"
        );
        let from_middle = store.read_log(&prefix, 10).await.unwrap();
        assert_eq!(from_middle[0].offset, 10);
        assert_eq!(text(from_middle), "e 2\nline 3\n");
        assert!(store.read_log(&prefix, 21).await.unwrap().is_empty());
    }
}

#[test]
fn a_local_store_roots_at_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::from_url(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(store.root(), format!("file://{}", dir.path().display()));
    let same = BlobStore::from_url(&format!("file://{}", dir.path().display())).unwrap();
    assert_eq!(same.root(), store.root());
    assert!(Path::new(&dir.path().join("x")).parent().is_some());
}

/// A store that can sign (S3, Azure) hands out a URL that reads the object without credentials; a local one
/// says it cannot; a URI with nothing behind it is NotFound rather than a URL that fails later.
#[tokio::test]
async fn signed_urls_read_without_credentials_where_the_store_signs() {
    let (_dir, stores) = stores("signed");
    for store in stores {
        let uri = store
            .put("p/d/e/n/0/out", bytes::Bytes::from_static(b"signed bytes"))
            .await
            .unwrap();
        let ttl = std::time::Duration::from_secs(60);
        let Some(url) = store.signed_url(&uri, ttl).await.unwrap() else {
            assert!(
                store.root().starts_with("file://"),
                "{} should sign",
                store.root()
            );
            continue;
        };
        let body = reqwest::get(&url).await.unwrap();
        assert!(body.status().is_success(), "{}: {}", store.root(), body.status());
        assert_eq!(&body.bytes().await.unwrap()[..], b"signed bytes");
        let missing = format!("{}/p/d/e/n/0/none", store.root());
        assert!(matches!(
            store.signed_url(&missing, ttl).await,
            Err(BlobError::NotFound { .. })
        ));
    }
}

/// Values too large to travel inline are offloaded (over the inline limit, then the largest while the rest
/// take more than the budget together; never one the engine reads), and resolve back to the same value;
/// a reference whose content does not match its digest is refused as damaged.
#[tokio::test]
async fn large_values_are_offloaded_and_resolve_back() {
    use aloft_blobstore::{encoded_len, ValueLimits, INLINE_VALUES_BUDGET};
    use aloft_core::{LiteralType, Value};
    use std::collections::{BTreeMap, BTreeSet};

    let (_dir, stores) = stores("values");
    let list_type: LiteralType = "list<integer>".parse().unwrap();
    let big = Value::List((0..20_000).map(Value::Integer).collect());
    let medium = Value::String("m".repeat(60_000));
    for store in stores {
        let mut values = BTreeMap::from([
            ("big".to_string(), big.clone()),
            ("read".to_string(), big.clone()),
            ("small".to_string(), Value::Integer(7)),
        ]);
        // Ten values each under the inline limit, together over the budget.
        for index in 0..10 {
            values.insert(format!("m{index}"), medium.clone());
        }
        let mut types: BTreeMap<String, LiteralType> = values
            .keys()
            .map(|name| (name.clone(), LiteralType::String))
            .collect();
        types.insert("big".into(), list_type.clone());
        types.insert("read".into(), list_type.clone());
        types.insert("small".into(), LiteralType::Integer);
        let keep = BTreeSet::from(["read".to_string()]);
        let offloaded = store
            .offload_large(&mut values, &types, &keep, ValueLimits::default(), |name| {
                format!("p/d/e/n/1/{name}.value")
            })
            .await
            .unwrap();
        assert_eq!(offloaded[0], "big", "the largest first");
        assert!(
            !offloaded.contains(&"read".to_string()),
            "a value the engine reads stays inline"
        );
        assert!(!offloaded.contains(&"small".to_string()));
        let inline: usize = values
            .iter()
            .filter(|(name, _)| name.as_str() != "read")
            .map(|(_, value)| encoded_len(value))
            .sum();
        assert!(values["read"] == big, "kept inline, though over the budget alone");
        assert!(inline <= INLINE_VALUES_BUDGET, "{inline}");
        assert!(offloaded.len() >= 2, "some medium values too: {offloaded:?}");
        let Value::Offloaded {
            uri,
            size,
            digest,
            value_type,
        } = values["big"].clone()
        else {
            panic!("big is not offloaded: {:?}", values["big"])
        };
        assert_eq!(uri, format!("{}/p/d/e/n/1/big.value", store.root()));
        assert_eq!(value_type, list_type);
        let text = big.to_text();
        assert_eq!(size, text.len() as u64);
        assert_eq!(digest, sha256_of(text.as_bytes()));
        assert!(
            list_type.check(&values["big"]).is_ok(),
            "a reference checks as its type"
        );
        assert!(LiteralType::String.check(&values["big"]).is_err());
        assert_eq!(store.resolve(&values["big"]).await.unwrap(), big);
        // A list gathering references resolves whole.
        let gathered = Value::List(vec![values["big"].clone(), Value::List(vec![])]);
        assert_eq!(
            store.resolve(&gathered).await.unwrap(),
            Value::List(vec![big.clone(), Value::List(vec![])])
        );
        // Staged into a task's input file, streamed and checked.
        let Value::Offloaded { uri, digest, .. } = &values["big"] else {
            panic!("big is not offloaded")
        };
        let staged = tempfile::tempdir().unwrap();
        let file = staged.path().join("big");
        store.download_offloaded(uri, digest, &file).await.unwrap();
        assert_eq!(
            list_type
                .parse_text(&std::fs::read_to_string(&file).unwrap())
                .unwrap(),
            big
        );
        // Changed behind the reference's back: refused, naming it, and no staged file is left to read.
        store
            .put("p/d/e/n/1/big.value", bytes::Bytes::from_static(b"[1,2,3]"))
            .await
            .unwrap();
        let damaged = store.resolve(&values["big"]).await.unwrap_err().to_string();
        assert!(
            damaged.contains("big.value is damaged") && damaged.contains("sha256:"),
            "{damaged}"
        );
        let refused = store
            .download_offloaded(uri, digest, &file)
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("big.value is damaged"), "{refused}");
        assert!(!file.exists(), "the damaged copy was left for a task to read");
    }
}

/// A project's or domain's own store takes its raw data; URIs of every store of the deployment read through
/// any handle, and one outside them all is still refused.
#[tokio::test]
async fn a_tenant_store_takes_its_raw_data_and_every_store_reads_through_any_handle() {
    let dir = tempfile::tempdir().unwrap();
    let default = BlobStore::local(&dir.path().join("default")).unwrap();
    let project = BlobStore::local(&dir.path().join("project")).unwrap();
    let domain = BlobStore::local(&dir.path().join("domain")).unwrap();
    let stores = default.clone().with_tenant_stores(vec![
        ("genomics".into(), None, project.clone()),
        ("genomics".into(), Some("production".into()), domain.clone()),
    ]);
    assert_eq!(stores.for_tenant("genomics", "production").root(), domain.root());
    assert_eq!(
        stores.for_tenant("genomics", "development").root(),
        project.root()
    );
    assert_eq!(stores.for_tenant("other", "production").root(), default.root());
    assert_eq!(
        stores.for_tenant("genomics", "production").default_store().root(),
        default.root()
    );
    assert_eq!(stores.roots(), [default.root(), project.root(), domain.root()]);

    let written = stores
        .for_tenant("genomics", "production")
        .put(
            "genomics/production/e/n/1/out",
            bytes::Bytes::from_static(b"tenant"),
        )
        .await
        .unwrap();
    assert!(written.starts_with(domain.root()), "{written}");
    // Read through the default handle and through another tenant's.
    for handle in [stores.clone(), stores.for_tenant("other", "x")] {
        assert!(handle.owns(&written));
        assert_eq!(&handle.get(&written).await.unwrap()[..], b"tenant");
        let copy = dir.path().join("copy");
        handle.download(&written, &copy).await.unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"tenant");
    }
    assert!(
        default.get(&written).await.is_err(),
        "a plain store does not route"
    );
    let foreign = stores.get("s3://someone-else/x").await.unwrap_err().to_string();
    assert!(foreign.contains("is not in the blob store"), "{foreign}");
}
