//! One conformance suite for the catalog's repository (cache entries, reservations, evictions), run against
//! SQLite (always) and Postgres (when `ALOFT_TEST_DATABASE_URL` is set; required when
//! `ALOFT_REQUIRE_REAL_BACKENDS=1`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use aloft_catalog::store::cache::{self as catalog, CacheEntry, Eviction, Lookup};
use aloft_catalog::store::MIGRATIONS;
use aloft_core::events::Outputs;
use aloft_core::{ExecutionId, Value};
use aloft_store::Store;

type Backend = (Store, Option<tempfile::TempDir>);

async fn sqlite_backend() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    Some((
        Store::connect_with(&url, &[&MIGRATIONS]).await.expect("sqlite"),
        Some(dir),
    ))
}

async fn postgres_backend() -> Option<Backend> {
    let Ok(base) = std::env::var("ALOFT_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_DATABASE_URL is required"
        );
        eprintln!("skipping: ALOFT_TEST_DATABASE_URL is not set");
        return None;
    };
    let url = aloft_store::create_scratch_postgres_database(&base)
        .await
        .expect("scratch database");
    Some((
        Store::connect_with(&url, &[&MIGRATIONS]).await.expect("postgres"),
        None,
    ))
}

const KEY: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn entry(execution: &str, y: i64, created_at: i64) -> CacheEntry {
    let outputs: Outputs = [("y".to_string(), Value::Integer(y))].into_iter().collect();
    CacheEntry {
        key: KEY.to_string(),
        project: "p".into(),
        domain: "d".into(),
        task_name: "double".into(),
        cache_version: "1".into(),
        outputs,
        execution: ExecutionId {
            project: "p".into(),
            domain: "d".into(),
            name: execution.into(),
        },
        node: "double".into(),
        attempt: 1,
        task_version: "1".into(),
        created_at,
    }
}

async fn stored_producer(store: &Store) -> Option<String> {
    catalog::get_entry(store.pool(), KEY)
        .await
        .unwrap()
        .map(|entry| entry.execution.name)
}

macro_rules! catalog_suite {
    ($backend:path) => {
        #[tokio::test]
        async fn one_owner_holds_a_reservation_until_it_expires_or_the_result_is_stored() {
            let Some((store, _dir)) = $backend().await else { return };
            let pool = store.pool();
            let ttl = 1_000;
            let lookup = catalog::get_or_reserve(pool, KEY, Some(("a", ttl)), 10_000).await.unwrap();
            assert!(matches!(lookup, Lookup::Reserved { ref owner, expires_at: 11_000 } if owner == "a"), "{lookup:?}");
            let lookup = catalog::get_or_reserve(pool, KEY, Some(("b", ttl)), 10_500).await.unwrap();
            assert!(matches!(lookup, Lookup::Held { ref owner, .. } if owner == "a"), "{lookup:?}");
            // A heartbeat of the holder extends it.
            let lookup = catalog::get_or_reserve(pool, KEY, Some(("a", ttl)), 10_900).await.unwrap();
            assert!(matches!(lookup, Lookup::Reserved { expires_at: 11_900, .. }), "{lookup:?}");
            // Expired: another owner takes over.
            let lookup = catalog::get_or_reserve(pool, KEY, Some(("b", ttl)), 12_000).await.unwrap();
            assert!(matches!(lookup, Lookup::Reserved { ref owner, .. } if owner == "b"), "{lookup:?}");
            assert_eq!(catalog::get_or_reserve(pool, KEY, None, 12_000).await.unwrap(), Lookup::Miss);
            let mut connection = pool.acquire().await.unwrap();
            assert!(catalog::put_entry(&mut connection, &entry("run-b", 6, 12_100), false).await.unwrap());
            drop(connection);
            assert!(catalog::release_reservation(pool, KEY, "b").await.unwrap());
            let lookup = catalog::get_or_reserve(pool, KEY, Some(("a", ttl)), 12_200).await.unwrap();
            assert!(matches!(lookup, Lookup::Hit(ref e) if e.outputs == entry("x", 6, 0).outputs), "{lookup:?}");
        }

        #[tokio::test]
        async fn the_kept_result_does_not_depend_on_arrival_order() {
            for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
                let Some((store, _dir)) = $backend().await else { return };
                let candidates = [
                    (entry("early", 6, 1_000), false),
                    (entry("late", 6, 2_000), false),
                    (entry("overwrite", 6, 1_500), true),
                ];
                let mut connection = store.pool().acquire().await.unwrap();
                for index in order {
                    let (candidate, overwrite) = &candidates[index];
                    catalog::put_entry(&mut connection, candidate, *overwrite).await.unwrap();
                }
                drop(connection);
                assert_eq!(stored_producer(&store).await.as_deref(), Some("overwrite"), "order {order:?}");
            }
            let Some((store, _dir)) = $backend().await else { return };
            let mut connection = store.pool().acquire().await.unwrap();
            catalog::put_entry(&mut connection, &entry("late", 6, 2_000), false).await.unwrap();
            catalog::put_entry(&mut connection, &entry("early", 6, 1_000), false).await.unwrap();
            drop(connection);
            assert_eq!(stored_producer(&store).await.as_deref(), Some("early"));
        }

        #[tokio::test]
        async fn evictions_remove_older_results_even_those_replayed_after_them() {
            let Some((store, _dir)) = $backend().await else { return };
            let mut connection = store.pool().acquire().await.unwrap();
            catalog::put_entry(&mut connection, &entry("before", 6, 1_000), false).await.unwrap();
            let eviction = Eviction {
                project: "p".into(),
                domain: "d".into(),
                task_name: "double".into(),
                cache_version: String::new(),
                key: String::new(),
                at: 1_500,
            };
            drop(connection);
            assert_eq!(catalog::count_evictable(store.pool(), &eviction).await.unwrap(), 1);
            let mut connection = store.pool().acquire().await.unwrap();
            assert_eq!(catalog::evict(&mut connection, &eviction).await.unwrap(), 1);
            // Applying the same eviction again (the projector after the API) removes nothing more.
            assert_eq!(catalog::evict(&mut connection, &eviction).await.unwrap(), 0);
            // A replay that reads an older result after the eviction does not bring it back.
            assert!(!catalog::put_entry(&mut connection, &entry("replayed", 6, 1_200), false).await.unwrap());
            drop(connection);
            assert_eq!(stored_producer(&store).await, None);
            let mut connection = store.pool().acquire().await.unwrap();
            assert!(catalog::put_entry(&mut connection, &entry("after", 6, 2_000), false).await.unwrap());
            drop(connection);
            assert_eq!(stored_producer(&store).await.as_deref(), Some("after"));
            // Another cache version is not covered by a version-specific eviction.
            let mut other = entry("other-version", 7, 2_500);
            other.key = KEY.replace('a', "b");
            other.cache_version = "2".into();
            let mut connection = store.pool().acquire().await.unwrap();
            let versioned = Eviction { cache_version: "1".into(), at: 3_000, ..eviction.clone() };
            catalog::put_entry(&mut connection, &other, false).await.unwrap();
            assert_eq!(catalog::evict(&mut connection, &versioned).await.unwrap(), 1, "only version 1");
            drop(connection);
            assert!(catalog::get_entry(store.pool(), &other.key).await.unwrap().is_some());
        }

        #[tokio::test]
        async fn racing_owners_get_exactly_one_reservation() {
            let Some((store, _dir)) = $backend().await else { return };
            let mut racers = Vec::new();
            for index in 0..20 {
                let pool = store.pool().clone();
                racers.push(tokio::spawn(async move {
                    catalog::get_or_reserve(&pool, KEY, Some((&format!("owner-{index}"), 60_000)), 1_000)
                        .await
                        .unwrap()
                }));
            }
            let mut reserved = 0;
            for racer in racers {
                if matches!(racer.await.unwrap(), Lookup::Reserved { .. }) {
                    reserved += 1;
                }
            }
            assert_eq!(reserved, 1);
        }

        /// Databases made before the catalog owned its migrations have its tables (made by the shared
        /// migrations) but no record of the catalog's own: taking them must keep every row.
        #[tokio::test]
        async fn an_older_database_takes_the_catalogs_own_migrations_and_keeps_its_rows() {
            let Some((store, _dir)) = $backend().await else { return };
            let mut connection = store.pool().acquire().await.unwrap();
            assert!(catalog::put_entry(&mut connection, &entry("kept", 6, 1_000), false).await.unwrap());
            drop(connection);
            sqlx::query("DELETE FROM catalog_schema_migrations").execute(store.pool()).await.unwrap();
            store.migrate(&MIGRATIONS).await.expect("the catalog's migration runs over existing tables");
            assert_eq!(stored_producer(&store).await.as_deref(), Some("kept"));
            let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM catalog_schema_migrations")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(recorded, MIGRATIONS.steps.len() as i64);
        }

        /// Waiters that poll while the holder stores its result and releases must see the result, never a
        /// free reservation to run the task again with. The window is two statements wide, so many keys race.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiters_polling_while_the_holder_stores_run_nothing_twice() {
            let Some((store, _dir)) = $backend().await else { return };
            for round in 0..60u32 {
                let key = format!("{round:064x}");
                let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut owners = Vec::new();
                for index in 0..6 {
                    let pool = store.pool().clone();
                    let runs = std::sync::Arc::clone(&runs);
                    let key = key.clone();
                    owners.push(tokio::spawn(async move {
                        let owner = format!("owner-{index}");
                        loop {
                            match catalog::get_or_reserve(&pool, &key, Some((&owner, 60_000)), 1_000).await.unwrap() {
                                Lookup::Hit(_) => return,
                                Lookup::Held { .. } => {}
                                Lookup::Reserved { .. } | Lookup::Miss => {
                                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    let mut result = entry(&owner, 42, 1_000);
                                    result.key = key.clone();
                                    let mut connection = pool.acquire().await.unwrap();
                                    catalog::put_entry(&mut connection, &result, false).await.unwrap();
                                    drop(connection);
                                    catalog::release_reservation(&pool, &key, &owner).await.unwrap();
                                    return;
                                }
                            }
                        }
                    }));
                }
                for owner in owners {
                    owner.await.unwrap();
                }
                assert_eq!(
                    runs.load(std::sync::atomic::Ordering::SeqCst),
                    1,
                    "round {round}: the task ran more than once"
                );
            }
        }
    };
}

mod sqlite {
    use super::*;
    catalog_suite!(sqlite_backend);
}

mod postgres {
    use super::*;
    catalog_suite!(postgres_backend);
}

/// Admin and catalog share one database and may start at the same moment.
#[tokio::test]
async fn services_starting_together_migrate_one_postgres_database_once() {
    let Ok(base) = std::env::var("ALOFT_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_DATABASE_URL is required"
        );
        return;
    };
    let url = aloft_store::create_scratch_postgres_database(&base)
        .await
        .unwrap();
    let (first, second, third) = tokio::join!(
        Store::connect_with(&url, &[&MIGRATIONS]),
        Store::connect_with(&url, &[&MIGRATIONS]),
        Store::connect_with(&url, &[&MIGRATIONS])
    );
    for store in [first, second, third] {
        let store = store.unwrap();
        assert!(catalog::get_entry(store.pool(), KEY).await.unwrap().is_none());
    }
}
