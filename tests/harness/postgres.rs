//! A throwaway PostgreSQL server: `initdb` into a temporary folder, `pg_ctl start` on a free
//! loopback port with its socket in that folder, stopped and removed when dropped (a panicking
//! test included). It can stop, start and freeze (SIGSTOP) the server for fault tests.
//!
//! The binaries come from `PG_BIN`, `pg_config --bindir`, or the newest
//! `/usr/lib/postgresql/*/bin`. The server refuses to run as root, so as root every command runs
//! as the `postgres` user. Without binaries, [`PgServer::start`] prints a loud notice and returns
//! `None` (the test skips), unless `MILLPOND_REQUIRE_PG=1`, where it panics: CI cannot pass by
//! skipping.

#![allow(clippy::disallowed_types)]

#[allow(unused_imports, reason = "not every test binary waits")]
pub use super::wait_until;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use tokio_postgres::Config;

/// A running (or stopped, or frozen) throwaway server.
pub struct PgServer {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    /// Run commands as `postgres` (the tests run as root).
    as_postgres: bool,
}

fn required() -> bool {
    super::required("MILLPOND_REQUIRE_PG")
}

fn find_bin() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file().then(|| dir.to_path_buf());
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return has_initdb(Path::new(&dir));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| has_initdb(Path::new(String::from_utf8_lossy(&out.stdout).trim())));
    if from_pg_config.is_some() {
        return from_pg_config;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, has_initdb(&entry.path().join("bin"))?))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

impl PgServer {
    /// Starts a fresh server, or returns `None` (after saying so loudly) when PostgreSQL is not
    /// installed and `MILLPOND_REQUIRE_PG` is not `1`.
    pub fn start() -> Option<Self> {
        let Some(bin) = find_bin() else {
            assert!(
                !required(),
                "MILLPOND_REQUIRE_PG=1 but no PostgreSQL binaries were found \
                 (set PG_BIN, or put pg_config on PATH)"
            );
            eprintln!(
                "\n**********************************************************************\n\
                 SKIPPED: no PostgreSQL server binaries found (PG_BIN, pg_config, \n\
                 /usr/lib/postgresql/*/bin). Set MILLPOND_REQUIRE_PG=1 to make this fail.\n\
                 **********************************************************************\n"
            );
            return None;
        };
        let root = super::fresh_dir("millpond-pg");
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let server = Self { bin, root, port: super::free_port(), as_postgres };
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&server.root)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown of {} to postgres failed", server.root.display());
        }
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                server.data().as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        server.start_again();
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A command running one of the server's tools, as `postgres` when the tests run as root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let output = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("could not run {tool}: {err}"));
        assert!(
            output.status.success(),
            "{tool} failed: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for the `postgres` database over TCP.
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// The configuration behind [`url`](Self::url), with an application name to find the
    /// test's own sessions in `pg_stat_activity`.
    pub fn config(&self, application_name: &str) -> Config {
        let mut config: Config = self.url().parse().expect("a valid URL");
        config.application_name(application_name);
        config
    }

    /// A connection outside any pool, for looking at the server.
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) =
            self.config("admin").connect(tokio_postgres::NoTls).await.expect("admin connection");
        tokio::spawn(connection);
        client
    }

    /// Starts the (stopped) server on the same port and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=120",
            self.port,
            self.root.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data().as_os_str(),
                "-l".as_ref(),
                self.log().as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
    }

    /// Stops the server: `fast` ends the sessions cleanly, `immediate` kills them.
    pub fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data().as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    /// The server's processes: the postmaster and its children.
    fn processes(&self) -> Vec<u32> {
        let Ok(pid_file) = std::fs::read_to_string(self.data().join("postmaster.pid")) else {
            return Vec::new();
        };
        let Some(postmaster) = pid_file.lines().next().and_then(|line| line.trim().parse().ok())
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // The fields after the parenthesised command name: state, then parent pid.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let parent = after_name.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal(&self, signal: &str) {
        let pids: Vec<String> = self.processes().iter().map(u32::to_string).collect();
        if !pids.is_empty() {
            // A child may have exited since the listing; that is not an error here.
            let _ = Command::new("kill").arg(signal).args(&pids).stderr(Stdio::null()).status();
        }
    }

    /// Freezes every server process (SIGSTOP): connections open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.thaw();
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// When the server last started or finished serving a request on session `pid`: it moves with
/// every request the session serves, so a test can tell whether a checkout sent one.
pub async fn state_change(admin: &tokio_postgres::Client, pid: i32) -> SystemTime {
    admin
        .query_one("SELECT state_change FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .expect("pg_stat_activity")
        .get(0)
}
