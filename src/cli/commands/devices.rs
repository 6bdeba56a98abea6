//! `offload devices`: the phones connected now, what they hold, and why one that cannot
//! be read cannot be.

use std::time::Duration;

use anyhow::Result;
use indicatif::DecimalBytes;
use serde::Serialize;

use crate::args::DevicesArgs;
use crate::error::Exit;
use crate::source::detect::{detect, Blocked, DetectOptions};
use crate::source::{DeviceInfo, StorageInfo};

#[derive(Serialize)]
struct Device {
    #[serde(flatten)]
    info: DeviceInfo,
    state: &'static str,
}

#[derive(Serialize)]
struct Devices {
    devices: Vec<Device>,
    blocked: Vec<Blocked>,
    notes: Vec<String>,
}

/// Exit 0 when at least one phone can be read, 3 otherwise.
pub fn run(args: &DevicesArgs) -> Result<Exit> {
    // Ask an iPhone to trust us once, but do not wait here for the answer.
    let found = detect(&DetectOptions {
        trust_timeout: Some(Duration::ZERO),
        ..DetectOptions::default()
    });
    let mut notes = found.notes;
    if let Some(m) = found.no_usbmuxd {
        notes.push(m);
    }
    let report = Devices {
        devices: found
            .sources
            .iter()
            .map(|s| Device {
                info: s.info().clone(),
                state: "ready",
            })
            .collect(),
        blocked: found.blocked,
        notes,
    };
    let code = if report.devices.is_empty() {
        Exit::NoSource
    } else {
        Exit::Done
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(code);
    }
    if report.devices.is_empty() && report.blocked.is_empty() {
        outln!(
            "No phone found. Connect it with a USB data cable, unlock it, and choose 'File \
             transfer' in the USB notification (Android) or tap 'Trust' (iPhone)."
        );
    }
    for d in &report.devices {
        let i = &d.info;
        outln!(
            "{} ({}, {}): ready",
            crate::term::shown(&i.name),
            i.kind.as_str(),
            crate::term::shown(&i.id)
        );
        let model: Vec<&str> = [i.manufacturer.as_deref(), i.model.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !model.is_empty() {
            outln!("  model     {}", crate::term::shown(&model.join(" ")));
        }
        if let Some(s) = &i.serial {
            outln!("  serial    {}", crate::term::shown(s));
        }
        for StorageInfo {
            description,
            capacity_bytes,
            free_bytes,
        } in &i.storages
        {
            outln!(
                "  storage   {}: {} free of {}",
                crate::term::shown(description),
                DecimalBytes(*free_bytes),
                DecimalBytes(*capacity_bytes)
            );
        }
        for w in &i.warnings {
            outln!("  warning   {w}");
        }
    }
    for b in &report.blocked {
        outln!(
            "{} ({}, {}): {}\n  {}",
            crate::term::shown(&b.name),
            b.kind,
            crate::term::shown(&b.id),
            b.state,
            crate::term::shown(&b.message)
        );
    }
    for n in &report.notes {
        outln!("note: {n}");
    }
    Ok(code)
}
