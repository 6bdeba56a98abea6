//! The configuration file, `$XDG_CONFIG_HOME/offload/config.toml`
//! (`~/.config/offload/config.toml`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{fail, Exit};

#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct DestArgs {
    /// The backup store (a folder on the backup drive); repeat for several. Default:
    /// the config file's destination(s) or drive(s), else `offload` in the pictures
    /// folder (~/Pictures/offload).
    #[arg(long, value_name = "DEST", value_hint = clap::ValueHint::DirPath)]
    pub to: Vec<PathBuf>,

    /// A backup drive by filesystem label or UUID (its store is the `offload` folder
    /// at its root); repeat for several.
    #[arg(long, value_name = "LABEL|UUID")]
    pub to_drive: Vec<String>,
}

/// Keys of `config.toml`. An unknown key is an error naming it: a typo must not
/// silently send photos to the wrong place.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default destination (the store folder on the backup drive).
    pub destination: Option<PathBuf>,
    /// Several destinations: every new file goes to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<PathBuf>,
    /// A drive by filesystem label or UUID; the store is its `offload` folder.
    pub drive: Option<String>,
    /// Several drives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drives: Vec<String>,
    /// Default layout template.
    pub template: Option<String>,
    /// Android: also back up WhatsApp, Telegram and Signal media.
    #[serde(default)]
    pub include_app_media: bool,
    /// Names for devices, by serial or UDID: what `{device}` becomes for a phone seen
    /// for the first time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}

/// Where a backup goes: a folder, or a drive found by its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Where {
    Path(PathBuf),
    Drive(String),
}

/// One destination and whether a run may create a store there.
#[derive(Clone, Debug)]
pub struct Dest {
    pub place: Where,
    /// A store is created only where the user said so on the command line (`--to NEW`)
    /// or at the default (see [`default_store`]); a destination from the config or a drive
    /// must already hold one, so that the empty mount point of an unplugged drive is
    /// never mistaken for the drive.
    pub create: bool,
}

impl Dest {
    /// "/media/me/PHOTOS/offload" or "the drive PHOTOS".
    pub fn describe(&self) -> String {
        match &self.place {
            Where::Path(p) => p.display().to_string(),
            Where::Drive(d) => format!("the drive {d}"),
        }
    }

    /// The store's folder. A drive's store is the `offload` folder at its root (or the
    /// root itself when that is a store). Errors (exit 4): the drive is not mounted.
    pub fn locate(&self) -> Result<PathBuf> {
        match &self.place {
            Where::Path(p) => Ok(p.clone()),
            Where::Drive(name) => {
                let m = crate::store::drive::find(name).ok_or_else(|| {
                    fail(
                        Exit::Destination,
                        format!("The drive {name} is not mounted: plug it in (and mount it), then run offload again."),
                    )
                })?;
                if m.mount_point
                    .join(crate::store::META_DIR)
                    .join("store.json")
                    .exists()
                {
                    Ok(m.mount_point)
                } else {
                    Ok(m.mount_point.join("offload"))
                }
            }
        }
    }
}

/// Where the config file lives (it may not exist).
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("offload").join("config.toml"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `~/x` → `$HOME/x`.
fn expand(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), home()) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p.to_path_buf(),
    }
}

/// Loads the config file; a missing file is an empty config.
pub fn load() -> Result<Config> {
    let Some(path) = path() else {
        return Ok(Config::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let cfg: Config = toml::from_str(&text).map_err(|e| {
        fail(
            Exit::Usage,
            format!(
                "The config file {} is not valid: {}",
                path.display(),
                e.message()
            ),
        )
    })?;
    Ok(cfg)
}

/// The destinations in use: `--to` and `--to-drive` (each may repeat), else the
/// config's `destination(s)` and `drive(s)`, else [`default_store`].
/// `require_store` (scheduled and plug-in runs) forbids creating a store anywhere.
pub fn destinations(args: &DestArgs, cfg: &Config, require_store: bool) -> Result<Vec<Dest>> {
    let mut out = Vec::new();
    for p in &args.to {
        out.push(Dest {
            place: Where::Path(p.clone()),
            create: !require_store,
        });
    }
    for d in &args.to_drive {
        // Naming the drive on the command line is explicit enough to start a store on it.
        out.push(Dest {
            place: Where::Drive(d.clone()),
            create: !require_store,
        });
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let paths = cfg.destination.iter().chain(&cfg.destinations);
    for p in paths {
        out.push(Dest {
            place: Where::Path(expand(p)),
            create: false,
        });
    }
    for d in cfg.drive.iter().chain(&cfg.drives) {
        out.push(Dest {
            place: Where::Drive(d.clone()),
            create: false,
        });
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let store = default_store().ok_or_else(|| {
        fail(
            Exit::Usage,
            "No destination: pass --to DEST (HOME is not set).",
        )
    })?;
    Ok(vec![Dest {
        place: Where::Path(store),
        create: !require_store,
    }])
}

/// The store used when no destination is given: `offload` in the user's pictures
/// folder, as the desktop names it (`XDG_PICTURES_DIR` in `user-dirs.dirs`: `~/Bilder`
/// on a German desktop), else `~/Pictures/offload`. `None` without a home folder.
pub fn default_store() -> Option<PathBuf> {
    let home = home();
    // A pictures folder set to the home folder itself means "none" to the desktop: the
    // photos still get a folder of their own.
    let pictures = dirs::picture_dir()
        .filter(|p| Some(p) != home.as_ref())
        .or_else(|| home.map(|h| h.join("Pictures")))?;
    Some(pictures.join("offload"))
}

/// The one destination of a command that reads a single store (status, verify,
/// reindex): the first of [`destinations`]. Errors when several were given.
pub fn destination(args: &DestArgs, cfg: &Config) -> Result<PathBuf> {
    let all = destinations(args, cfg, true)?;
    if args.to.len() + args.to_drive.len() > 1 {
        return Err(fail(
            Exit::Usage,
            "This command reads one backup: give one --to or --to-drive.",
        ));
    }
    all[0].locate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = toml::from_str::<Config>("destinaton = \"/x\"").unwrap_err();
        assert!(err.message().contains("destinaton"), "{}", err.message());
        let ok: Config = toml::from_str("destination = \"/x\"\ntemplate = \"{name}\"").unwrap();
        assert_eq!(ok.destination.as_deref(), Some(Path::new("/x")));
    }
}
