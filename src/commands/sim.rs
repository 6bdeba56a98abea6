//! `offload sim ...`: virtual devices and generated camera rolls.
use std::fs;

use anyhow::Context;

use crate::cli::{RollArgs, SimCommand};
use crate::error::{fail, Exit};
use crate::sim::gen;

pub fn run(cmd: SimCommand) -> anyhow::Result<u8> {
    match cmd {
        SimCommand::Roll(args) => roll(&args),
        SimCommand::Iphone(args) => crate::sim::iphone::run(*args),
    }
}

/// `offload sim roll`: writes a generated camera roll, and its manifest if asked.
fn roll(args: &RollArgs) -> anyhow::Result<u8> {
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
    Ok(0)
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
            assert_eq!(roll(&args(tmp.path(), kind)).unwrap(), 0);
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
