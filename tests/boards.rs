//! The files a device boots with agree with each other and with wick: each board's
//! `wick.toml` is a valid config whose button and sound devices are the ones its `board.toml`
//! and `asound.conf` describe, and the systemd unit, sysusers and tmpfiles entries give wick
//! what it needs and nothing more. (The VM test boots the twin with them for real.)

mod common;

use std::path::{Path, PathBuf};

use wick::config::Config;
use wick::input::ButtonKind;

fn boards() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(common::repo_root().join("board"))
        .expect("board/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("board.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn table<'a>(t: &'a toml::Table, key: &str, file: &Path) -> &'a toml::Table {
    t.get(key).and_then(|v| v.as_table()).unwrap_or_else(|| panic!("{}: no [{key}] table", file.display()))
}

fn text<'a>(t: &'a toml::Table, key: &str, file: &Path) -> &'a str {
    t.get(key).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{}: no string `{key}`", file.display()))
}

#[test]
fn both_boards_exist() {
    let names: Vec<String> = boards().iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
    assert_eq!(names, ["jetson-orin-nx-devkit", "qemu-amd64"]);
}

#[test]
fn each_boards_wick_toml_matches_its_board_toml_and_asound_conf() {
    for dir in boards() {
        let board_file = dir.join("board.toml");
        let board: toml::Table = toml::from_str(&read(&board_file)).unwrap();
        let config = Config::from_file(&dir.join("wick.toml")).unwrap_or_else(|e| panic!("{e}"));
        let asound = read(&dir.join("asound.conf"));

        let name = text(table(&board, "board", &board_file), "name", &board_file);
        assert_eq!(name, dir.file_name().unwrap().to_string_lossy(), "{}: [board] name", board_file.display());

        let button = table(&board, "button", &board_file);
        assert_eq!(text(button, "kind", &board_file), "gpio", "{}", board_file.display());
        assert_eq!(config.input.button, ButtonKind::Gpio, "{}", dir.display());
        assert_eq!(config.input.gpio_chip, text(button, "chip", &board_file), "{}", dir.display());
        assert_eq!(config.input.gpio_line, text(button, "line", &board_file), "{}", dir.display());
        assert_eq!(Some(config.input.active_low), button.get("active_low").and_then(|v| v.as_bool()));
        assert_eq!(config.input.socket.as_deref(), Some(Path::new("/run/wick/control.sock")), "{}", dir.display());
        assert_eq!(
            config.models.dir.as_deref(),
            Some(Path::new("/data/models")),
            "{}: models live on /data",
            dir.display()
        );

        let sound = table(&board, "sound", &board_file);
        let card = text(sound, "card", &board_file);
        for (key, device) in [("capture", &config.audio.capture.device), ("playback", &config.audio.playback.device)] {
            assert_eq!(device, text(sound, key, &board_file), "{}: audio.{key}.device", dir.display());
            assert!(
                asound.contains(&format!("pcm.{device} {{")),
                "{}: asound.conf defines no pcm.{device}",
                dir.display()
            );
        }
        assert!(asound.contains(&format!("CARD={card},")), "{}: asound.conf does not use card {card}", dir.display());
        let rules = read(&common::repo_root().join("udev/70-wick-sound.rules"));
        assert!(rules.contains(&format!("ATTR{{id}}=\"{card}\"")), "no udev rule names a card {card}");
    }
}

#[test]
fn the_unit_runs_wick_unprivileged_without_network_and_with_a_watchdog() {
    let root = common::repo_root().join("systemd");
    let unit = read(&root.join("wick.service"));
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/wick run",
        "User=wick",
        "Restart=on-failure",
        "PrivateNetwork=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/data /run/wick",
        // The GPU driver's kernel cache, where the service may write.
        "Environment=CUDA_CACHE_PATH=/data/wick/cuda-cache",
        "DevicePolicy=closed",
        "CapabilityBoundingSet=",
    ] {
        assert!(has(line), "wick.service lacks {line}");
    }
    // Allowed again after the filter that denies @resources (a later line adds to an allow
    // list), so that generation's threads may lower their own priority.
    let line_of = |line: &str| unit.lines().position(|l| l.trim() == line);
    let denied = line_of("SystemCallFilter=~@privileged @resources").expect("wick.service denies @resources");
    let allowed = line_of("SystemCallFilter=setpriority").expect("wick.service allows setpriority");
    assert!(allowed > denied, "SystemCallFilter=setpriority must come after the @resources deny line");
    let watchdog = unit.lines().find_map(|l| l.strip_prefix("WatchdogSec=")).expect("WatchdogSec= is set");
    let secs: f64 = watchdog.trim_end_matches('s').parse().expect("WatchdogSec= in seconds");
    // wick pings at half the interval from a loop that ticks every few hundred milliseconds,
    // and a stage is declared stuck after runtime.stage_stall_s (20 s by default).
    assert!(
        secs >= Config::default().runtime.stage_stall_s,
        "WatchdogSec={secs} is shorter than a stage may be silent"
    );

    let groups: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("SupplementaryGroups="))
        .expect("SupplementaryGroups=")
        .split_whitespace()
        .collect();
    let sysusers = read(&root.join("sysusers.d/wick.conf"));
    assert!(sysusers.lines().any(|l| l.starts_with("u wick ")), "sysusers.d makes no wick user");
    for g in &groups {
        assert!(
            sysusers.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["m", "wick", g]),
            "wick is not put in {g}"
        );
    }
    let tmpfiles = read(&root.join("tmpfiles.d/wick.conf"));
    for dir in ["/run/wick ", "/data/models ", "/data/wick "] {
        assert!(tmpfiles.lines().any(|l| l.starts_with("d ") && l.contains(dir)), "tmpfiles.d makes no {dir}");
    }
    // The GPIO rule hands the chips to a group wick is in.
    let gpio = read(&common::repo_root().join("udev/60-wick-gpio.rules"));
    assert!(gpio.contains("GROUP=\"gpio\"") && groups.contains(&"gpio"));
}

/// `[section]` -> key -> value of an INI file such as RAUC's system.conf.
fn ini(text: &str) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone()).or_insert_with(std::collections::BTreeMap::new).insert(k.into(), v.into());
        }
    }
    out
}

#[test]
fn each_boards_rauc_config_updates_its_two_root_slots_for_its_compatible() {
    for dir in boards() {
        let board_file = dir.join("board.toml");
        let board: toml::Table = toml::from_str(&read(&board_file)).unwrap();
        let compatible = text(table(&board, "board", &board_file), "compatible", &board_file);
        let conf_file = dir.join("rauc/system.conf");
        let conf = ini(&read(&conf_file));
        let at = conf_file.display();
        assert_eq!(conf["system"]["compatible"], compatible, "{at}");
        // The root is read-only and replaced by updates: RAUC's status must live on /data.
        assert_eq!(conf["system"]["data-directory"], "/data/rauc", "{at}");
        assert_eq!(conf["system"]["bundle-formats"], "-plain", "{at}: verity bundles only (streamable)");
        assert_eq!(conf["keyring"]["path"], "/etc/rauc/keyring.pem", "{at}");
        // The health gate learns which slot is new from the shared pre-install handler.
        assert_eq!(conf["handlers"]["pre-install"], "/usr/lib/wick/rauc/pre-install", "{at}");
        let bootnames: Vec<&str> = ["slot.rootfs.0", "slot.rootfs.1"]
            .iter()
            .map(|s| conf.get(*s).unwrap_or_else(|| panic!("{at}: no [{s}]"))["bootname"].as_str())
            .collect();
        assert_eq!(bootnames, ["A", "B"], "{at}");
    }
    let twin = ini(&read(&common::repo_root().join("board/qemu-amd64/rauc/system.conf")));
    let esp = read(&common::repo_root().join("board/qemu-amd64/board.toml"));
    assert_eq!(twin["system"]["bootloader"], "grub");
    assert!(
        twin["system"]["grubenv"].starts_with("/boot/efi/") && esp.contains("esp_mount = \"/boot/efi\""),
        "the grubenv RAUC edits is on the EFI partition the image mounts"
    );
}

#[test]
fn the_health_gate_runs_at_every_boot_and_the_handler_names_the_slot() {
    let root = common::repo_root();
    let unit = read(&root.join("systemd/wick-health.service"));
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in
        ["Type=oneshot", "ExecStart=/usr/bin/wick health", "WantedBy=multi-user.target", "RequiresMountsFor=/data"]
    {
        assert!(has(line), "wick-health.service lacks {line}");
    }
    // It does not wait for wick's start: a confirmed slot is marked good early, and a new one's
    // check waits for READY through the control socket.
    assert!(!unit.lines().any(|l| l.starts_with("After=") && l.contains("wick.service")));
    // The handler writes where the gate reads.
    let handler = read(&root.join("image-build/rauc/pre-install"));
    assert!(handler.contains(&format!("pending={}", wick::appliance::gate::PENDING)), "{handler}");
}
