//! The control socket: a Unix stream socket that takes one command per line, so scripts, tests,
//! a web page's backend or `socat` can press the button, tap it or ask for the status. Each
//! connection may send up to [`MAX_COMMANDS`] lines (then it is closed: reconnect for more)
//! and is closed after [`IDLE_TIMEOUT`] without one; each command is answered with one line.
//!
//! | line      | event sent                             | answer                |
//! |-----------|----------------------------------------|-----------------------|
//! | `press`   | `Edge { pressed: true, .. }`           | `ok`                  |
//! | `release` | `Edge { pressed: false, .. }`          | `ok`                  |
//! | `tap`     | `Tap`                                  | `ok`                  |
//! | `status`  | `Status`, the supervisor answers       | its line of JSON      |
//! | other     | none                                   | `error: ...`          |
//!
//! Lines are trimmed and blank lines ignored. Who may connect is decided by the file's mode
//! (0660) and group, like any device node: there is no other authentication.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::{InputError, InputEvent};

const SOURCE: &str = "socket";
/// How long a `status` waits for the supervisor's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`send`] waits for an answer: longer than a status may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read its answers is dropped after this long, not waited on forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest line taken; a command is a word, so more is a client speaking something else.
const MAX_LINE: usize = 1024;
/// Connections served at once; more are refused, so a runaway client cannot exhaust threads.
const MAX_CONNECTIONS: usize = 32;
/// Commands taken on one connection: a script presses and releases a few times; a client
/// sending without end is a runaway that must not keep a connection (and the button) forever.
pub const MAX_COMMANDS: usize = 1000;
/// A connection silent this long is closed, so idle clients cannot use up the connections.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A bound control socket, accepting connections on its own thread until dropped. Dropping it
/// stops accepting, closes the open connections and removes the socket file.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    /// Device and inode of the file bound, so that drop removes this socket and never one a
    /// later wick bound at the same path.
    file_id: (u64, u64),
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    /// A handle on each open connection, to shut them down when the socket is dropped.
    connections: Mutex<HashMap<u64, UnixStream>>,
    next_id: AtomicU64,
}

impl ControlSocket {
    /// Binds the control socket at `path`, owned by `group` if given (else the process's group),
    /// mode 0660, and starts accepting connections that send their commands on `tx`.
    ///
    /// A missing parent directory is created (0755). A socket file left behind by a wick that
    /// died is replaced; if a wick answers on it, this fails with [`InputError::SocketInUse`].
    pub fn bind(path: &Path, group: Option<&str>, tx: Sender<InputEvent>) -> Result<ControlSocket, InputError> {
        let io_err = |action| move |source| InputError::Socket { path: path.into(), action, source };
        // Check the group before touching the filesystem: a typo should leave nothing behind.
        let gid = match group {
            Some(name) => Some(
                nix::unistd::Group::from_name(name)
                    .map_err(|source| InputError::SocketGroup {
                        path: path.into(),
                        group: name.into(),
                        action: "look up",
                        source,
                    })?
                    .ok_or_else(|| InputError::SocketGroupUnknown { group: name.into() })?
                    .gid,
            ),
            None => None,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io_err("create the directory of"))?;
            // The umask may have narrowed it; clients of other users must be able to reach the socket.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err("set mode 0755 on the directory of"))?;
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
            // Another wick bound it between the check above and now.
            std::io::ErrorKind::AddrInUse => InputError::SocketInUse { path: path.into() },
            _ => InputError::Socket { path: path.into(), action: "bind", source },
        })?;
        let finish = || -> Result<(u64, u64), InputError> {
            // Set explicitly: the umask would otherwise decide who may press the button.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(io_err("set mode 0660 on"))?;
            if let (Some(gid), Some(name)) = (gid, group) {
                nix::unistd::chown(path, None, Some(gid)).map_err(|source| InputError::SocketGroup {
                    path: path.into(),
                    group: name.into(),
                    action: "give the socket to",
                    source,
                })?;
            }
            let meta = std::fs::metadata(path).map_err(io_err("inspect"))?;
            Ok((meta.dev(), meta.ino()))
        };
        let file_id = match finish() {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wick-socket".into())
                .spawn(move || accept_loop(listener, shared, tx))
                .map_err(|source| {
                    let _ = std::fs::remove_file(path);
                    InputError::Thread { what: "control socket".into(), source }
                })?
        };
        tracing::info!(path = %path.display(), group = group.unwrap_or("(the process's)"), "control socket listening");
        Ok(ControlSocket { path: path.into(), file_id, shared, accept: Some(accept) })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept thread waits in accept(); a connection of our own wakes it to see the flag.
        // If that fails (the file was removed under us), the thread is left waiting: it holds
        // nothing but the listener, and no client can reach it any more.
        let woken = UnixStream::connect(&self.path).is_ok();
        if let Some(accept) = self.accept.take().filter(|_| woken) {
            let _ = accept.join();
        }
        for conn in self.shared.connections.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file_id);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), "cannot remove the control socket: {e}");
            }
        }
    }
}

/// Removes a socket file nobody answers on; fails if a wick answers, or if the path is no socket
/// (never delete what might be someone's file).
fn remove_stale(path: &Path) -> Result<(), InputError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(InputError::Socket { path: path.into(), action: "inspect", source }),
    };
    if !meta.file_type().is_socket() {
        return Err(InputError::SocketNotSocket { path: path.into() });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(InputError::SocketInUse { path: path.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing a stale control socket");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(InputError::Socket { path: path.into(), action: "remove the stale", source: e })
                }
                _ => Ok(()),
            }
        }
        Err(source) => Err(InputError::Socket { path: path.into(), action: "check who listens on", source }),
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, tx: Sender<InputEvent>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: pause instead of spinning on it.
                tracing::error!("control socket: cannot accept a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = start_connection(stream, &shared, &tx) {
            tracing::warn!("control socket: {e}");
        }
    }
}

fn start_connection(mut stream: UnixStream, shared: &Arc<Shared>, tx: &Sender<InputEvent>) -> std::io::Result<()> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut conns = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= MAX_CONNECTIONS {
            let _ = stream.write_all(b"error: too many connections; close one and try again\n");
            return Err(std::io::Error::other(format!("refused a connection: {MAX_CONNECTIONS} are open")));
        }
        conns.insert(id, stream.try_clone()?);
    }
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let tx = tx.clone();
    let conn_shared = shared.clone();
    let spawned = std::thread::Builder::new().name("wick-socket-conn".into()).spawn(move || {
        serve(stream, &tx);
        conn_shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    });
    if spawned.is_err() {
        shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
    spawned.map(|_| ())
}

/// Answers one connection's lines until it closes, fails, or the supervisor is gone.
fn serve(stream: UnixStream, tx: &Sender<InputEvent>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => return tracing::warn!("control socket: {e}"),
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut commands = 0;
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => return tracing::debug!("control socket connection: {e}"),
        }
        if line.len() > MAX_LINE {
            let _ = writer.write_all(format!("error: line longer than {MAX_LINE} bytes\n").as_bytes());
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim();
        if command.is_empty() {
            continue;
        }
        if commands == MAX_COMMANDS {
            let _ = writer.write_all(
                format!("error: {MAX_COMMANDS} commands on one connection; reconnect to send more\n").as_bytes(),
            );
            return;
        }
        commands += 1;
        let (answer, keep_open) = answer(command, tx);
        if writer.write_all(format!("{answer}\n").as_bytes()).is_err() || !keep_open {
            return;
        }
    }
}

/// Carries out one command; returns the answer line and whether the connection stays open.
fn answer(command: &str, tx: &Sender<InputEvent>) -> (String, bool) {
    let event = match command {
        "press" => InputEvent::Edge { pressed: true, at: Instant::now(), source: SOURCE },
        "release" => InputEvent::Edge { pressed: false, at: Instant::now(), source: SOURCE },
        "tap" => InputEvent::Tap { at: Instant::now(), source: SOURCE },
        "status" => return (status(tx), true),
        other => return (format!("error: unknown command {other:?}; use press, release, tap or status"), true),
    };
    match tx.send(event) {
        Ok(()) => ("ok".into(), true),
        Err(_) => ("error: wick is shutting down".into(), false),
    }
}

fn status(tx: &Sender<InputEvent>) -> String {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if tx.send(InputEvent::Status { reply }).is_err() {
        return "error: wick is shutting down".into();
    }
    match answer.recv_timeout(STATUS_TIMEOUT) {
        // One line on the wire, whatever the supervisor wrote.
        Ok(json) => json.trim().replace(['\r', '\n'], " "),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            format!("error: no status from wick within {} s; it may be stuck", STATUS_TIMEOUT.as_secs())
        }
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => "error: wick dropped the status request".into(),
    }
}

/// Sends one command line to the control socket at `path` and returns the answer line without
/// its newline (`ok`, a status JSON, or `error: ...`: an error answer is still `Ok`).
pub fn send(path: &Path, command: &str) -> Result<String, InputError> {
    let command = command.trim();
    if command.contains(['\n', '\r']) {
        return Err(InputError::SocketProtocol {
            path: path.into(),
            message: format!("{command:?} is more than one line; send one command at a time"),
        });
    }
    let io_err = |action| move |source| InputError::Socket { path: path.into(), action, source };
    let mut stream = UnixStream::connect(path).map_err(io_err("connect to"))?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io_err("set a timeout on"))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(io_err("set a timeout on"))?;
    stream.write_all(format!("{command}\n").as_bytes()).map_err(io_err("write to"))?;
    let mut answer = String::new();
    BufReader::new(stream).take(64 * 1024).read_line(&mut answer).map_err(io_err("read the answer from"))?;
    if !answer.ends_with('\n') {
        return Err(InputError::SocketProtocol {
            path: path.into(),
            message: format!("the connection closed before a whole answer came (got {answer:?})"),
        });
    }
    Ok(answer.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_answered_and_sent() {
        let (tx, rx) = crossbeam_channel::unbounded();
        assert_eq!(answer("press", &tx), ("ok".to_string(), true));
        assert!(matches!(rx.try_recv(), Ok(InputEvent::Edge { pressed: true, source: "socket", .. })));
        assert_eq!(answer("tap", &tx), ("ok".to_string(), true));
        assert!(matches!(rx.try_recv(), Ok(InputEvent::Tap { source: "socket", .. })));
        let (text, open) = answer("Press", &tx);
        assert_eq!(text, "error: unknown command \"Press\"; use press, release, tap or status");
        assert!(open && rx.try_recv().is_err());
    }

    #[test]
    fn a_connection_takes_a_bounded_number_of_commands_and_lines() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (mut client, server) = UnixStream::pair().unwrap();
        let served = std::thread::spawn(move || serve(server, &tx));
        let flood: String = "tap\n".repeat(MAX_COMMANDS + 5);
        client.write_all(flood.as_bytes()).unwrap();
        let mut answers = String::new();
        client.read_to_string(&mut answers).unwrap();
        served.join().unwrap();
        let lines: Vec<&str> = answers.lines().collect();
        assert_eq!(lines.len(), MAX_COMMANDS + 1, "then the connection closes");
        assert!(lines[..MAX_COMMANDS].iter().all(|l| *l == "ok"));
        assert!(lines[MAX_COMMANDS].starts_with("error: 1000 commands on one connection"), "{}", lines[MAX_COMMANDS]);
        assert_eq!(rx.try_iter().count(), MAX_COMMANDS, "no command past the limit was carried out");

        let (tx, _rx) = crossbeam_channel::unbounded();
        let (mut client, server) = UnixStream::pair().unwrap();
        let served = std::thread::spawn(move || serve(server, &tx));
        client.write_all(&vec![b'x'; MAX_LINE * 4]).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        served.join().unwrap();
        assert_eq!(answer, format!("error: line longer than {MAX_LINE} bytes\n"));
    }

    #[test]
    fn a_status_nobody_answers_times_out_and_a_gone_supervisor_closes() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let start = Instant::now();
        // Holding the request without answering it: the wait ends at the timeout.
        let holder = std::thread::spawn(move || {
            let held = rx.recv().unwrap();
            std::thread::sleep(STATUS_TIMEOUT + Duration::from_millis(300));
            drop(held);
        });
        let text = status(&tx);
        assert!(text.starts_with("error: no status from wick within 2 s"), "{text}");
        assert!(start.elapsed() >= STATUS_TIMEOUT);
        holder.join().unwrap();
        assert_eq!(answer("press", &tx), ("error: wick is shutting down".to_string(), false));
    }
}
