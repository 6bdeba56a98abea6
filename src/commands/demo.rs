//! `offload demo`: a sample camera roll made by the project's own generator, backed up
//! end to end twice (the second run copies nothing), then `status`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::{DemoArgs, DestArgs, StatusArgs};
use crate::commands::backup::{backup, Options};
use crate::error::{fail, Exit};
use crate::source::folder::FolderSource;
use crate::source::Source;
use crate::store::template::{Template, DEFAULT_TEMPLATE};

pub fn run(args: &DemoArgs) -> Result<u8> {
    #[cfg(not(feature = "sim"))]
    {
        let _ = args;
        Err(fail(
            Exit::Usage,
            "this build has no sample generator (cargo feature `sim`)",
        ))
    }
    #[cfg(feature = "sim")]
    demo(args)
}

#[cfg(feature = "sim")]
fn demo(args: &DemoArgs) -> Result<u8> {
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("offload-demo-")
            .tempdir()?
            .keep(),
    };
    let roll = dir.join("SD_CARD");
    let dest = dir.join("backup");
    if roll.exists() || dest.exists() {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} already holds a demo; give an empty folder with --dir",
                dir.display()
            ),
        ));
    }
    let files = crate::sim::gen::demo_roll(&roll)?;
    println!(
        "Sample camera roll: {} files in {} (photos over several months, screenshots, \
         videos, a name clash, a duplicate, hidden and trashed files)\n",
        files.len(),
        roll.display()
    );

    let opts = Options {
        dest: &dest,
        template: Template::parse(DEFAULT_TEMPLATE).expect("default template parses"),
        dry_run: false,
        json: false,
    };
    let sources = || -> Result<Vec<Box<dyn Source>>> {
        Ok(vec![Box::new(
            FolderSource::open(&roll).map_err(|e| anyhow::anyhow!("{e}"))?,
        )])
    };
    println!("== First backup");
    let first = backup(sources()?, &opts)?;
    println!("\n== Second backup: nothing is new, so nothing is read or copied");
    let second = backup(sources()?, &opts)?;
    println!("\n== offload status");
    crate::commands::status::run(&StatusArgs {
        dest: DestArgs {
            to: Some(dest.clone()),
        },
        json: false,
    })?;
    println!(
        "\nLook at the backup:  ls -R {}\nThe catalog:         sqlite3 {} 'SELECT path, captured, date_source, category FROM files'",
        dest.display(),
        dest.join(".offload/catalog.sqlite").display()
    );
    Ok(first.max(second))
}
