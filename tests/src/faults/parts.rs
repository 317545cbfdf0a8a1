//! The parts the harness breaks: its own broker (tansu on a SQLite file, so a restart keeps the log), its
//! own Redis, and the deployment's Postgres connections.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::free_port;

/// The tansu binary with persistent storage: `ALOFT_TEST_TANSU`, else `~/.cargo/bin/tansu`, else `None`.
pub fn tansu_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ALOFT_TEST_TANSU").map(PathBuf::from),
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin/tansu")),
    ];
    candidates.into_iter().flatten().find(|path| path.is_file())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !port_open(port) {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within 30 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, signal: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), signal);
}

/// A Kafka-compatible broker of the harness's own, on a free port, its log in a SQLite file.
pub struct Broker {
    binary: PathBuf,
    pub port: u16,
    /// Its SQLite file is `broker.db` here: tansu is run from the file's directory.
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn start(binary: PathBuf, dir: &Path) -> Broker {
        let mut broker = Broker {
            binary,
            port: free_port(),
            dir: dir.to_path_buf(),
            log: dir.join("broker.log"),
            child: None,
        };
        broker.spawn();
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log file");
        let child = Command::new(&self.binary)
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
            ])
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log file"))
            .stderr(log)
            .spawn()
            .expect("spawn the broker");
        self.child = Some(child);
        wait_port(self.port, "the broker", &self.log);
    }

    /// SIGKILL, then a new broker on the same storage.
    pub fn kill_and_restart(&mut self, down_for: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        std::thread::sleep(down_for);
        self.spawn();
    }

    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child, Signal::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child, Signal::SIGCONT);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            signal(child, Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Redis of the harness's own (nothing kept on disk), so killing it touches no other test.
pub struct OwnRedis {
    pub port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    /// `None` when no `redis-server` is installed.
    pub fn start(dir: &Path) -> Option<OwnRedis> {
        Command::new("redis-server").arg("--version").output().ok()?;
        let mut redis = OwnRedis {
            port: free_port(),
            log: dir.join("redis.log"),
            child: None,
        };
        redis.spawn();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("redis log file");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log file"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        wait_port(self.port, "redis", &self.log);
    }

    /// SIGKILL, then an empty Redis on the same port.
    pub fn kill_and_restart(&mut self, down_for: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        std::thread::sleep(down_for);
        self.spawn();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills every connection to the database of `database_url` (the deployment's own), as a failover or an
/// operator's `pg_terminate_backend` would; returns how many.
pub async fn terminate_database_connections(database_url: &str) -> u64 {
    use sqlx::Row;
    let (base, name) = database_url
        .rsplit_once('/')
        .expect("a database URL names its database");
    let name = name.split('?').next().unwrap_or(name).to_string();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres"))
        .await
        .expect("connect to postgres");
    let row = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .expect("pg_terminate_backend");
    row.try_get::<i64, _>("killed").unwrap_or(0) as u64
}
