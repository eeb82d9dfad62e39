//! Starting, stopping and restarting a real nats-server.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Environment variable that points at a `nats-server` binary to use instead
/// of the project's installed copy.
pub const NATS_SERVER_BIN: &str = "NATS_SERVER_BIN";

const INSTALL_HINT: &str = "install the pinned server by running `scripts/install-nats-server` \
     from the repository root, or set NATS_SERVER_BIN to the path of a nats-server binary";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Attempts with a fresh port when an auto-chosen port got taken between
/// probing it and the server binding it.
const PORT_ATTEMPTS: u32 = 5;
/// How much of the log a [`ServerError::NotReady`] carries: the first lines
/// hold errors printed before logging starts (e.g. a bad flag, followed by the
/// usage text), the last ones the most recent log entries.
const LOG_HEAD_LINES: usize = 15;
const LOG_TAIL_LINES: usize = 40;
/// Printed by nats-server once its client listener is up; checked in our own
/// log so that a *different* server that grabbed the port is not mistaken for ours.
const READY_LOG_LINE: &str = "Server is ready";

/// Why a server could not be found, started or controlled.
#[derive(Debug)]
pub enum ServerError {
    /// No `nats-server` binary was found; the message says how to install one.
    NotFound {
        /// What was looked for and where.
        reason: String,
    },
    /// The binary exists but could not be launched.
    Spawn {
        /// The binary that was run.
        binary: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// The server was launched but exited or did not accept clients in time.
    NotReady {
        /// The client port it was asked to listen on.
        port: u16,
        /// What went wrong (exit status or timeout).
        reason: String,
        /// What the server wrote to its log during this start (first and last lines).
        log: String,
    },
    /// Creating files or controlling the process failed.
    Io(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NotFound { reason } => {
                write!(f, "nats-server not found: {reason}; {INSTALL_HINT}")
            }
            ServerError::Spawn { binary, source } => {
                write!(
                    f,
                    "could not run nats-server at {}: {source}",
                    binary.display()
                )?;
                if source.kind() == io::ErrorKind::NotFound {
                    write!(f, "; {INSTALL_HINT}")?;
                }
                Ok(())
            }
            ServerError::NotReady { port, reason, log } => write!(
                f,
                "nats-server on 127.0.0.1:{port} did not become ready: {reason}\n\
                 --- its log ---\n{log}"
            ),
            ServerError::Io(err) => write!(f, "nats-server test harness I/O error: {err}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Spawn { source, .. } => Some(source),
            ServerError::Io(err) => Some(err),
            ServerError::NotFound { .. } | ServerError::NotReady { .. } => None,
        }
    }
}

impl From<io::Error> for ServerError {
    fn from(err: io::Error) -> Self {
        ServerError::Io(err)
    }
}

/// Finds the `nats-server` binary to run.
///
/// Looks, in order, at the `NATS_SERVER_BIN` environment variable (which must
/// then name an existing file), the project's installed copy
/// `<workspace root>/.tools/bin/nats-server`, and `nats-server` on `PATH`.
/// The [`ServerError::NotFound`] message names the install command.
pub fn find_nats_server() -> Result<PathBuf, ServerError> {
    let installed = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .join(".tools")
        .join("bin")
        .join("nats-server");
    find_in(
        std::env::var_os(NATS_SERVER_BIN),
        &installed,
        std::env::var_os("PATH"),
    )
}

/// The lookup behind [`find_nats_server`], with the process-global inputs
/// passed in so tests can exercise it without touching the environment.
fn find_in(
    env_bin: Option<OsString>,
    installed: &Path,
    path_var: Option<OsString>,
) -> Result<PathBuf, ServerError> {
    if let Some(bin) = env_bin.filter(|bin| !bin.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(ServerError::NotFound {
                reason: format!(
                    "{NATS_SERVER_BIN} is set to {}, but no file exists there",
                    bin.display()
                ),
            })
        };
    }
    if is_executable(installed) {
        return Ok(installed.to_path_buf());
    }
    let on_path = path_var
        .as_deref()
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| is_executable(candidate));
    on_path.ok_or_else(|| ServerError::NotFound {
        reason: format!(
            "{NATS_SERVER_BIN} is not set, {} does not exist, and there is no nats-server on PATH",
            installed.display()
        ),
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// A running `nats-server` child process listening on `127.0.0.1`.
///
/// The process is killed (SIGKILL) when this value is dropped, also while a
/// failing test unwinds, and its temporary files are deleted.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store_dir: PathBuf,
    args: Vec<OsString>,
    log_path: PathBuf,
    child: Option<Child>,
    // Declared last so it is removed after the process is gone.
    _temp: TempDir,
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url())
            .field("pid", &self.pid())
            .field("store_dir", &self.store_dir)
            .field("log", &self.log_path)
            .finish()
    }
}

impl NatsServer {
    /// Starts a server with the defaults: free port, JetStream on, fresh store dir.
    pub fn start() -> Result<NatsServer, ServerError> {
        NatsServer::builder().start()
    }

    /// Returns a builder to configure the server before starting it.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (`-sd`); the server creates `jetstream/` in it.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The process id, or `None` after [`kill`](Self::kill) or [`stop`](Self::stop).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive; reaps it if it has exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) => {
                self.child = None;
                false
            }
            // The handle is unusable; treat the process as alive so kill() still tries.
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// Kills the process with SIGKILL and waits for it to exit. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited; nothing left to clean up.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process gracefully with SIGTERM, waiting up to 10 s before
    /// falling back to SIGKILL. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            terminate(child)?;
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    child.kill()?;
                    child.wait()?;
                    break;
                }
                sleep(POLL_INTERVAL);
            }
        }
        self.child = None;
        Ok(())
    }

    /// Stops the server if it is running, then starts it again on the same
    /// port with the same store dir and waits until it accepts clients.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.stop()?;
        self.spawn_and_wait()
    }

    /// Starts the server again after [`kill`](Self::kill) or
    /// [`stop`](Self::stop), on the same port with the same store dir.
    ///
    /// Fails if it is still running.
    pub fn start_again(&mut self) -> Result<(), ServerError> {
        if self.is_running() {
            return Err(ServerError::Io(io::Error::other(format!(
                "nats-server on port {} is still running; call kill() or stop() before start_again()",
                self.port
            ))));
        }
        self.spawn_and_wait()
    }

    /// The server's whole log (all starts), for debugging a failed test.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("<could not read {}: {err}>", self.log_path.display()))
    }

    fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        // The log is appended to across restarts; readiness and errors only
        // look at what this start wrote.
        let log_start = fs::metadata(&self.log_path).map_or(0, |meta| meta.len());
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-l")
            .arg(&self.log_path)
            .stdin(Stdio::null())
            // Errors printed before logging is set up (bad flags or config)
            // would otherwise be lost.
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = command.spawn().map_err(|source| ServerError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);
        match self.wait_ready(log_start) {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.kill();
                Err(ServerError::NotReady {
                    port: self.port,
                    reason,
                    log: excerpt(&read_from(&self.log_path, log_start)),
                })
            }
        }
    }

    fn wait_ready(&mut self, log_start: u64) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err("process handle lost".to_owned());
            };
            match child.try_wait() {
                Ok(Some(status)) => return Err(exited(status)),
                Ok(None) => {}
                Err(err) => return Err(format!("could not check the process: {err}")),
            }
            if read_from(&self.log_path, log_start).contains(READY_LOG_LINE)
                && greets_with_info(self.port)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no INFO greeting on the client port within {READY_TIMEOUT:?}"
                ));
            }
            sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Configures a [`NatsServer`]; get one from [`NatsServer::builder`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    port: Option<u16>,
    store_dir: Option<PathBuf>,
    jetstream: bool,
    args: Vec<OsString>,
    config: Option<String>,
    binary: Option<PathBuf>,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        NatsServerBuilder {
            port: None,
            store_dir: None,
            jetstream: true,
            args: Vec::new(),
            config: None,
            binary: None,
        }
    }
}

impl NatsServerBuilder {
    /// Listens on this port instead of a free one picked automatically.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Uses this JetStream store dir (created if missing) instead of a fresh
    /// temporary one; it is not deleted when the server is dropped.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Enables or disables JetStream (`-js`); enabled by default.
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Adds an extra command-line argument, e.g. `--auth`, `--tls` or `-m`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Writes this configuration to a temporary file and passes it with `-c`.
    ///
    /// Command-line settings made by the harness (address, port, store dir,
    /// log file) take precedence over the file.
    pub fn config_file(mut self, contents: impl Into<String>) -> Self {
        self.config = Some(contents.into());
        self
    }

    /// Runs this binary instead of the one [`find_nats_server`] finds.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts the server and waits (up to 10 s) until it greets clients.
    pub fn start(self) -> Result<NatsServer, ServerError> {
        let binary = match self.binary {
            Some(binary) => binary,
            None => find_nats_server()?,
        };
        let temp = tempfile::Builder::new()
            .prefix("nats-trace-server-")
            .tempdir()?;
        let store_dir = self.store_dir.unwrap_or_else(|| temp.path().join("store"));
        fs::create_dir_all(&store_dir)?;

        let mut args = Vec::new();
        if let Some(config) = self.config {
            let path = temp.path().join("nats-server.conf");
            fs::write(&path, config)?;
            args.extend([OsString::from("-c"), path.into_os_string()]);
        }
        if self.jetstream {
            args.extend(
                [OsStr::new("-js"), OsStr::new("-sd"), store_dir.as_os_str()].map(OsString::from),
            );
        }
        args.extend(self.args);

        let mut server = NatsServer {
            binary,
            port: self.port.unwrap_or(0),
            store_dir,
            args,
            log_path: temp.path().join("nats-server.log"),
            child: None,
            _temp: temp,
        };
        if self.port.is_some() {
            server.spawn_and_wait()?;
            return Ok(server);
        }
        let mut attempt = 1;
        loop {
            server.port = free_port()?;
            match server.spawn_and_wait() {
                Err(err) if attempt < PORT_ATTEMPTS && is_port_taken(&err) => attempt += 1,
                result => return result.map(|()| server),
            }
        }
    }
}

/// Asks the OS for a free loopback port. Another process may take it before
/// the server binds it, hence the retries in [`NatsServerBuilder::start`].
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn is_port_taken(err: &ServerError) -> bool {
    matches!(err, ServerError::NotReady { log, .. } if log.contains("address already in use"))
}

/// Whether a client connecting to the port is greeted with `INFO {...}`,
/// which NATS sends in plain text even when TLS or auth is configured.
fn greets_with_info(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    // INFO is a few hundred bytes; the cap guards against a non-NATS listener.
    match BufReader::new(stream.take(64 * 1024)).read_line(&mut line) {
        Ok(_) => line.starts_with("INFO "),
        Err(_) => false,
    }
}

#[cfg(unix)]
fn terminate(child: &Child) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions. The child has not
    // been reaped yet, so the pid still names our process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn terminate(child: &mut Child) -> io::Result<()> {
    child.kill()
}

fn exited(status: ExitStatus) -> String {
    format!("the process exited early ({status})")
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut text)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&text).into_owned(),
        Err(err) => format!("<could not read {}: {err}>", path.display()),
    }
}

fn excerpt(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= LOG_HEAD_LINES + LOG_TAIL_LINES {
        return lines.join("\n");
    }
    let omitted = lines.len() - LOG_HEAD_LINES - LOG_TAIL_LINES;
    format!(
        "{}\n[... {omitted} lines omitted ...]\n{}",
        lines[..LOG_HEAD_LINES].join("\n"),
        lines[lines.len() - LOG_TAIL_LINES..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    #[test]
    fn env_var_wins_over_installed_and_path() {
        let dir = TempDir::new().unwrap();
        let from_env = executable(dir.path(), "custom-nats");
        let installed = executable(dir.path(), "nats-server");
        let found = find_in(
            Some(from_env.clone().into_os_string()),
            &installed,
            Some(dir.path().as_os_str().to_owned()),
        )
        .unwrap();
        assert_eq!(found, from_env);
    }

    #[test]
    fn env_var_pointing_nowhere_is_an_error_naming_it() {
        let dir = TempDir::new().unwrap();
        let installed = executable(dir.path(), "nats-server");
        let missing = dir.path().join("missing");
        let err = find_in(Some(missing.clone().into_os_string()), &installed, None).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ServerError::NotFound { .. }), "{message}");
        assert!(message.contains("NATS_SERVER_BIN"), "{message}");
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn installed_copy_then_path() {
        let dir = TempDir::new().unwrap();
        let installed = executable(dir.path(), "nats-server");
        assert_eq!(find_in(None, &installed, None).unwrap(), installed);

        let bin_dir = TempDir::new().unwrap();
        let on_path = executable(bin_dir.path(), "nats-server");
        let path_var =
            std::env::join_paths([dir.path().join("empty"), bin_dir.path().to_owned()]).unwrap();
        let absent = dir.path().join("not-installed");
        assert_eq!(
            find_in(Some(OsString::new()), &absent, Some(path_var)).unwrap(),
            on_path
        );
    }

    #[test]
    fn not_found_tells_how_to_install() {
        let dir = TempDir::new().unwrap();
        let err = find_in(
            None,
            &dir.path().join("nats-server"),
            Some(dir.path().into()),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("scripts/install-nats-server"), "{message}");
        assert!(message.contains("NATS_SERVER_BIN"), "{message}");
    }

    #[test]
    fn excerpt_keeps_first_and_last_lines() {
        assert_eq!(excerpt("a\nb\n"), "a\nb");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let short = excerpt(&long);
        assert!(short.starts_with("line 0\n"), "{short}");
        assert!(short.contains("[... 45 lines omitted ...]"), "{short}");
        assert!(short.ends_with("line 99"), "{short}");
    }
}
