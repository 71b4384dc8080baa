//! Integration tests of the push-to-talk input layer: the control socket over a real Unix
//! socket in a temporary directory, its events through the debouncer as the supervisor uses it,
//! and the errors of the GPIO and evdev sources on a machine without that hardware (their
//! event paths need a real or gpio-sim chip and run in the VM test).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use wick::input::{self, ButtonKind, ControlSocket, Debouncer, InputError, InputEvent};

const WAIT: Duration = Duration::from_secs(5);

fn channel() -> (Sender<InputEvent>, Receiver<InputEvent>) {
    crossbeam_channel::unbounded()
}

/// A socket path in a fresh directory that does not exist yet (bind creates it).
fn socket_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/wick/control.sock");
    (dir, path)
}

struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let writer = UnixStream::connect(path).unwrap();
        writer.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Client { writer, reader }
    }

    fn write(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "answer without newline: {line:?}");
        line.trim_end().to_string()
    }
}

fn next(rx: &Receiver<InputEvent>) -> InputEvent {
    rx.recv_timeout(WAIT).expect("an event from the socket")
}

fn edge(event: InputEvent) -> (bool, Instant) {
    match event {
        InputEvent::Edge { pressed, at, source } => {
            assert_eq!(source, "socket");
            (pressed, at)
        }
        other => panic!("expected an edge, got {other:?}"),
    }
}

#[test]
fn press_release_and_tap_arrive_in_order_on_one_connection() {
    let (_dir, path) = socket_path();
    let (tx, rx) = channel();
    let _socket = ControlSocket::bind(&path, None, tx).unwrap();
    let mut client = Client::connect(&path);
    let before = Instant::now();
    client.write("press\nrelease\n");
    assert_eq!(client.line(), "ok");
    assert_eq!(client.line(), "ok");
    // The connection stays open for more lines; blank lines are skipped and lines trimmed.
    client.write("\n   \n  tap \r\n");
    assert_eq!(client.line(), "ok");
    let (p1, t1) = edge(next(&rx));
    let (p2, t2) = edge(next(&rx));
    assert_eq!((p1, p2), (true, false));
    assert!(before <= t1 && t1 <= t2 && t2 <= Instant::now());
    match next(&rx) {
        InputEvent::Tap { source, at } => assert!(source == "socket" && at >= t2),
        other => panic!("expected a tap, got {other:?}"),
    }
    assert!(rx.try_recv().is_err(), "blank lines sent nothing");
}

#[test]
fn status_round_trips_the_supervisors_answer() {
    let (_dir, path) = socket_path();
    let (tx, rx) = channel();
    let _socket = ControlSocket::bind(&path, None, tx).unwrap();
    let supervisor = std::thread::spawn(move || match rx.recv_timeout(WAIT).unwrap() {
        InputEvent::Status { reply } => reply.send(r#"{"state":"idle","turns":3}"#.to_string()).unwrap(),
        other => panic!("expected a status request, got {other:?}"),
    });
    assert_eq!(input::send(&path, "status").unwrap(), r#"{"state":"idle","turns":3}"#);
    supervisor.join().unwrap();
}

#[test]
fn an_unknown_command_is_answered_with_the_commands_there_are() {
    let (_dir, path) = socket_path();
    let (tx, rx) = channel();
    let _socket = ControlSocket::bind(&path, None, tx).unwrap();
    assert_eq!(
        input::send(&path, "jump").unwrap(),
        r#"error: unknown command "jump"; use press, release, tap or status"#
    );
    // The connection survives the error.
    let mut client = Client::connect(&path);
    client.write("jump\npress\n");
    assert!(client.line().starts_with("error: unknown command \"jump\""));
    assert_eq!(client.line(), "ok");
    assert!(edge(next(&rx)).0);
    assert!(rx.try_recv().is_err());
}

#[test]
fn the_socket_is_mode_0660_in_a_created_0755_directory() {
    let (_dir, path) = socket_path();
    let (tx, _rx) = channel();
    let socket = ControlSocket::bind(&path, None, tx).unwrap();
    assert_eq!(socket.path(), path);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    let dir = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o755);
}

#[test]
fn the_socket_can_be_given_to_a_group_and_an_unknown_group_is_named() {
    let (_dir, path) = socket_path();
    let (tx, _rx) = channel();
    let e = ControlSocket::bind(&path, Some("wick-no-such-group"), tx.clone()).unwrap_err();
    assert!(matches!(e, InputError::SocketGroupUnknown { .. }), "{e:?}");
    assert!(e.to_string().contains("\"wick-no-such-group\""), "{e}");
    assert!(!path.exists(), "a bad group leaves no socket behind");

    // A group this process is in: no root needed to give the socket to it.
    let gid = nix::unistd::getegid();
    let group = nix::unistd::Group::from_gid(gid).unwrap().expect("the process's group has a name");
    let _socket = ControlSocket::bind(&path, Some(&group.name), tx).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().gid(), gid.as_raw());
}

#[test]
fn a_second_wick_on_the_same_socket_is_refused() {
    let (_dir, path) = socket_path();
    let (tx, rx) = channel();
    let _first = ControlSocket::bind(&path, None, tx.clone()).unwrap();
    let e = ControlSocket::bind(&path, None, tx).unwrap_err();
    assert!(matches!(e, InputError::SocketInUse { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("another wick is running") && text.contains(&path.display().to_string()), "{text}");
    // The first one still works.
    assert_eq!(input::send(&path, "press").unwrap(), "ok");
    assert!(edge(next(&rx)).0);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let (_dir, path) = socket_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket(), "the dead listener's file remains");
    let (tx, rx) = channel();
    let _socket = ControlSocket::bind(&path, None, tx).unwrap();
    assert_eq!(input::send(&path, "release").unwrap(), "ok");
    assert!(!edge(next(&rx)).0);
}

#[test]
fn a_file_that_is_no_socket_is_left_alone() {
    let (_dir, path) = socket_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "notes").unwrap();
    let (tx, _rx) = channel();
    let e = ControlSocket::bind(&path, None, tx).unwrap_err();
    assert!(matches!(e, InputError::SocketNotSocket { .. }), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "notes");
}

#[test]
fn dropping_the_socket_removes_the_file_and_closes_connections() {
    let (_dir, path) = socket_path();
    let (tx, _rx) = channel();
    let socket = ControlSocket::bind(&path, None, tx).unwrap();
    let mut client = Client::connect(&path);
    client.write("press\n");
    assert_eq!(client.line(), "ok");
    drop(socket);
    assert!(!path.exists(), "the socket file is gone");
    let mut rest = String::new();
    assert_eq!(client.reader.read_to_string(&mut rest).unwrap(), 0, "the open connection was closed");
    let e = input::send(&path, "press").unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()) && text.contains("wick run"), "{text}");
    // The path is free for the next wick.
    let (tx, _rx) = channel();
    let _again = ControlSocket::bind(&path, None, tx).unwrap();
}

#[test]
fn a_bounce_burst_over_the_socket_debounces_to_one_press() {
    let (_dir, path) = socket_path();
    let (tx, rx) = channel();
    let _socket = ControlSocket::bind(&path, None, tx).unwrap();
    let mut client = Client::connect(&path);
    client.write("press\nrelease\npress\nrelease\npress\n");
    for _ in 0..5 {
        assert_eq!(client.line(), "ok");
    }
    let edges: Vec<(bool, Instant)> = (0..5).map(|_| edge(next(&rx))).collect();
    assert_eq!(edges.iter().map(|e| e.0).collect::<Vec<_>>(), [true, false, true, false, true]);

    // The socket keeps the burst's order and stamps each edge no earlier than the one before;
    // how far apart the stamps are depends on the machine's load, so the debouncer is given
    // the burst as a switch makes it, one millisecond apart.
    assert!(edges.windows(2).all(|w| w[0].1 <= w[1].1), "edges stamped out of order");
    let window = Duration::from_millis(input::Settings::default().debounce_ms);
    let mut debouncer = Debouncer::new(window);
    let t0 = edges[0].1;
    let mut accepted: Vec<bool> = edges
        .iter()
        .enumerate()
        .filter_map(|(i, &(pressed, _))| debouncer.edge(pressed, t0 + Duration::from_millis(i as u64)))
        .collect();
    if let Some(deadline) = debouncer.deadline() {
        accepted.extend(debouncer.poll(deadline));
    }
    assert_eq!(accepted, [true]);
    assert!(debouncer.pressed());
}

#[test]
fn the_client_reports_a_socket_nobody_listens_on() {
    let (_dir, path) = socket_path();
    let e = input::send(&path, "status").unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()) && text.contains("connect"), "{text}");
}

/// What the error must say about the chips that exist, whichever machine runs the test.
fn assert_lists_chips(text: &str) {
    let chips = input::list_chips();
    if chips.is_empty() {
        assert!(text.contains("no GPIO chips here"), "{text}");
    } else {
        for chip in chips {
            assert!(text.contains(&chip.path.display().to_string()), "{text}");
        }
    }
}

#[test]
fn a_missing_gpio_chip_is_named_with_the_chips_there_are() {
    let e = input::find_line("wick-test-no-such-chip", "PQ.05").unwrap_err();
    assert!(matches!(e, InputError::GpioChipNotFound { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("\"wick-test-no-such-chip\"") && text.contains("input.gpio_chip"), "{text}");
    assert_lists_chips(&text);

    let cfg = input::Settings {
        button: ButtonKind::Gpio,
        gpio_chip: "/dev/gpiochip-wick-test".into(),
        gpio_line: "5".into(),
        ..Default::default()
    };
    let (tx, _rx) = channel();
    let e = input::spawn_gpio(&cfg, tx).unwrap_err();
    assert!(matches!(e, InputError::GpioChipNotFound { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("\"/dev/gpiochip-wick-test\""), "{text}");
    assert_lists_chips(&text);
}

fn evdev_config(device: &str, key: &str) -> input::Settings {
    input::Settings {
        button: ButtonKind::Evdev,
        evdev_device: device.into(),
        evdev_key: key.into(),
        ..Default::default()
    }
}

#[test]
fn a_missing_input_device_is_named() {
    for device in ["/dev/input/event-wick-test", "wick test button that is not plugged in"] {
        let (tx, _rx) = channel();
        let e = input::spawn_evdev(&evdev_config(device, "KEY_PROG1"), tx).unwrap_err();
        assert!(matches!(e, InputError::EvdevDeviceNotFound { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(&format!("\"{device}\"")) && text.contains("input.evdev_device"), "{text}");
        let devices = input::list_devices();
        if devices.is_empty() {
            assert!(text.contains("no input devices here"), "{text}");
        }
        for d in devices {
            assert!(text.contains(&d.path.display().to_string()), "{text}");
        }
    }
}

#[test]
fn an_unknown_key_name_is_named() {
    let (tx, _rx) = channel();
    let e = input::spawn_evdev(&evdev_config("gpio-keys", "KEY_PUSH_TO_TALK"), tx).unwrap_err();
    assert!(matches!(e, InputError::EvdevUnknownKey { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("\"KEY_PUSH_TO_TALK\"") && text.contains("input.evdev_key"), "{text}");
}

#[test]
fn spawn_button_starts_the_configured_kind() {
    let (tx, _rx) = channel();
    let none = input::Settings { button: ButtonKind::None, ..Default::default() };
    assert!(input::spawn_button(&none, tx.clone()).unwrap().is_none());
    let gpio =
        input::Settings { button: ButtonKind::Gpio, gpio_chip: "wick-test-no-such-chip".into(), ..Default::default() };
    let e = input::spawn_button(&gpio, tx.clone()).unwrap_err();
    assert!(matches!(e, InputError::GpioChipNotFound { .. }), "{e:?}");
    let evdev = evdev_config("wick-test-no-such-device", "BTN_0");
    let e = input::spawn_button(&evdev, tx).unwrap_err();
    assert!(matches!(e, InputError::EvdevDeviceNotFound { .. }), "{e:?}");
}
