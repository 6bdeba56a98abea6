//! `verify`, `reindex` and the catalog's safety copy, through the real binary.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::*;

fn backed_up(s: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    s.roll("SD", &[]);
    let sd = s.path("SD");
    let dest = s.path("dest");
    s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ])
    .ok();
    (sd, dest)
}

#[test]
fn verify_finds_flipped_truncated_deleted_and_unknown_files() {
    let s = Scratch::new();
    let (_, dest) = backed_up(&s);
    let d = dest.to_str().unwrap();
    let r = s.run(&["verify", "--to", d, "--json"]);
    r.ok();
    let j = r.json();
    let stored = store_files(&dest);
    assert_eq!(j["checked"].as_u64().unwrap() as usize, stored.len());
    assert_eq!(j["intact"], j["checked"]);

    let paths: Vec<&String> = stored.keys().collect();
    // A flipped bit, the same size: only the hash can tell.
    let flipped = dest.join(paths[0]);
    let mut bytes = fs::read(&flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&flipped, &bytes).unwrap();
    let truncated = dest.join(paths[1]);
    let len = fs::metadata(&truncated).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    fs::remove_file(dest.join(paths[2])).unwrap();
    fs::write(dest.join("stray.jpg"), b"not from offload").unwrap();

    let r = s.run(&["verify", "--to", d, "--json"]);
    r.code(1);
    let j = r.json();
    let list = |k: &str| -> Vec<String> {
        j[k].as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["path"]
                    .as_str()
                    .unwrap_or_else(|| p.as_str().unwrap())
                    .to_string()
            })
            .collect()
    };
    let mut corrupt = list("corrupt");
    corrupt.sort();
    let mut want = vec![paths[0].clone(), paths[1].clone()];
    want.sort();
    assert_eq!(corrupt, want);
    assert_eq!(list("missing"), vec![paths[2].clone()]);
    assert_eq!(list("unknown"), vec!["stray.jpg".to_string()]);
    assert_eq!(j["intact"].as_u64().unwrap() as usize, stored.len() - 3);

    // A sample checks a share, and still catches what it meets.
    let r = s.run(&["verify", "--to", d, "--sample", "100", "--json"]);
    r.code(1);
    assert_eq!(r.json()["checked"].as_u64().unwrap() as usize, stored.len());
    s.run(&["verify", "--to", d, "--sample", "0"]).code(2);

    // The next backup copies what the store lost (the sighting is known, but the content
    // is not on the disk any more... it stays a known file: verify is what tells).
    let r = s.run(&["verify", "--to", s.path("nowhere").to_str().unwrap()]);
    r.code(4);
}

#[test]
fn reindex_rebuilds_a_lost_catalog_and_nothing_is_stored_twice() {
    let s = Scratch::new();
    let (sd, dest) = backed_up(&s);
    let before: BTreeMap<String, String> = catalog_files(&dest)
        .into_iter()
        .map(|(p, v)| (p, v.0))
        .collect();
    for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = fs::remove_file(dest.join(".offload").join(f));
    }
    let r = s.run(&["reindex", "--to", dest.to_str().unwrap(), "--json"]);
    r.ok();
    assert_eq!(r.json()["files"].as_u64().unwrap() as usize, before.len());
    let after: BTreeMap<String, String> = catalog_files(&dest)
        .into_iter()
        .map(|(p, v)| (p, v.0))
        .collect();
    assert_eq!(
        after, before,
        "every stored file is back in the catalog with its hash"
    );
    // Dates and categories are derived again from the files.
    let cats: Vec<String> = catalog_files(&dest).into_values().map(|v| v.3).collect();
    assert!(
        cats.iter().any(|c| c == "video") && cats.iter().any(|c| c == "screenshot"),
        "{cats:?}"
    );

    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    r.ok();
    let dev = &r.json()["devices"][0];
    assert_eq!(dev["copied"], 0, "nothing is stored twice: {dev}");
    assert_eq!(store_files(&dest).len(), before.len());
    assert_store_consistent(&dest);
    // And the run after that reads nothing: the sightings were learnt again.
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    let dev = &r.json()["devices"][0];
    assert_eq!(dev["duplicates"], 0);
    assert_eq!(dev["copied"], 0);
}

#[test]
fn a_damaged_catalog_is_refused_and_its_copy_offered() {
    let s = Scratch::new();
    let (sd, dest) = backed_up(&s);
    let bak = dest.join(".offload/catalog.sqlite.bak");
    let c = rusqlite::Connection::open(&bak).unwrap();
    let check: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "the copy after the run is sound");
    let n: i64 = c
        .query_row("SELECT count(*) FROM files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, store_files(&dest).len());
    drop(c);

    // Damage the catalog's pages past the header (the header intact, the B-trees not).
    let cat = dest.join(".offload/catalog.sqlite");
    let _ = fs::remove_file(dest.join(".offload/catalog.sqlite-wal"));
    let _ = fs::remove_file(dest.join(".offload/catalog.sqlite-shm"));
    let mut bytes = fs::read(&cat).unwrap();
    assert!(bytes.len() > 8192, "catalog has several pages");
    for b in &mut bytes[4096..] {
        *b = 0x5A;
    }
    fs::write(&cat, &bytes).unwrap();
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ]);
    r.code(4);
    assert!(
        r.stderr.contains("damaged")
            && r.stderr.contains("catalog.sqlite.bak")
            && r.stderr.contains("offload reindex"),
        "{}",
        r.stderr
    );
    // The copy restores it.
    fs::copy(&bak, &cat).unwrap();
    let r = s.run(&[
        "backup",
        "--from",
        sd.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
        "--json",
    ]);
    r.ok();
    assert_eq!(r.json()["devices"][0]["copied"], 0);
}
