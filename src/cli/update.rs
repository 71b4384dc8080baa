//! `wick update BUNDLE|URL`: checks that the bundle is signed by a key this device trusts and is
//! meant for this board, then installs it into the other root slot through RAUC, showing its
//! progress. The new slot boots at the next restart; the health gate keeps it or rolls back.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use wick::appliance::rauc;

use super::args::UpdateArgs;

pub fn run(args: UpdateArgs) -> Result<ExitCode> {
    let source = args.source.as_str();
    if !source.contains("://") && !std::path::Path::new(source).is_file() {
        bail!("update bundle {source}: no such file (give a .raucb file or an http(s):// URL)");
    }
    let system = rauc::status().context("reading this device's slots")?;
    let bundle = rauc::info(source).with_context(|| {
        format!(
            "checking update bundle {source} (RAUC verifies its signature against this device's keyring, \
             /etc/rauc/keyring.pem: a bundle signed by another key is refused)"
        )
    })?;
    if bundle.compatible != system.compatible {
        bail!(
            "update bundle {source} is for '{}', and this device is '{}': nothing was installed (use a bundle \
             made for '{}')",
            bundle.compatible,
            system.compatible,
            system.compatible
        );
    }
    let target = system.slots.iter().find(|s| s.bootname != system.booted);
    let version = bundle.version.as_deref().unwrap_or("(no version)");
    eprintln!(
        "installing {version} from {source} into slot {} (booted: slot {}, version {})",
        target.map_or("?", |s| s.bootname.as_str()),
        system.booted,
        system.booted_slot().and_then(|s| s.version.as_deref()).unwrap_or("unknown"),
    );

    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(100);
        bar.set_style(ProgressStyle::with_template("{bar:40} {pos:>3}% {msg}").expect("valid template"));
        bar
    } else {
        ProgressBar::hidden()
    };
    // Without a terminal (a log, a script) a line is printed when the step changes or another
    // tenth is done, not for every percent.
    let lines = bar.is_hidden();
    let mut last: Option<rauc::Progress> = None;
    let installed = rauc::install(source, &mut |line| match rauc::Progress::parse(line) {
        Some(p) => {
            bar.set_position(p.percent.into());
            bar.set_message(p.message.clone());
            let new_step = last.as_ref().is_none_or(|l| l.message != p.message || l.percent / 10 != p.percent / 10);
            if lines && new_step {
                eprintln!("{:>3}% {}", p.percent, p.message);
            }
            last = Some(p);
        }
        None if !line.trim().is_empty() => bar.println(line.trim()),
        None => {}
    });
    bar.finish_and_clear();
    installed.with_context(|| format!("installing update bundle {source}: the booted slot is untouched"))?;

    let after = rauc::status().context("reading the slots after the installation")?;
    let slot = after.slots.iter().find(|s| s.bootname != after.booted).map_or("?".into(), |s| s.bootname.clone());
    println!("installed {version} into slot {slot}; it boots next and is kept if it passes the health gate");
    for line in after.lines() {
        println!("  {line}");
    }
    if args.reboot {
        println!("rebooting");
        let status =
            std::process::Command::new("systemctl").arg("reboot").status().context("running systemctl reboot")?;
        if !status.success() {
            bail!("`systemctl reboot` failed ({status}); restart the device to boot slot {slot}");
        }
    } else {
        println!("restart the device (or run `systemctl reboot`) to start it");
    }
    Ok(ExitCode::SUCCESS)
}
