//! A throwaway Redis server: `redis-server` on a free loopback port, without persistence
//! (`--save "" --appendonly no`), its working folder a fresh temporary one, killed and removed
//! when dropped (a panicking test included). It can be killed, started again on the same port,
//! and frozen (SIGSTOP) for fault tests.
//!
//! The binary comes from `REDIS_SERVER` or `redis-server` on `PATH` (Debian's `redis-server`
//! package puts it in `/usr/bin`). Without it, [`RedisServer::start`] prints a loud notice and
//! returns `None` (the test skips), unless `MILLPOND_REQUIRE_REDIS=1`, where it panics: CI
//! cannot pass by skipping.

#![allow(clippy::disallowed_types)]

#[allow(unused_imports, reason = "not every test binary waits")]
pub use super::wait_until;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use millpond::redis::RedisManager;
use redis::aio::MultiplexedConnection;

/// A running (or killed, or frozen) throwaway server.
pub struct RedisServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Extra `redis-server` arguments (`--requirepass ...`), kept for restarts.
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

fn required() -> bool {
    super::required("MILLPOND_REQUIRE_REDIS")
}

fn find_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

impl RedisServer {
    /// Starts a fresh server, or returns `None` (after saying so loudly) when `redis-server` is
    /// not installed and `MILLPOND_REQUIRE_REDIS` is not `1`.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra server arguments, such as `["--requirepass", "pw"]`.
    pub fn start_with(args: &[&str]) -> Option<Self> {
        let Some(bin) = find_bin() else {
            assert!(
                !required(),
                "MILLPOND_REQUIRE_REDIS=1 but no redis-server binary was found \
                 (set REDIS_SERVER, or put redis-server on PATH)"
            );
            eprintln!(
                "\n**********************************************************************\n\
                 SKIPPED: no redis-server binary found (REDIS_SERVER, PATH, /usr/bin).\n\
                 Set MILLPOND_REQUIRE_REDIS=1 to make this fail.\n\
                 **********************************************************************\n"
            );
            return None;
        };
        let dir = super::fresh_dir("millpond-redis");
        let server = Self {
            bin,
            dir,
            port: super::free_port(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            child: Mutex::new(None),
        };
        server.start_again();
        Some(server)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database 0, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A manager for this server: database 0, no credentials, the default timeouts.
    pub fn manager(&self) -> RedisManager {
        RedisManager::new(self.url()).expect("a valid URL")
    }

    /// A connection outside any pool, for looking at the server (authenticated with
    /// `password` when the server wants one).
    pub async fn admin_with(&self, password: Option<&str>) -> MultiplexedConnection {
        let url = match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url).expect("a valid URL");
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("admin connection")
    }

    /// [`admin_with`](Self::admin_with) for a server without a password.
    pub async fn admin(&self) -> MultiplexedConnection {
        self.admin_with(None).await
    }

    /// Starts the (killed) server on the same port and waits until it answers `PING`.
    pub fn start_again(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "the server is already running");
        let spawned = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "server.log", "--daemonize", "no"])
            // `DEBUG SLEEP` holds the server for the timeout tests.
            .args(["--enable-debug-command", "local"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("could not run {}: {err}", self.bin.display()));
        *child = Some(spawned);
        drop(child);
        self.wait_until_answering();
    }

    /// Polls until a `PING` gets an answer (`+PONG`, or `-NOAUTH` from a server with a
    /// password): the server has no readiness notification a test could wait for.
    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut reply = [0_u8; 16];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read(&mut reply).is_ok_and(|n| n > 0)
                    && (reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"))
                {
                    return;
                }
            }
            if let Some(child) = self.child.lock().unwrap().as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server exited ({status}); log:\n{}",
                        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not answer within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits until it is gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            self.signal_pid(child.id(), "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal_pid(&self, pid: u32, signal: &str) {
        let _ =
            Command::new("kill").arg(signal).arg(pid.to_string()).stderr(Stdio::null()).status();
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = self.child.lock().unwrap().as_ref() {
            self.signal_pid(child.id(), signal);
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's `INFO` section `section`, as `field:value` lines.
pub async fn info(admin: &mut MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query_async(admin).await.expect("INFO")
}

/// How many times the server has run `command` (lower case, `client|info` for a subcommand),
/// from `INFO commandstats`.
pub async fn calls(admin: &mut MultiplexedConnection, command: &str) -> u64 {
    let stats = info(admin, "commandstats").await;
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Every command the server has run but `INFO` (which the test's own look at the counters
/// runs), from `INFO commandstats`.
pub async fn calls_but_info(admin: &mut MultiplexedConnection) -> u64 {
    let stats = info(admin, "commandstats").await;
    stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
        .filter_map(|line| line.split_once(":calls=")?.1.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// One field of a `CLIENT INFO` or `CLIENT LIST` line (`db`, `flags`, `multi`, `name`, `user`,
/// `resp`, `sub`, `id`).
pub fn client_field<'a>(line: &'a str, field: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}
