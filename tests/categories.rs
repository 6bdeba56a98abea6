//! Categories, tags, selections (`--only`, `--exclude`, `--since`, `--until`, `--album`,
//! `--favorites`), Live Photo pairs and iCloud-only reports, through the real binary,
//! on real camera files and on the virtual iPhone with its Photos library.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::phones::Sim;
use common::*;

/// The iCloud message for the iPhone roll: two photos and a video are optimised away.
const ROLL_CLOUD_MESSAGE: &str = "2 photos and 1 video are only in iCloud (Optimize iPhone \
    Storage). They cannot be copied over USB; choose 'Download and Keep Originals' on the \
    iPhone to include them.";

/// Remote paths this store holds a sighting of (what a backup marked done).
fn done(dest: &Path) -> BTreeSet<String> {
    if !dest.join(".offload/catalog.sqlite").exists() {
        return BTreeSet::new();
    }
    let c = catalog(dest);
    let mut s = c.prepare("SELECT remote_path FROM sightings").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Store path → (category, tags) from the catalog.
fn categories(dest: &Path) -> BTreeMap<String, (String, Vec<String>)> {
    let c = catalog(dest);
    let mut s = c
        .prepare(
            "SELECT f.path, f.category, coalesce(group_concat(t.tag, '|'), '') FROM files f
             LEFT JOIN (SELECT * FROM file_tags ORDER BY tag) t ON t.hash = f.hash
             GROUP BY f.path",
        )
        .unwrap();
    s.query_map([], |r| {
        let tags: String = r.get(2)?;
        let mut tags: Vec<String> = tags
            .split('|')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        tags.sort();
        Ok((r.get(0)?, (r.get(1)?, tags)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn paths(list: &[&str]) -> BTreeSet<String> {
    list.iter()
        .map(|p| {
            if p.contains('/') {
                p.to_string()
            } else {
                format!("DCIM/100APPLE/{p}")
            }
        })
        .collect()
}

fn cloud_paths(dev: &serde_json::Value) -> BTreeSet<String> {
    dev["cloud_only"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["path"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

const J: &str = "DCIM/101APPLE/IMG_0001.JPG";

/// The iPhone roll's 11 files (see `sim::gen::iphone_roll`).
fn roll_files() -> BTreeSet<String> {
    paths(&[
        "IMG_0001.JPG",
        "IMG_0002.JPG",
        "IMG_0002.MOV",
        "IMG_0003.PNG",
        "IMG_0004.MOV",
        "IMG_0005.JPG",
        "IMG_0006.JPG",
        "IMG_0007.JPG",
        "IMG_0008.JPG",
        "IMG_0009.MOV",
        J,
    ])
}

#[test]
fn every_filter_and_combinations_on_a_virtual_iphone() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let sim = Sim::start(&s, &s.path("phone"), &[]);
    let photos = [
        "IMG_0001.JPG",
        "IMG_0002.JPG",
        "IMG_0002.MOV",
        "IMG_0005.JPG",
        "IMG_0006.JPG",
        "IMG_0007.JPG",
        "IMG_0008.JPG",
        J,
    ];
    let summer = ["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0002.MOV", J];
    let cloud_photos = paths(&["IMG_0012.HEIC", "IMG_0013.HEIC"]);
    let cloud_video = paths(&["IMG_0014.MOV"]);
    let all_cloud: BTreeSet<String> = cloud_photos.union(&cloud_video).cloned().collect();
    let all = roll_files();
    let cases: Vec<(Vec<&str>, Vec<&str>, BTreeSet<String>)> = vec![
        (
            vec!["--only", "photo"],
            photos.to_vec(),
            cloud_photos.clone(),
        ),
        (
            vec!["--only", "videos"],
            vec!["IMG_0004.MOV", "IMG_0009.MOV"],
            cloud_video.clone(),
        ),
        (
            vec!["--only", "live"],
            vec!["IMG_0002.JPG", "IMG_0002.MOV"],
            BTreeSet::new(),
        ),
        (
            vec!["--only", "screenshots"],
            vec!["IMG_0003.PNG"],
            BTreeSet::new(),
        ),
        (
            vec!["--exclude", "video,screenshot"],
            photos.to_vec(),
            cloud_photos.clone(),
        ),
        (
            vec!["--only", "slo-mo"],
            vec!["IMG_0009.MOV"],
            BTreeSet::new(),
        ),
        (
            vec!["--only", "selfie"],
            vec!["IMG_0006.JPG"],
            BTreeSet::new(),
        ),
        (
            vec!["--only", "burst"],
            vec!["IMG_0007.JPG", "IMG_0008.JPG"],
            BTreeSet::new(),
        ),
        (
            vec!["--only", "photo", "--exclude", "hidden,burst"],
            vec![
                "IMG_0001.JPG",
                "IMG_0002.JPG",
                "IMG_0002.MOV",
                "IMG_0006.JPG",
                J,
            ],
            cloud_photos.clone(),
        ),
        (
            vec!["--since", "2024-07"],
            vec![
                "IMG_0004.MOV",
                "IMG_0005.JPG",
                "IMG_0006.JPG",
                "IMG_0007.JPG",
                "IMG_0008.JPG",
                "IMG_0009.MOV",
            ],
            all_cloud.clone(),
        ),
        (
            vec!["--until", "2024-06"],
            vec![
                "IMG_0001.JPG",
                "IMG_0002.JPG",
                "IMG_0002.MOV",
                "IMG_0003.PNG",
                J,
            ],
            BTreeSet::new(),
        ),
        (
            vec!["--since", "2024-06-02", "--until", "2024-06-20"],
            vec!["IMG_0002.JPG", "IMG_0002.MOV", "IMG_0003.PNG", J],
            BTreeSet::new(),
        ),
        (
            vec!["--album", "Summer 2024"],
            summer.to_vec(),
            BTreeSet::new(),
        ),
        (
            vec!["--favorites"],
            vec!["IMG_0001.JPG", "IMG_0006.JPG"],
            BTreeSet::new(),
        ),
        (
            vec!["--favorites", "--only", "selfie"],
            vec!["IMG_0006.JPG"],
            BTreeSet::new(),
        ),
        (
            vec!["--album", "summer 2024", "--since", "2024-06-10"],
            vec![J],
            BTreeSet::new(),
        ),
        (
            vec!["--only", "album:Summer 2024,video"],
            vec![
                "IMG_0001.JPG",
                "IMG_0002.JPG",
                "IMG_0002.MOV",
                "IMG_0004.MOV",
                "IMG_0009.MOV",
                J,
            ],
            cloud_video.clone(),
        ),
        (
            vec!["--only", "live", "--since", "2024-06-03"],
            vec![],
            BTreeSet::new(),
        ),
        (
            vec!["--exclude", "live"],
            all.iter()
                .filter(|p| !p.contains("IMG_0002"))
                .map(String::as_str)
                .collect(),
            all_cloud.clone(),
        ),
    ];
    for (i, (filter, want, want_cloud)) in cases.iter().enumerate() {
        let dest = s.path(&format!("dest-{i}"));
        let mut args = vec!["backup", "--to", dest.to_str().unwrap(), "--json"];
        args.extend(filter.iter().copied());
        let r = sim.run(&s, &args);
        r.ok();
        let dev = &r.json()["devices"][0];
        let want = paths(want);
        assert_eq!(done(&dest), want, "{filter:?}: {dev}");
        assert_eq!(
            dev["copied"].as_u64().unwrap() as usize,
            want.len(),
            "{filter:?}"
        );
        assert_eq!(
            dev["filtered"].as_u64().unwrap() as usize,
            roll_files().len() - want.len(),
            "{filter:?}: {dev}"
        );
        assert_eq!(&cloud_paths(dev), want_cloud, "{filter:?}: {dev}");
        assert!(dev["failed"].as_array().unwrap().is_empty(), "{dev}");
    }

    // Words that are not categories are refused before anything is read.
    let r = sim.run(
        &s,
        &[
            "backup",
            "--to",
            s.path("x").to_str().unwrap(),
            "--only",
            "pictures",
        ],
    );
    r.code(2);
    assert!(
        r.stderr.contains("pictures") && r.stderr.contains("screen-recording"),
        "{}",
        r.stderr
    );
    let r = sim.run(
        &s,
        &[
            "backup",
            "--to",
            s.path("x").to_str().unwrap(),
            "--since",
            "June",
        ],
    );
    r.code(2);
    assert!(r.stderr.contains("YYYY-MM-DD"), "{}", r.stderr);
    assert!(!s.path("x").exists());
}

#[test]
fn the_library_categorises_and_tags_the_iphone_roll() {
    let s = Scratch::new();
    let manifest = s.roll("phone", &["--kind", "iphone"]);
    let sim = Sim::start(&s, &s.path("phone"), &[]);
    let dest = s.path("dest");
    let r = sim.run(&s, &["backup", "--to", dest.to_str().unwrap(), "--json"]);
    r.ok();
    assert!(
        r.stderr.is_empty() || !r.stderr.contains("warning"),
        "{}",
        r.stderr
    );
    let src = source_files(&s.path("phone"));
    let cats = categories(&dest);
    let by_hash: BTreeMap<String, (String, Vec<String>)> = catalog_files(&dest)
        .into_iter()
        .map(|(path, (hash, ..))| (hash, cats[&path].clone()))
        .collect();
    for f in &manifest {
        let path = f["path"].as_str().unwrap();
        let (category, tags) = &by_hash[&src[path]];
        assert_eq!(category, f["category"].as_str().unwrap(), "{path}");
        let mut want: Vec<String> = f["tags"]
            .as_array()
            .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        want.sort();
        assert_eq!(tags, &want, "{path}");
    }
    // `status` counts per category and tag, and lists what only iCloud holds.
    let st = s.run(&["status", "--to", dest.to_str().unwrap(), "--json"]);
    st.ok();
    let src0 = &st.json()["sources"][0];
    let cats: BTreeMap<String, u64> = src0["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_u64().unwrap()))
        .collect();
    let want: BTreeMap<String, u64> = [("photo", 6), ("live", 2), ("video", 2), ("screenshot", 1)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(cats, want);
    let human = s.run(&["status", "--to", dest.to_str().unwrap()]);
    human.ok();
    assert!(
        human.stdout.contains(ROLL_CLOUD_MESSAGE),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("DCIM/100APPLE/IMG_0014.MOV"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("album:Summer 2024 4"),
        "{}",
        human.stdout
    );

    // {category} in a template keeps a Live Photo's halves together.
    let by_cat = s.path("by-category");
    sim.run(
        &s,
        &[
            "backup",
            "--to",
            by_cat.to_str().unwrap(),
            "--template",
            "{category}/{year}/{name}",
        ],
    )
    .ok();
    let stored: BTreeSet<String> = store_files(&by_cat).into_keys().collect();
    for p in [
        "live/2024/IMG_0002.JPG",
        "live/2024/IMG_0002.MOV",
        "screenshot/2024/IMG_0003.PNG",
        "video/2024/IMG_0009.MOV",
    ] {
        assert!(stored.contains(p), "{p} in {stored:?}");
    }
}

#[test]
fn a_filtered_backup_then_a_full_one_copies_exactly_the_rest() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let sim = Sim::start(&s, &phone, &[]);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    let r = sim.run(
        &s,
        &[
            "backup", "--to", d, "--json", "--only", "video", "--since", "2024-08",
        ],
    );
    r.ok();
    let first = paths(&["IMG_0009.MOV"]);
    assert_eq!(done(&dest), first);
    let served_first = sim.stat("bytes_served");
    assert_eq!(
        served_first,
        fs::metadata(phone.join("DCIM/100APPLE/IMG_0009.MOV"))
            .unwrap()
            .len()
    );

    let r = sim.run(&s, &["backup", "--to", d, "--json"]);
    r.ok();
    let dev = &r.json()["devices"][0];
    assert_eq!(dev["already_backed_up"], 1, "{dev}");
    assert_eq!(
        dev["copied"].as_u64().unwrap() as usize,
        roll_files().len() - 1
    );
    assert_eq!(dev["filtered"], 0);
    assert_eq!(done(&dest), roll_files());
    // Exactly the rest was read: every byte of the roll once over both runs.
    let total: u64 = roll_files()
        .iter()
        .map(|p| fs::metadata(phone.join(p)).unwrap().len())
        .sum();
    assert_eq!(sim.stat("bytes_served"), total);
    assert_eq!(store_files(&dest).len(), roll_files().len());
    assert_store_consistent(&dest);
}

fn set_mtime(p: &Path, unix: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .unwrap();
}

#[test]
fn dates_guessed_before_reading_are_checked_again_after() {
    // A folder (no library): dates before reading come from names and mtimes.
    let s = Scratch::new();
    s.roll("SD", &[]);
    let sd = s.path("SD");
    // Taken 2024-05-19 (EXIF), copied onto the card on 2024-07-01: its mtime says July.
    let late = "DCIM/100MEDIA/IMG_0002.JPG";
    set_mtime(&sd.join(late), 1_719_835_200);
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    let from = sd.to_str().unwrap();
    let r = s.run(&[
        "backup", "--from", from, "--to", d, "--json", "--since", "2024-06",
    ]);
    r.ok();
    let got = done(&dest);
    let want: BTreeSet<String> = [
        "DCIM/Camera/IMG_20240825_160000.jpg",
        "DCIM/Camera/VID_20240720_193015.mp4",
        "Pictures/Screenshots/Screenshot_20240607-142233.png",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    assert_eq!(got, want, "{}", r.stdout);
    // The July mtime made it worth reading; its EXIF said May: dropped, not marked done.
    assert!(!got.contains(late));
    let all = s.run(&["backup", "--from", from, "--to", d, "--json"]);
    all.ok();
    let dev = &all.json()["devices"][0];
    assert_eq!(dev["already_backed_up"], 3, "{dev}");
    assert!(done(&dest).contains(late));
    assert_store_consistent(&dest);
}

#[test]
fn live_photos_stay_together_even_under_a_suffixed_name() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    // A second Live Photo IMG_0002 in 101APPLE, the same month: the names clash.
    for ext in ["JPG", "MOV"] {
        let mut bytes = fs::read(phone.join(format!("DCIM/100APPLE/IMG_0002.{ext}"))).unwrap();
        bytes.extend_from_slice(b"another moment");
        let to = phone.join(format!("DCIM/101APPLE/IMG_0002.{ext}"));
        fs::write(&to, bytes).unwrap();
        let when = fs::metadata(phone.join(format!("DCIM/100APPLE/IMG_0002.{ext}")))
            .unwrap()
            .modified()
            .unwrap();
        fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let sim = Sim::start(&s, &phone, &[]);
    let dest = s.path("dest");
    sim.run(
        &s,
        &["backup", "--to", dest.to_str().unwrap(), "--only", "live"],
    )
    .ok();
    let stored: Vec<String> = store_files(&dest).into_keys().collect();
    assert_eq!(stored.len(), 4, "{stored:?}");
    let stems: BTreeMap<String, Vec<String>> = stored.iter().fold(BTreeMap::new(), |mut m, p| {
        let (stem, ext) = p.rsplit_once('.').unwrap();
        m.entry(stem.to_string()).or_default().push(ext.to_string());
        m
    });
    assert_eq!(stems.len(), 2, "two pairs, each under one stem: {stored:?}");
    for exts in stems.values() {
        assert_eq!(exts, &["JPG", "MOV"], "{stored:?}");
    }
    let live_pairs: BTreeSet<Option<String>> = {
        let c = catalog(&dest);
        let mut q = c.prepare("SELECT live_pair FROM files").unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(live_pairs.len(), 2, "{live_pairs:?}");
    assert!(live_pairs.iter().all(Option::is_some));

    // Exported from the phone as a pair, and again from the store, whole.
    let out = s.path("out");
    let r = sim.run(
        &s,
        &[
            "export",
            "--to",
            out.to_str().unwrap(),
            "--only",
            "live",
            "--flat",
            "--json",
        ],
    );
    r.ok();
    let exported: BTreeSet<String> = store_files(&out).into_keys().collect();
    assert_eq!(exported.len(), 4, "{exported:?}");
    let stem_of = |p: &String| p.rsplit_once('.').unwrap().0.to_string();
    let stems: BTreeSet<String> = exported.iter().map(stem_of).collect();
    assert_eq!(stems.len(), 2, "{exported:?}");
    let out2 = s.path("out2");
    s.run(&[
        "export",
        "--from-store",
        dest.to_str().unwrap(),
        "--to",
        out2.to_str().unwrap(),
        "--only",
        "live",
    ])
    .ok();
    let again: BTreeSet<String> = store_files(&out2).into_values().collect();
    let want: BTreeSet<String> = store_files(&dest).into_values().collect();
    assert_eq!(again, want);
}

#[test]
fn icloud_only_assets_are_reported_with_the_message_and_exit_0() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    // One more, listed in DCIM as a placeholder that will not open.
    let mpath = phone.join("photos-manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    m["assets"]["DCIM/100APPLE/IMG_0015.JPG"] =
        serde_json::json!({"icloud": true, "placeholder": true});
    fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let sim = Sim::start(&s, &phone, &[]);
    assert!(
        phone.join("DCIM/100APPLE/IMG_0015.JPG").is_file(),
        "placeholder written"
    );
    let dest = s.path("dest");
    let d = dest.to_str().unwrap();
    let message = "3 photos and 1 video are only in iCloud (Optimize iPhone Storage). They \
        cannot be copied over USB; choose 'Download and Keep Originals' on the iPhone to \
        include them.";
    for run in 0..2 {
        let r = sim.run(&s, &["backup", "--to", d]);
        r.ok();
        assert!(r.stdout.contains(message), "run {run}: {}", r.stdout);
        assert!(!r.stdout.contains("failed"), "{}", r.stdout);
    }
    // The library said "not on the phone": the placeholder was never even opened.
    assert_eq!(sim.stat("file_opens") as usize, roll_files().len());
    let st = s.run(&["status", "--to", d, "--json"]);
    st.ok();
    let listed: BTreeSet<String> = st.json()["sources"][0]["cloud_only"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed,
        paths(&[
            "IMG_0012.HEIC",
            "IMG_0013.HEIC",
            "IMG_0014.MOV",
            "IMG_0015.JPG"
        ])
    );
    let human = s.run(&["status", "--to", d]);
    assert!(human.stdout.contains(message), "{}", human.stdout);
    assert!(
        human.stdout.contains("DCIM/100APPLE/IMG_0015.JPG"),
        "{}",
        human.stdout
    );
    drop(sim);

    // A library that does not say where the original is (no resources recorded): the
    // placeholder is tried, will not open, and is reported the same way, not failed.
    {
        let c = rusqlite::Connection::open(phone.join("PhotoData/Photos.sqlite")).unwrap();
        c.execute_batch("DELETE FROM ZINTERNALRESOURCE").unwrap();
    }
    let sim = Sim::start(&s, &phone, &["--photos-db", "keep"]);
    let fresh = s.path("fresh");
    let r = sim.run(&s, &["backup", "--to", fresh.to_str().unwrap(), "--json"]);
    r.ok();
    let dev = &r.json()["devices"][0];
    assert!(dev["failed"].as_array().unwrap().is_empty(), "{dev}");
    assert!(
        cloud_paths(dev).contains("DCIM/100APPLE/IMG_0015.JPG"),
        "{dev}"
    );
    assert!(!done(&fresh).contains("DCIM/100APPLE/IMG_0015.JPG"));
    assert_eq!(done(&fresh), roll_files());
}

#[test]
fn edits_made_in_photos_are_backed_up_beside_their_originals() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let mpath = phone.join("photos-manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    m["assets"]["DCIM/100APPLE/IMG_0001.JPG"]["edited"] = true.into();
    fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let sim = Sim::start(&s, &phone, &[]);
    let dest = s.path("dest");
    let r = sim.run(&s, &["backup", "--to", dest.to_str().unwrap(), "--json"]);
    r.ok();
    let render = "PhotoData/Mutations/DCIM/100APPLE/IMG_0001/Adjustments/FullSizeRender.jpg";
    let mut want = roll_files();
    want.insert(render.to_string());
    assert_eq!(done(&dest), want);
    let cats = categories(&dest);
    let (category, tags) = &cats["Virtual iPhone/2024/06/IMG_E0001.jpg"];
    assert_eq!(category, "photo");
    assert_eq!(tags, &["album:Summer 2024", "edited", "favorite"]);
    // The original is untouched and not "edited".
    assert!(!cats["Virtual iPhone/2024/06/IMG_0001.JPG"]
        .1
        .contains(&"edited".to_string()));
    // Selected as edits.
    let only = s.path("only-edits");
    sim.run(
        &s,
        &["backup", "--to", only.to_str().unwrap(), "--only", "edited"],
    )
    .ok();
    assert_eq!(done(&only), [render.to_string()].into());
}

#[test]
fn a_missing_locked_or_unfamiliar_library_costs_one_warning() {
    let s = Scratch::new();
    s.roll("phone", &["--kind", "iphone"]);
    let phone = s.path("phone");
    let db = phone.join("PhotoData/Photos.sqlite");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("missing", vec!["--photos-db", "keep"]),
        ("unfamiliar", vec!["--photos-db", "keep"]),
        ("locked", vec!["--unreadable", "/PhotoData/Photos.sqlite"]),
    ];
    for (case, extra) in cases {
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(phone.join(format!("PhotoData/Photos.sqlite{suffix}")));
        }
        if case == "unfamiliar" {
            rusqlite::Connection::open(&db)
                .unwrap()
                .execute_batch("CREATE TABLE ZPHOTO (Z_PK INTEGER PRIMARY KEY, ZNAME TEXT)")
                .unwrap();
        }
        let sim = Sim::start(&s, &phone, &extra);
        let dest = s.path(&format!("dest-{case}"));
        let r = sim.run(&s, &["backup", "--to", dest.to_str().unwrap()]);
        r.ok();
        let all = format!("{}{}", r.stdout, r.stderr);
        assert_eq!(
            all.matches("Photos library").count(),
            1,
            "{case}: one warning:\n{all}"
        );
        assert!(all.contains("warning:"), "{case}: {all}");
        // Every file copied; the file rules decide: the pair is still a Live Photo by
        // its names, the screenshot only a PNG photo, no favourites, nothing in iCloud.
        assert_eq!(done(&dest), roll_files(), "{case}");
        let cats = categories(&dest);
        let cat_of = |name: &str| {
            cats.iter()
                .find(|(p, _)| p.ends_with(name))
                .map(|(_, c)| c.clone())
                .unwrap()
        };
        assert_eq!(cat_of("IMG_0002.MOV").0, "live", "{case}");
        assert_eq!(cat_of("IMG_0003.PNG").0, "photo", "{case}");
        assert_eq!(
            cat_of("IMG_0006.JPG").1,
            ["selfie"],
            "{case}: the lens is in the EXIF"
        );
        assert!(!all.contains("only in iCloud"), "{case}: {all}");
    }
}

#[test]
fn categories_of_every_real_fixture() {
    let Some(fx) = fixtures("categories of real camera files") else {
        return;
    };
    let s = Scratch::new();
    let card = s.path("card/DCIM/100TEST");
    fs::create_dir_all(&card).unwrap();
    for e in fs::read_dir(&fx).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name != "SOURCES.md" {
            fs::copy(e.path(), card.join(&name)).unwrap();
        }
    }
    let dest = s.path("dest");
    s.backup_from("card", &dest).ok();
    let src = source_files(&s.path("card"));
    let cats = categories(&dest);
    let files = catalog_files(&dest);
    let of = |name: &str| {
        let h = &src[&format!("DCIM/100TEST/{name}")];
        let path = files.iter().find(|(_, v)| &v.0 == h).unwrap().0;
        cats[path].clone()
    };
    for (name, want) in [
        ("iphone-13-pro-max.HEIC", "photo"),
        ("IMG_5195.HEIC", "photo"),
        ("nokia-8.3-5g.heif", "photo"),
        ("nikon-gps-DSCN0010.jpg", "photo"),
        ("canon-40d.jpg", "photo"),
        ("corrupted-exif.jpg", "photo"),
        ("exif.jpg", "photo"),
        ("exif-no-tz.jpg", "photo"),
        ("exif.png", "photo"),
        ("motion-photo-pixel.MP.jpg", "live"),
        ("meta.mov", "video"),
        ("meta.mp4", "video"),
        ("clip.3gp", "video"),
        ("clip.webm", "video"),
        ("canon-r6.cr3", "raw"),
        ("broken.jpg", "photo"),
        ("endless-loop.jpg", "photo"),
        ("oom-large-box.heic", "photo"),
        ("crash-moov-trak.mov", "video"),
    ] {
        let (category, tags) = of(name);
        assert_eq!(category, want, "{name}");
        assert!(tags.is_empty(), "{name}: {tags:?}");
    }
    assert_eq!(files.len(), src.len(), "every fixture stored");
    // Filters over them: raws and live photos only.
    let only = s.path("only");
    s.run(&[
        "backup",
        "--from",
        s.path("card").to_str().unwrap(),
        "--to",
        only.to_str().unwrap(),
        "--only",
        "raw,live",
    ])
    .ok();
    assert_eq!(
        done(&only),
        [
            "DCIM/100TEST/canon-r6.cr3",
            "DCIM/100TEST/motion-photo-pixel.MP.jpg"
        ]
        .iter()
        .map(|p| p.to_string())
        .collect()
    );
}
