//! The parts the harness breaks: its own broker (tansu on a SQLite file, so a restart keeps the log), its
//! own Redis, its own Postgres (a cluster in a scratch directory, restarted without touching the machine's),
//! the deployment's Postgres connections, and the propellers' work directory (a small tmpfs it can fill).

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

/// A server process the harness starts, kills and starts again on the same port and files.
struct Server {
    what: &'static str,
    port: u16,
    log: PathBuf,
    command: Box<dyn Fn() -> Command + Send>,
    child: Option<Child>,
}

impl Server {
    fn start(
        what: &'static str,
        port: u16,
        log: PathBuf,
        command: Box<dyn Fn() -> Command + Send>,
    ) -> Server {
        let mut server = Server {
            what,
            port,
            log,
            command,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let child = (self.command)()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.what));
        self.child = Some(child);
        wait_port(self.port, self.what, &self.log);
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    fn stop(&mut self) {
        self.signal(Signal::SIGCONT);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, then the same server again after `down_for`.
    fn kill_and_restart(&mut self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.spawn();
    }

    /// Sends `signal` (a server's own shutdown request), waits for the process to end, and starts it again
    /// after `down_for`.
    fn shut_down_and_restart(&mut self, signal: Signal, down_for: Duration) {
        self.signal(signal);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        std::thread::sleep(down_for);
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Kafka-compatible broker of the harness's own, on a free port, its log in a SQLite file (`broker.db`
/// in `dir`: tansu is run from the file's directory), so a restart keeps every record.
pub struct Broker {
    server: Server,
}

impl Broker {
    pub fn start(binary: PathBuf, dir: &Path) -> Broker {
        let port = free_port();
        let log = dir.join("broker.log");
        let dir = dir.to_path_buf();
        let listener = format!("tcp://127.0.0.1:{port}");
        let command = move || {
            let mut command = Command::new(&binary);
            command
                .args([
                    "broker",
                    "--listener-url",
                    &listener,
                    "--advertised-listener-url",
                    &listener,
                ])
                .args(["--storage-engine", "sqlite://broker.db"])
                .current_dir(&dir);
            command
        };
        Broker {
            server: Server::start("the broker", port, log, Box::new(command)),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// SIGKILL, then a new broker on the same storage.
    pub fn kill_and_restart(&mut self, down_for: Duration) {
        self.server.kill_and_restart(down_for);
    }

    pub fn pause(&self) {
        self.server.signal(Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.server.signal(Signal::SIGCONT);
    }
}

/// A Redis of the harness's own (nothing kept on disk), so killing it touches no other test.
pub struct OwnRedis {
    server: Server,
}

impl OwnRedis {
    /// `None` when no `redis-server` is installed.
    pub fn start(dir: &Path) -> Option<OwnRedis> {
        Command::new("redis-server").arg("--version").output().ok()?;
        let port = free_port();
        let command = move || {
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"]);
            command
        };
        Some(OwnRedis {
            server: Server::start("redis", port, dir.join("redis.log"), Box::new(command)),
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.server.port)
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// SIGKILL, then an empty Redis on the same port.
    pub fn kill_and_restart(&mut self, down_for: Duration) {
        self.server.kill_and_restart(down_for);
    }
}

/// A Postgres cluster of the harness's own (initdb in a scratch directory, on a free port, trust auth), so
/// restarting it touches no other test. Run as the `postgres` user when the harness runs as root (Postgres
/// refuses to run as root).
pub struct OwnPostgres {
    server: Server,
}

impl OwnPostgres {
    /// `None` when no Postgres server binaries are installed (Debian's `/usr/lib/postgresql/N/bin`, or
    /// `initdb` on the `PATH`).
    pub fn start(dir: &Path) -> Option<OwnPostgres> {
        use std::os::unix::process::CommandExt;
        let bin = postgres_bin_dir()?;
        let data = dir.join("postgres");
        std::fs::create_dir_all(&data).ok()?;
        let owner = run_as_postgres_user(&data);
        let as_owner = move |command: &mut Command| {
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_owner(&mut initdb);
        let output = initdb.output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port();
        let postgres = bin.join("postgres");
        let command = move || {
            let mut command = Command::new(&postgres);
            command
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&data)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "max_connections=200"]);
            as_owner(&mut command);
            command
        };
        Some(OwnPostgres {
            server: Server::start("postgres", port, dir.join("postgres.log"), Box::new(command)),
        })
    }

    /// The base URL scratch databases are created from.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.server.port)
    }

    /// A fast shutdown (SIGINT: every session ended, as an operator's restart or a failover does), then
    /// the same cluster again after `down_for`.
    pub fn restart(&mut self, down_for: Duration) {
        self.server.shut_down_and_restart(Signal::SIGINT, down_for);
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    debian.sort();
    if let Some(newest) = debian.pop() {
        return Some(newest);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

/// When running as root: the `postgres` user's (uid, gid), with `data` (and its parent) handed to it.
fn run_as_postgres_user(data: &Path) -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres").ok().flatten()?;
    for dir in [data.parent(), Some(data)].into_iter().flatten() {
        let _ = std::os::unix::fs::chown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()));
    }
    Some((user.uid.as_raw(), user.gid.as_raw()))
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

/// A small tmpfs mounted for a test (a propeller's work directory that can be filled), unmounted when
/// dropped. Mounting needs root, as CI and the dev machine have.
pub struct SmallDisk {
    pub path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`16m`, `256m`) at `path`; `None` when this machine does not allow it.
    pub fn mount(path: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| SmallDisk {
            path: path.to_path_buf(),
        })
    }

    /// Bytes still free on it.
    pub fn free_bytes(&self) -> u64 {
        nix::sys::statvfs::statvfs(&self.path)
            .map(|stats| stats.blocks_available().saturating_mul(stats.fragment_size()))
            .unwrap_or(0)
    }

    /// Writes a file `name` that leaves `leave` bytes free; returns its path.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join(name);
        let mut left = self.free_bytes().saturating_sub(leave);
        let chunk = vec![0u8; 1 << 20];
        if let Ok(mut file) = std::fs::File::create(&filler) {
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if file.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
