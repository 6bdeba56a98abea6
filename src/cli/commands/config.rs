//! `offload config`: where the config file is and the values in effect.

use anyhow::Result;

use crate::args::ConfigArgs;
use crate::config::{self, Where};
use crate::error::Exit;
use crate::store::drive;

pub fn run(args: &ConfigArgs) -> Result<Exit> {
    let path = config::path();
    let cfg = config::load()?;
    let dests = config::destinations(&Default::default(), &cfg, false)?;
    if args.json {
        let destinations: Vec<serde_json::Value> = dests
            .iter()
            .map(|d| match &d.place {
                Where::Path(p) => serde_json::json!({"path": p}),
                Where::Drive(name) => {
                    let m = drive::find(name);
                    serde_json::json!({
                        "drive": name,
                        "mounted_at": m.as_ref().map(|m| &m.mount_point),
                        "device": m.as_ref().map(|m| &m.device),
                        "fstype": m.as_ref().map(|m| &m.fstype),
                    })
                }
            })
            .collect();
        let out = serde_json::json!({
            "path": path,
            "exists": path.as_ref().is_some_and(|p| p.exists()),
            "values": cfg,
            "destinations_in_effect": destinations,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Done);
    }
    match &path {
        Some(p) if p.exists() => outln!("Config file: {}", p.display()),
        Some(p) => outln!(
            "Config file: {} (not created; defaults in effect)",
            p.display()
        ),
        None => outln!("Config file: none (neither XDG_CONFIG_HOME nor HOME is set)"),
    }
    outln!("\nDestinations in effect:");
    for d in &dests {
        match &d.place {
            Where::Path(p) => outln!("  {}", p.display()),
            Where::Drive(name) => match drive::find(name) {
                Some(m) => outln!(
                    "  drive {name}: mounted at {} ({}, {})",
                    m.mount_point.display(),
                    m.device.display(),
                    m.fstype
                ),
                None => outln!("  drive {name}: not mounted now"),
            },
        }
    }
    outln!("\nValues (config.toml):\n{}", toml::to_string_pretty(&cfg)?);
    outln!(
        "Keys: destination, destinations = [..], drive, drives = [..], template, \
         include_app_media, [names] SERIAL = \"name\""
    );
    Ok(Exit::Done)
}
