//! `offload demo`: a sample camera roll made by the project's own generator, backed up
//! end to end twice (the second run copies nothing), then `status`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::DemoArgs;
use crate::args::{DestArgs, StatusArgs};
use crate::commands::backup::{backup, Options};
use crate::error::{fail, Exit};
use crate::report::Progress;
use crate::source::detect::{detect, DetectOptions};
use crate::source::folder::FolderSource;
use crate::source::Source;
use crate::store::template::{Template, DEFAULT_TEMPLATE};
use offload::sim::{android, gen, iphone};

pub fn run(args: &DemoArgs) -> Result<Exit> {
    let layout = Layout::new(demo_dir(args)?)?;
    make_rolls(&layout)?;

    // The virtual phones speak the real protocols; discovery finds them as it would
    // find real ones.
    let serial = android::register_phone(&layout.pixel, None, Default::default(), false)?;
    let sim = iphone::start(iphone::IphoneArgs::new(&layout.iphone))?;
    let usbmuxd = sim.addr.to_string();
    let virtual_ids = [format!("android:{serial}"), format!("iphone:{}", sim.udid)];

    let opts = backup_options();
    let dest = &layout.dest;
    let sources = || find_sources(&usbmuxd, &virtual_ids, &layout.card);
    let run = || {
        let mut progress = Progress::new(false);
        backup(
            &mut sources()?,
            &[],
            dest,
            true,
            &opts,
            &mut Vec::new(),
            &mut progress,
        )
    };
    outln!("== First backup: an Android phone, an iPhone and an SD card into one store");
    let first = run()?;
    outln!("\n== Second backup: nothing is new, so nothing is read or copied");
    let second = run()?;
    drop(sim);
    show_backup(dest)?;
    Ok(first.max(second))
}

/// The folder of the demo: `--dir` (created if missing), else a new temporary folder
/// that is kept afterwards, so that the backup can be looked at.
fn demo_dir(args: &DemoArgs) -> Result<PathBuf> {
    Ok(match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("offload-demo-")
            .tempdir()?
            .keep(),
    })
}

/// Where the demo puts each thing, inside its folder.
struct Layout {
    /// The demo's folder.
    dir: PathBuf,
    /// The SD card (a folder with a `DCIM`).
    card: PathBuf,
    /// The virtual Android phone's storage.
    pixel: PathBuf,
    /// The virtual iPhone's media root.
    iphone: PathBuf,
    /// The backup.
    dest: PathBuf,
}

impl Layout {
    /// The layout in `dir`; refused (a usage error) if `dir` holds a demo already, which
    /// a second run would mix with its own.
    fn new(dir: PathBuf) -> Result<Layout> {
        let layout = Layout {
            card: dir.join("SD_CARD"),
            pixel: dir.join("phones/DEMOPIXEL"),
            iphone: dir.join("phones/iPhone"),
            dest: dir.join("backup"),
            dir,
        };
        if layout.card.exists() || layout.dest.exists() || layout.pixel.exists() {
            return Err(fail(
                Exit::Usage,
                format!(
                    "{} already holds a demo; give an empty folder with --dir",
                    layout.dir.display()
                ),
            ));
        }
        Ok(layout)
    }
}

/// Writes the camera rolls of the two virtual phones and the SD card, and says what
/// each holds.
fn make_rolls(l: &Layout) -> Result<()> {
    let a = gen::demo_roll(&l.pixel)?;
    let i = gen::iphone_roll(&l.iphone)?;
    // One photo is on the Android phone and on the SD card: it is stored once.
    let shared = "DCIM/Camera/IMG_20230314_091502.jpg";
    let c = gen::camera_card(&l.card, Some((&l.pixel, shared)))?;
    outln!(
        "Virtual Android phone: {} files in {} (camera photos and videos, a motion photo, \
         screenshots, WhatsApp media, a name clash, a duplicate, trashed and hidden files)",
        a.len(),
        l.pixel.display()
    );
    outln!(
        "Virtual iPhone: {} files in {} (a Live Photo pair, a screenshot, videos and a slo-mo, \
         a selfie, a burst, favourites, a hidden photo, the album \"Summer 2024\", photos only \
         in iCloud, the 100APPLE/101APPLE roll-over), served over usbmuxd/lockdown/AFC with \
         its Photos library",
        i.len(),
        l.iphone.display()
    );
    outln!(
        "SD card: {} files in {} (one photo also on the Android phone)\n",
        c.len() + 1,
        l.card.display()
    );
    Ok(())
}

/// The options of both backups: the default layout, no filter, for real.
fn backup_options() -> Options {
    Options {
        template: Template::parse(DEFAULT_TEMPLATE).expect("default template parses"),
        filter: crate::filter::Filter::default(),
        dry_run: false,
        json: false,
        names: Default::default(),
        stop: crate::stop::Stop::new(),
    }
}

/// The sources of a backup: the virtual phones, found by the ordinary phone search
/// (with the virtual iPhone's usbmuxd) among whatever else is plugged in, and the SD
/// card. An error if either phone is not found.
fn find_sources(
    usbmuxd: &str,
    virtual_ids: &[String],
    card: &Path,
) -> Result<Vec<Box<dyn Source>>> {
    let found = detect(&DetectOptions {
        usbmuxd: Some(usbmuxd.to_string()),
        ..DetectOptions::default()
    });
    let mut sources: Vec<Box<dyn Source>> = found
        .sources
        .into_iter()
        .filter(|s| virtual_ids.contains(&s.info().id))
        .collect();
    if sources.len() != virtual_ids.len() {
        anyhow::bail!("the virtual phones were not found: {:?}", found.blocked);
    }
    sources.push(Box::new(
        FolderSource::open(card).map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    Ok(sources)
}

/// Shows `offload status` of the backup at `dest`, then how to look at it.
fn show_backup(dest: &Path) -> Result<()> {
    outln!("\n== offload status");
    crate::commands::status::run(&StatusArgs {
        dest: DestArgs {
            to: vec![dest.to_path_buf()],
            to_drive: Vec::new(),
        },
        json: false,
    })?;
    outln!(
        "\nLook at the backup:  ls -R {}\nThe catalog:         sqlite3 {} 'SELECT path, captured, date_source, category FROM files'",
        dest.display(),
        dest.join(".offload/catalog.sqlite").display()
    );
    Ok(())
}
