//! The configuration file, `$XDG_CONFIG_HOME/offload/config.toml`
//! (`~/.config/offload/config.toml`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::{fail, Exit};

/// Keys of `config.toml`. An unknown key is an error naming it: a typo must not
/// silently send photos to the wrong place.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default destination (the store folder on the backup drive).
    pub destination: Option<PathBuf>,
    /// Default layout template.
    pub template: Option<String>,
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
    let mut cfg: Config = toml::from_str(&text).map_err(|e| {
        fail(
            Exit::Usage,
            format!(
                "The config file {} is not valid: {}",
                path.display(),
                e.message()
            ),
        )
    })?;
    cfg.destination = cfg.destination.map(|d| expand(&d));
    Ok(cfg)
}

/// The destination in use: `--to`, else the config's `destination`, else
/// `~/Pictures/offload`.
pub fn destination(arg: Option<&Path>, cfg: &Config) -> Result<PathBuf> {
    if let Some(p) = arg {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = &cfg.destination {
        return Ok(p.clone());
    }
    home()
        .map(|h| h.join("Pictures").join("offload"))
        .ok_or_else(|| {
            fail(
                Exit::Usage,
                "No destination: pass --to DEST (HOME is not set).",
            )
        })
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
