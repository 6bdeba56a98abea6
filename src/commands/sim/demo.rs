//! `offload demo`: a sample camera roll made by the project's own generator, backed up
//! end to end twice (the second run copies nothing), then `status`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::DemoArgs;
use crate::cli::{DestArgs, StatusArgs};
use crate::commands::backup::{backup, Options};
use crate::error::{fail, Exit};
use crate::source::detect::{detect, DetectOptions};
use crate::source::folder::FolderSource;
use crate::source::Source;
use crate::store::template::{Template, DEFAULT_TEMPLATE};
use offload::sim::{android, gen, iphone};

pub fn run(args: &DemoArgs) -> Result<u8> {
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
    let card = dir.join("SD_CARD");
    let pixel = dir.join("phones/DEMOPIXEL");
    let iphone_dir = dir.join("phones/iPhone");
    let dest = dir.join("backup");
    if card.exists() || dest.exists() || pixel.exists() {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} already holds a demo; give an empty folder with --dir",
                dir.display()
            ),
        ));
    }
    let a = gen::demo_roll(&pixel)?;
    let i = gen::iphone_roll(&iphone_dir)?;
    // One photo is on the Android phone and on the SD card: it is stored once.
    let shared = "DCIM/Camera/IMG_20230314_091502.jpg";
    let c = gen::camera_card(&card, Some((&pixel, shared)))?;
    outln!(
        "Virtual Android phone: {} files in {} (camera photos and videos, a motion photo, \
         screenshots, WhatsApp media, a name clash, a duplicate, trashed and hidden files)",
        a.len(),
        pixel.display()
    );
    outln!(
        "Virtual iPhone: {} files in {} (a Live Photo pair, a screenshot, videos and a slo-mo, \
         a selfie, a burst, favourites, a hidden photo, the album \"Summer 2024\", photos only \
         in iCloud, the 100APPLE/101APPLE roll-over), served over usbmuxd/lockdown/AFC with \
         its Photos library",
        i.len(),
        iphone_dir.display()
    );
    outln!(
        "SD card: {} files in {} (one photo also on the Android phone)\n",
        c.len() + 1,
        card.display()
    );

    // The virtual phones speak the real protocols; discovery finds them as it would
    // find real ones.
    let serial = android::register_phone(&pixel, None, Default::default(), false)?;
    let sim = iphone::start(iphone::IphoneArgs::new(&iphone_dir))?;
    let usbmuxd = sim.addr.to_string();
    let virtual_ids = [format!("android:{serial}"), format!("iphone:{}", sim.udid)];

    let opts = Options {
        template: Template::parse(DEFAULT_TEMPLATE).expect("default template parses"),
        filter: crate::filter::Filter::default(),
        dry_run: false,
        json: false,
        names: Default::default(),
        stop: crate::stop::Stop::new(),
    };
    let sources = || -> Result<Vec<Box<dyn Source>>> {
        let found = detect(&DetectOptions {
            usbmuxd: Some(usbmuxd.clone()),
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
            FolderSource::open(&card).map_err(|e| anyhow::anyhow!("{e}"))?,
        ));
        Ok(sources)
    };
    outln!("== First backup: an Android phone, an iPhone and an SD card into one store");
    let first = backup(&mut sources()?, &[], &dest, true, &opts, &mut Vec::new())?;
    outln!("\n== Second backup: nothing is new, so nothing is read or copied");
    let second = backup(&mut sources()?, &[], &dest, true, &opts, &mut Vec::new())?;
    drop(sim);
    outln!("\n== offload status");
    crate::commands::status::run(&StatusArgs {
        dest: DestArgs {
            to: vec![dest.clone()],
            to_drive: Vec::new(),
        },
        json: false,
    })?;
    outln!(
        "\nLook at the backup:  ls -R {}\nThe catalog:         sqlite3 {} 'SELECT path, captured, date_source, category FROM files'",
        dest.display(),
        dest.join(".offload/catalog.sqlite").display()
    );
    Ok(first.max(second))
}
