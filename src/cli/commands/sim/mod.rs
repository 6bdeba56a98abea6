//! The commands of the virtual phones (feature `sim`), all in this module so that a
//! build without them has none: `offload demo`, and the hidden `offload sim ...`
//! (virtual devices and generated camera rolls).

pub mod demo;

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::error::{fail, Exit};
use offload::sim::gen;

/// The subcommands this module adds to `offload`'s own.
#[derive(Debug, Subcommand)]
pub enum SimCli {
    /// Make a sample camera roll and back it up end to end, twice.
    Demo(DemoArgs),
    /// Virtual devices and sample data, for tests and demos.
    #[command(subcommand, hide = true)]
    Sim(SimCommand),
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Keep the demo files here instead of a new temporary folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Write a generated camera roll into a folder (valid JPEG/PNG/MP4/MOV with dates).
    Roll(RollArgs),
    /// Serve a directory as a virtual iPhone (usbmuxd + lockdownd + AFC) on a TCP address.
    Iphone(Box<offload::sim::iphone::IphoneArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct RollArgs {
    /// Folder to fill (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// `demo`: a small realistic roll with clashes, a duplicate and hidden files, laid
    /// out as an Android phone's storage. `iphone`: an iPhone's media root (100APPLE,
    /// a Live Photo pair, the 101APPLE roll-over). `card`: a camera's SD card.
    /// `bulk`: many same-sized files for benchmarks.
    #[arg(long, default_value = "demo")]
    pub kind: String,
    /// bulk: number of photos.
    #[arg(long, default_value_t = 1000)]
    pub photos: usize,
    /// bulk: bytes per photo.
    #[arg(long, default_value_t = 2_000_000)]
    pub photo_size: usize,
    /// bulk: number of videos.
    #[arg(long, default_value_t = 10)]
    pub videos: usize,
    /// bulk: bytes per video.
    #[arg(long, default_value_t = 100_000_000)]
    pub video_size: usize,
    /// Seed, so that two runs make the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the expected capture date and category of each file here, as JSON.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

/// Runs one of the commands of [`SimCli`].
pub fn run(cmd: SimCli) -> anyhow::Result<Exit> {
    match cmd {
        SimCli::Demo(args) => {
            // A demo copies like a backup does, so it stops as cleanly.
            crate::stop::install();
            demo::run(&args)
        }
        SimCli::Sim(SimCommand::Roll(args)) => roll(&args),
        SimCli::Sim(SimCommand::Iphone(args)) => offload::sim::iphone::run(*args),
    }
}

/// `offload sim roll`: writes a generated camera roll, and its manifest if asked.
fn roll(args: &RollArgs) -> anyhow::Result<Exit> {
    let dir = &args.dir;
    let files = match args.kind.as_str() {
        "demo" => gen::demo_roll(dir),
        "iphone" => gen::iphone_roll(dir),
        "card" => gen::camera_card(dir, None),
        "bulk" => gen::bulk_roll(
            dir,
            args.photos,
            args.photo_size,
            args.videos,
            args.video_size,
            args.seed,
        ),
        other => {
            return Err(fail(
                Exit::Usage,
                format!("unknown roll kind {other:?}: use --kind demo, iphone, card or bulk"),
            ))
        }
    }
    .with_context(|| format!("cannot write the roll into {}", dir.display()))?;
    if let Some(manifest) = &args.manifest {
        let json = serde_json::to_vec_pretty(&files)?;
        fs::write(manifest, json)
            .with_context(|| format!("cannot write the manifest {}", manifest.display()))?;
    }
    let mut bytes = 0u64;
    for f in &files {
        bytes += fs::metadata(dir.join(&f.path))?.len();
    }
    outln!(
        "wrote {} files, {} bytes to {}",
        files.len(),
        bytes,
        dir.display()
    );
    Ok(Exit::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fail;

    fn args(dir: &std::path::Path, kind: &str) -> RollArgs {
        RollArgs {
            dir: dir.join("roll"),
            kind: kind.to_string(),
            photos: 3,
            photo_size: 10_000,
            videos: 1,
            video_size: 20_000,
            seed: 1,
            manifest: Some(dir.join("manifest.json")),
        }
    }

    #[test]
    fn writes_the_roll_and_its_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        for kind in ["demo", "bulk"] {
            assert_eq!(
                roll(&args(tmp.path(), kind)).unwrap(),
                crate::error::Exit::Done
            );
            let json = fs::read(tmp.path().join("manifest.json")).unwrap();
            let files: Vec<gen::RollFile> = serde_json::from_slice(&json).unwrap();
            assert!(!files.is_empty());
            for f in &files {
                assert!(
                    tmp.path().join("roll").join(&f.path).is_file(),
                    "{}",
                    f.path
                );
            }
        }
    }

    #[test]
    fn unknown_kind_is_a_usage_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = roll(&args(tmp.path(), "huge")).unwrap_err();
        assert_eq!(err.downcast_ref::<Fail>().unwrap().code, Exit::Usage);
        assert!(!tmp.path().join("roll").exists());
    }
}
