//! The virtual iPhone's Photos library: `PhotoData/Photos.sqlite` (with `-wal` and
//! `-shm`) generated for the files under `DCIM`, with the tables and columns a real
//! phone has (`ZASSET`, `ZADDITIONALASSETATTRIBUTES`, `ZEXTENDEDATTRIBUTES`,
//! `ZINTERNALRESOURCE`, `ZGENERICALBUM`, the album join `Z_<n>ASSETS` numbered as the
//! simulated iOS version numbers it, `Z_PRIMARYKEY`), so that the reader in
//! `source/iphone/photos_db.rs` is tested against the shape a phone has.
//!
//! A manifest beside the photos, [`MANIFEST`], says what the files cannot: favourites,
//! albums, hidden and trashed assets, bursts, screenshots, slo-mo..., and iCloud-only
//! assets — with no file at all, or with a placeholder in DCIM that the phone lists
//! but will not open.
//!
//! The last changes (album memberships, favourites) are left in the write-ahead log, as
//! on a phone that is in use: a reader that ignores the `-wal` misses them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// The manifest's file name, at the top of the served folder (never listed: the phone
/// shows only `DCIM` and `PhotoData` to a camera-roll reader).
pub const MANIFEST: &str = "photos-manifest.json";

/// Seconds from the Unix epoch to Core Data's (2001-01-01T00:00:00Z).
const CORE_DATA_EPOCH: i64 = 978_307_200;

/// Core Data entity numbers that stay put across versions in this simulation.
const ENT_ASSET: i64 = 3;

/// What the manifest may say about one asset, by its path under the served folder
/// (`DCIM/100APPLE/IMG_0001.HEIC`). Everything is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssetSpec {
    /// `photo`, `video`, `screenshot`, `screen-recording`, `live`, `panorama`, `slo-mo`,
    /// `time-lapse`. Default: from the extension; a still with a `.MOV` of the same
    /// stem is a Live Photo.
    pub kind: Option<String>,
    pub favorite: bool,
    pub hidden: bool,
    /// In Recently Deleted.
    pub trashed: bool,
    pub albums: Vec<String>,
    /// The burst's identifier: frames of one burst share it.
    pub burst: Option<String>,
    /// The original is only in iCloud.
    pub icloud: bool,
    /// With `icloud`: DCIM holds a small placeholder that the phone will not open.
    pub placeholder: bool,
    /// When it was taken, RFC 3339 with its offset (`2024-06-01T09:30:00+02:00`).
    /// Default: the file's modification time.
    pub date: Option<String>,
    /// The lens, as ZEXTENDEDATTRIBUTES keeps it ("iPhone 12 front camera 2.71mm f/2.2").
    pub lens: Option<String>,
    /// Edited in Photos (ZHASADJUSTMENTS): a render is written under
    /// `PhotoData/Mutations/<dir>/<stem>/Adjustments/FullSizeRender.<ext>` if missing.
    pub edited: bool,
}

/// The manifest file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    pub assets: BTreeMap<String, AssetSpec>,
}

/// What the generation produced that the device must act on.
#[derive(Debug, Default)]
pub struct Generated {
    /// AFC paths (`/DCIM/...`) of placeholders: listed, but opening them fails.
    pub placeholders: Vec<String>,
    pub assets: usize,
}

/// The album join table's entity number by iOS major version (Core Data renumbers its
/// entities when the model changes).
fn album_entity(ios_version: &str) -> i64 {
    match ios_version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
    {
        Some(..=14) => 26,
        Some(15) => 27,
        Some(16) => 28,
        Some(17) => 30,
        _ => 31,
    }
}

/// One asset to write.
struct Asset {
    dir: String,
    file: String,
    kind: i64,
    subtype: i64,
    spec: AssetSpec,
    /// Core Data seconds.
    created: f64,
    offset_s: i32,
    /// The `.MOV` of a Live Photo, as a resource.
    motion: Option<String>,
    size: u64,
}

fn is_video_ext(ext: &str) -> bool {
    matches!(ext, "mov" | "mp4" | "m4v")
}

fn ext_of(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads `root/MANIFEST` if there is one.
pub fn read_manifest(root: &Path) -> Result<Manifest> {
    let p = root.join(MANIFEST);
    match std::fs::read(&p) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", p.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// AFC paths of the placeholders the manifest names (iCloud-only assets with a file in
/// DCIM that the phone will not open), whether or not the library is generated.
pub fn placeholders(root: &Path) -> Result<Vec<String>> {
    Ok(read_manifest(root)?
        .assets
        .iter()
        .filter(|(_, a)| a.icloud && a.placeholder)
        .map(|(p, _)| format!("/{p}"))
        .collect())
}

/// Every regular, non-hidden file under `root/DCIM`, as `DCIM/...` paths, sorted.
fn dcim_files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let dcim = root.join("DCIM");
    if !dcim.is_dir() {
        return Ok(out);
    }
    for e in walkdir::WalkDir::new(&dcim)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !e.file_name().to_string_lossy().starts_with('.'))
    {
        let e = e?;
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(out)
}

/// Writes `root/PhotoData/Photos.sqlite` (and its `-wal`, `-shm`) for the files under
/// `root/DCIM` and the manifest, replacing any library there. Placeholders the
/// manifest asks for are created if missing.
pub fn generate(root: &Path, ios_version: &str) -> Result<Generated> {
    let manifest = read_manifest(root)?;
    let mut generated = Generated::default();
    for (path, spec) in &manifest.assets {
        if spec.icloud && spec.placeholder {
            let p = root.join(path);
            if !p.exists() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                // What a phone keeps of an optimised original: a few KB of nothing useful.
                std::fs::write(&p, vec![0u8; 2048])?;
            }
            generated.placeholders.push(format!("/{path}"));
        }
    }
    // Edits: Photos keeps the original and writes the render beside its library.
    for (path, spec) in &manifest.assets {
        let original = root.join(path);
        if !spec.edited || !original.is_file() {
            continue;
        }
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        let (stem, ext) = file.rsplit_once('.').unwrap_or((file, ""));
        let render_ext = match ext.to_ascii_lowercase().as_str() {
            "mov" | "mp4" => "mov",
            "heic" => "heic",
            _ => "jpg",
        };
        let render = root.join(format!(
            "PhotoData/Mutations/{dir}/{stem}/Adjustments/FullSizeRender.{render_ext}"
        ));
        if !render.exists() {
            std::fs::create_dir_all(render.parent().expect("has a folder"))?;
            // The same picture, changed: readers ignore bytes after a JPEG's end.
            let mut bytes = std::fs::read(&original)?;
            bytes.extend_from_slice(b"offload sim: edited render");
            std::fs::write(&render, bytes)?;
            if let Ok(t) = std::fs::metadata(&original).and_then(|m| m.modified()) {
                std::fs::File::options()
                    .write(true)
                    .open(&render)?
                    .set_modified(t)?;
            }
        }
    }
    let mut files = dcim_files(root)?;
    for (path, spec) in &manifest.assets {
        if spec.icloud && !spec.placeholder && !files.contains(path) {
            files.push(path.clone());
        }
    }
    files.sort();

    // Live Photos: a still and a `.MOV` of one stem are one asset.
    let mut by_stem: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        let stem = f
            .rsplit_once('.')
            .map_or(f.as_str(), |(s, _)| s)
            .to_lowercase();
        by_stem.entry(stem).or_default().push(f.clone());
    }
    let mut motion_of: BTreeMap<String, String> = BTreeMap::new();
    for group in by_stem.values() {
        let still = group
            .iter()
            .find(|f| matches!(ext_of(f).as_str(), "heic" | "jpg" | "jpeg"));
        let motion = group.iter().find(|f| ext_of(f) == "mov");
        if let (Some(s), Some(m)) = (still, motion) {
            motion_of.insert(s.clone(), m.clone());
        }
    }
    let motions: Vec<&String> = motion_of.values().collect();

    let tz = TimeZone::system();
    let mut assets = Vec::new();
    for f in &files {
        if motions.contains(&f) {
            continue;
        }
        let spec = manifest.assets.get(f).cloned().unwrap_or_default();
        let (dir, file) = f.rsplit_once('/').unwrap_or(("", f));
        let video = is_video_ext(&ext_of(file));
        let motion = motion_of.get(f).cloned();
        let (kind, subtype) = match spec.kind.as_deref() {
            Some("video") => (1, 0),
            Some("screen-recording") => (1, 103),
            Some("slo-mo") => (1, 101),
            Some("time-lapse") => (1, 102),
            Some("screenshot") => (0, 10),
            Some("panorama") => (0, 1),
            Some("live") => (0, 2),
            Some("photo") => (0, 0),
            Some(other) => anyhow::bail!("{MANIFEST}: {f}: unknown kind {other:?}"),
            None if video => (1, 0),
            None if motion.is_some() => (0, 2),
            None => (0, 0),
        };
        let disk = root.join(f);
        let meta = std::fs::metadata(&disk).ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let when: Timestamp = match &spec.date {
            Some(d) => d
                .parse::<Timestamp>()
                .with_context(|| format!("{MANIFEST}: {f}: bad date {d:?}"))?,
            None => meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| Timestamp::try_from(t).ok())
                .unwrap_or(Timestamp::UNIX_EPOCH),
        };
        let offset_s = match &spec.date {
            Some(d) => d
                .parse::<jiff::Zoned>()
                .ok()
                .map(|z| z.offset().seconds())
                .or_else(|| offset_in_text(d))
                .unwrap_or(0),
            None => tz.to_offset(when).seconds(),
        };
        assets.push(Asset {
            dir: dir.to_string(),
            file: file.to_string(),
            kind,
            subtype,
            spec,
            created: (when.as_second() - CORE_DATA_EPOCH) as f64
                + f64::from(when.subsec_nanosecond()) / 1e9,
            offset_s,
            motion,
            size,
        });
    }
    generated.assets = assets.len();
    write_db(root, &assets, album_entity(ios_version))?;
    Ok(generated)
}

/// `…+02:00` → 7200 (a date with an offset but no zone name).
fn offset_in_text(d: &str) -> Option<i32> {
    let tail = d.get(d.len().checked_sub(6)?..)?;
    let sign = match tail.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = tail[1..].split_once(':')?;
    Some(sign * (h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60))
}

/// A stable UUID-looking string from a seed.
fn uuid(seed: &str) -> String {
    let h = blake3::hash(seed.as_bytes()).to_hex().to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The schema, with the album entity numbered `n`. A keyword join numbered `n + 1`
/// also ends in `ASSETS`: a reader must tell the album join by its columns.
fn schema(n: i64) -> String {
    let k = n + 1;
    format!(
        "
CREATE TABLE Z_PRIMARYKEY (Z_ENT INTEGER PRIMARY KEY, Z_NAME VARCHAR, Z_SUPER INTEGER, Z_MAX INTEGER);
CREATE TABLE Z_METADATA (Z_VERSION INTEGER PRIMARY KEY, Z_UUID VARCHAR(255), Z_PLIST BLOB);
CREATE TABLE ZASSET (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER,
    ZAVALANCHEKIND INTEGER, ZAVALANCHEPICKTYPE INTEGER, ZCLOUDLOCALSTATE INTEGER,
    ZCOMPLETE INTEGER, ZFAVORITE INTEGER, ZHASADJUSTMENTS INTEGER, ZHIDDEN INTEGER,
    ZKIND INTEGER, ZKINDSUBTYPE INTEGER, ZPLAYBACKSTYLE INTEGER, ZSAVEDASSETTYPE INTEGER,
    ZTRASHEDSTATE INTEGER, ZVISIBILITYSTATE INTEGER, ZHEIGHT INTEGER, ZWIDTH INTEGER,
    ZADDITIONALATTRIBUTES INTEGER, ZEXTENDEDATTRIBUTES INTEGER,
    ZADDEDDATE TIMESTAMP, ZDATECREATED TIMESTAMP, ZMODIFICATIONDATE TIMESTAMP,
    ZTRASHEDDATE TIMESTAMP, ZDURATION FLOAT,
    ZAVALANCHEUUID VARCHAR, ZDIRECTORY VARCHAR, ZFILENAME VARCHAR, ZUNIFORMTYPEIDENTIFIER VARCHAR,
    ZUUID VARCHAR);
CREATE TABLE ZADDITIONALASSETATTRIBUTES (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER,
    ZASSET INTEGER, ZORIGINALFILESIZE INTEGER, ZTIMEZONEOFFSET INTEGER,
    ZORIGINALFILENAME VARCHAR, ZTIMEZONENAME VARCHAR, ZIMPORTEDBY INTEGER);
CREATE TABLE ZEXTENDEDATTRIBUTES (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER,
    ZASSET INTEGER, ZCAMERAMAKE VARCHAR, ZCAMERAMODEL VARCHAR, ZLENSMODEL VARCHAR);
CREATE TABLE ZINTERNALRESOURCE (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER,
    ZASSET INTEGER, ZDATASTORESUBTYPE INTEGER, ZLOCALAVAILABILITY INTEGER,
    ZREMOTEAVAILABILITY INTEGER, ZRECIPEID INTEGER, ZRESOURCETYPE INTEGER, ZVERSION INTEGER,
    ZDATALENGTH INTEGER, ZTRASHEDSTATE INTEGER);
CREATE TABLE ZGENERICALBUM (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, Z_OPT INTEGER,
    ZKIND INTEGER, ZTRASHEDSTATE INTEGER, ZCACHEDCOUNT INTEGER, ZPARENTFOLDER INTEGER,
    ZTITLE VARCHAR, ZUUID VARCHAR);
CREATE TABLE Z_{n}ASSETS (Z_{n}ALBUMS INTEGER, Z_{ENT_ASSET}ASSETS INTEGER, Z_FOK_{ENT_ASSET}ASSETS INTEGER,
    PRIMARY KEY (Z_{n}ALBUMS, Z_{ENT_ASSET}ASSETS));
CREATE TABLE Z_{k}ASSETS (Z_{k}KEYWORDS INTEGER, Z_{ENT_ASSET}ASSETS INTEGER);
CREATE TABLE Z_{ENT_ASSET}MEMORIESBEINGCURATEDASSETS (Z_{ENT_ASSET}CURATEDASSETS INTEGER, Z_44MEMORIESBEINGCURATEDASSETS INTEGER);
CREATE INDEX ZASSET_ZDIRECTORY_ZFILENAME ON ZASSET (ZDIRECTORY, ZFILENAME);
"
    )
}

fn write_db(root: &Path, assets: &[Asset], n: i64) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("offload-sim-photos-")
        .tempdir()?;
    let db = work.path().join("Photos.sqlite");
    let conn = Connection::open(&db)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))?;
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
    conn.execute_batch(&schema(n))?;
    conn.execute_batch(&format!(
        "INSERT INTO Z_PRIMARYKEY VALUES (1, 'AdditionalAssetAttributes', 0, {count});
         INSERT INTO Z_PRIMARYKEY VALUES ({ENT_ASSET}, 'Asset', 0, {count});
         INSERT INTO Z_PRIMARYKEY VALUES (18, 'ExtendedAttributes', 0, {count});
         INSERT INTO Z_PRIMARYKEY VALUES (25, 'InternalResource', 0, 0);
         INSERT INTO Z_PRIMARYKEY VALUES ({n}, 'GenericAlbum', 0, 0);
         INSERT INTO Z_PRIMARYKEY VALUES (44, 'Memory', 0, 0);",
        count = assets.len()
    ))?;

    // The albums: the user's (ZKIND 2) from the manifest, plus what every library has
    // and a reader must not take for a user's album.
    let mut titles: Vec<String> = assets.iter().flat_map(|a| a.spec.albums.clone()).collect();
    titles.sort();
    titles.dedup();
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO ZGENERICALBUM (Z_PK, Z_ENT, Z_OPT, ZKIND, ZTRASHEDSTATE, ZTITLE, ZUUID)
         VALUES (1, ?1, 1, 3999, 0, NULL, ?2)",
        params![n, uuid("root-folder")],
    )?;
    tx.execute(
        "INSERT INTO ZGENERICALBUM (Z_PK, Z_ENT, Z_OPT, ZKIND, ZTRASHEDSTATE, ZTITLE, ZUUID)
         VALUES (2, ?1, 1, 1552, 0, 'Imported by Photos', ?2)",
        params![n, uuid("imports")],
    )?;
    tx.execute(
        "INSERT INTO ZGENERICALBUM (Z_PK, Z_ENT, Z_OPT, ZKIND, ZTRASHEDSTATE, ZTITLE, ZUUID)
         VALUES (3, ?1, 1, 2, 1, 'Deleted album', ?2)",
        params![n, uuid("deleted-album")],
    )?;
    let album_pk = |t: &str| 10 + titles.iter().position(|x| x == t).expect("listed") as i64;
    for t in &titles {
        tx.execute(
            "INSERT INTO ZGENERICALBUM (Z_PK, Z_ENT, Z_OPT, ZKIND, ZTRASHEDSTATE, ZPARENTFOLDER, ZTITLE, ZUUID)
             VALUES (?1, ?2, 1, 2, 0, 1, ?3, ?4)",
            params![album_pk(t), n, t, uuid(&format!("album:{t}"))],
        )?;
    }
    let mut resource = 0i64;
    for (i, a) in assets.iter().enumerate() {
        let pk = i as i64 + 1;
        let s = &a.spec;
        let uti = match ext_of(&a.file).as_str() {
            "heic" => "public.heic",
            "jpg" | "jpeg" => "public.jpeg",
            "png" => "public.png",
            "dng" => "com.adobe.raw-image",
            "mp4" => "public.mpeg-4",
            _ => "com.apple.quicktime-movie",
        };
        tx.execute(
            "INSERT INTO ZASSET (Z_PK, Z_ENT, Z_OPT, ZAVALANCHEKIND, ZAVALANCHEPICKTYPE,
                ZCLOUDLOCALSTATE, ZCOMPLETE, ZFAVORITE, ZHASADJUSTMENTS, ZHIDDEN, ZKIND,
                ZKINDSUBTYPE, ZPLAYBACKSTYLE, ZSAVEDASSETTYPE, ZTRASHEDSTATE, ZVISIBILITYSTATE,
                ZHEIGHT, ZWIDTH, ZADDITIONALATTRIBUTES, ZEXTENDEDATTRIBUTES, ZADDEDDATE,
                ZDATECREATED, ZMODIFICATIONDATE, ZTRASHEDDATE, ZDURATION, ZAVALANCHEUUID,
                ZDIRECTORY, ZFILENAME, ZUNIFORMTYPEIDENTIFIER, ZUUID)
             VALUES (?1, ?2, 1, ?3, ?4, 1, 1, 0, ?5, ?6, ?7, ?8, ?9, 3, ?10, 0, 3024, 4032, ?1, ?1,
                ?11, ?11, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                pk,
                ENT_ASSET,
                if s.burst.is_some() { 1 } else { 0 },
                if s.burst.is_some() { 2 } else { 0 },
                s.edited as i64,
                s.hidden as i64,
                a.kind,
                a.subtype,
                if a.kind == 1 {
                    4
                } else if a.subtype == 2 {
                    3
                } else {
                    1
                },
                s.trashed as i64,
                a.created,
                s.trashed.then_some(a.created + 86_400.0),
                if a.kind == 1 { 12.5 } else { 0.0 },
                s.burst,
                a.dir,
                a.file,
                uti,
                uuid(&format!("asset:{}/{}", a.dir, a.file)),
            ],
        )?;
        tx.execute(
            "INSERT INTO ZADDITIONALASSETATTRIBUTES (Z_PK, Z_ENT, Z_OPT, ZASSET, ZORIGINALFILESIZE,
                ZTIMEZONEOFFSET, ZORIGINALFILENAME, ZTIMEZONENAME, ZIMPORTEDBY)
             VALUES (?1, 1, 1, ?1, ?2, ?3, ?4, ?5, 1)",
            params![
                pk,
                a.size as i64,
                a.offset_s,
                a.file,
                format!(
                    "GMT{:+03}{:02}",
                    a.offset_s / 3600,
                    (a.offset_s.abs() % 3600) / 60
                )
            ],
        )?;
        tx.execute(
            "INSERT INTO ZEXTENDEDATTRIBUTES (Z_PK, Z_ENT, Z_OPT, ZASSET, ZCAMERAMAKE, ZCAMERAMODEL, ZLENSMODEL)
             VALUES (?1, 18, 1, ?1, 'Apple', 'iPhone 12', ?2)",
            params![
                pk,
                s.lens
                    .clone()
                    .unwrap_or_else(|| "iPhone 12 back dual wide camera 4.2mm f/1.6".into())
            ],
        )?;
        let local = if s.icloud { -1 } else { 1 };
        let mut add_resource = |rtype: i64, version: i64, recipe: i64, avail: i64, len: u64| {
            resource += 1;
            tx.execute(
                "INSERT INTO ZINTERNALRESOURCE (Z_PK, Z_ENT, Z_OPT, ZASSET, ZDATASTORESUBTYPE,
                    ZLOCALAVAILABILITY, ZREMOTEAVAILABILITY, ZRECIPEID, ZRESOURCETYPE, ZVERSION,
                    ZDATALENGTH, ZTRASHEDSTATE)
                 VALUES (?1, 25, 1, ?2, 1, ?3, 1, ?4, ?5, ?6, ?7, 0)",
                params![resource, pk, avail, recipe, rtype, version, len as i64],
            )
        };
        // The original, its thumbnail (always on the phone, even for an iCloud-only
        // original: a reader must look at originals only) and a Live Photo's video.
        add_resource(if a.kind == 1 { 1 } else { 0 }, 0, 0, local, a.size)?;
        add_resource(0, 0, 65737, 1, 30_000)?;
        if a.motion.is_some() {
            add_resource(3, 0, 0, local, a.size)?;
        }
    }
    // An album entry in the trashed album, which a reader must ignore.
    if !assets.is_empty() {
        tx.execute(&format!("INSERT INTO Z_{n}ASSETS VALUES (3, 1, 1)"), [])?;
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;

    // The phone's latest changes stay in the log: album memberships and favourites.
    let tx = conn.unchecked_transaction()?;
    for (i, a) in assets.iter().enumerate() {
        let pk = i as i64 + 1;
        for (k, t) in a.spec.albums.iter().enumerate() {
            tx.execute(
                &format!("INSERT OR IGNORE INTO Z_{n}ASSETS VALUES (?1, ?2, ?3)"),
                params![album_pk(t), pk, k as i64 + 1],
            )?;
        }
        if a.spec.favorite {
            tx.execute("UPDATE ZASSET SET ZFAVORITE = 1 WHERE Z_PK = ?1", [pk])?;
        }
    }
    for t in &titles {
        tx.execute(
            &format!(
                "UPDATE ZGENERICALBUM SET ZCACHEDCOUNT = (SELECT count(*) FROM Z_{n}ASSETS WHERE Z_{n}ALBUMS = ?1) WHERE Z_PK = ?1"
            ),
            [album_pk(t)],
        )?;
    }
    tx.commit()?;

    // Copy the three files while the connection is open, as a phone in use has them.
    let out = root.join("PhotoData");
    std::fs::create_dir_all(&out)?;
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("Photos.sqlite{suffix}");
        let to: PathBuf = out.join(&name);
        let _ = std::fs::remove_file(&to);
        let from = work.path().join(&name);
        if from.exists() {
            std::fs::copy(&from, &to).with_context(|| format!("writing {}", to.display()))?;
        }
    }
    drop(conn);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::iphone::photos_db::read_library;

    fn touch(root: &Path, rel: &str, len: usize) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![7u8; len]).unwrap();
    }

    #[test]
    fn the_reader_finds_what_the_manifest_says_in_every_ios_numbering() {
        for ios in ["14.8", "15.7", "16.6", "17.5.1", "18.1"] {
            let d = tempfile::tempdir().unwrap();
            let root = d.path();
            for f in [
                "DCIM/100APPLE/IMG_0001.JPG",
                "DCIM/100APPLE/IMG_0002.HEIC",
                "DCIM/100APPLE/IMG_0002.MOV",
                "DCIM/100APPLE/IMG_0003.PNG",
                "DCIM/100APPLE/IMG_0004.MOV",
            ] {
                touch(root, f, 1000);
            }
            let mut m = Manifest::default();
            let spec = |f: fn(&mut AssetSpec)| {
                let mut s = AssetSpec::default();
                f(&mut s);
                s
            };
            m.assets.insert(
                "DCIM/100APPLE/IMG_0001.JPG".into(),
                spec(|s| {
                    s.favorite = true;
                    s.albums = vec!["Summer".into(), "Best".into()];
                    s.date = Some("2024-06-01T09:30:00+02:00".into());
                    s.lens = Some("iPhone 12 front camera 2.71mm f/2.2".into());
                }),
            );
            m.assets.insert(
                "DCIM/100APPLE/IMG_0003.PNG".into(),
                spec(|s| s.kind = Some("screenshot".into())),
            );
            m.assets.insert(
                "DCIM/100APPLE/IMG_0004.MOV".into(),
                spec(|s| {
                    s.kind = Some("slo-mo".into());
                    s.hidden = true;
                }),
            );
            m.assets.insert(
                "DCIM/100APPLE/IMG_0009.HEIC".into(),
                spec(|s| s.icloud = true),
            );
            m.assets.insert(
                "DCIM/100APPLE/IMG_0010.JPG".into(),
                spec(|s| {
                    s.icloud = true;
                    s.placeholder = true;
                }),
            );
            std::fs::write(root.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
            let g = generate(root, ios).unwrap();
            assert_eq!(g.placeholders, ["/DCIM/100APPLE/IMG_0010.JPG"]);
            assert!(root.join("DCIM/100APPLE/IMG_0010.JPG").is_file());
            assert!(root.join("PhotoData/Photos.sqlite-wal").is_file());

            // Copied elsewhere, as the client does, and read.
            let copy = tempfile::tempdir().unwrap();
            for s in ["", "-wal", "-shm"] {
                std::fs::copy(
                    root.join(format!("PhotoData/Photos.sqlite{s}")),
                    copy.path().join(format!("Photos.sqlite{s}")),
                )
                .unwrap();
            }
            let assets = read_library(&copy.path().join("Photos.sqlite")).unwrap();
            let by: BTreeMap<String, _> = assets.iter().map(|a| (a.path(), a)).collect();
            assert_eq!(
                by.len(),
                6,
                "{ios}: the live MOV is no asset: {:?}",
                by.keys()
            );
            let one = by["DCIM/100APPLE/IMG_0001.JPG"];
            assert!(one.favorite, "{ios}: favourites live in the WAL");
            assert_eq!(one.albums, ["Best", "Summer"], "{ios}");
            assert_eq!(
                one.created.unwrap(),
                jiff::civil::date(2024, 6, 1).at(9, 30, 0, 0)
            );
            assert!(one.lens.as_deref().unwrap().contains("front"));
            assert_eq!(by["DCIM/100APPLE/IMG_0002.HEIC"].subtype, 2);
            assert_eq!(by["DCIM/100APPLE/IMG_0003.PNG"].subtype, 10);
            let slo = by["DCIM/100APPLE/IMG_0004.MOV"];
            assert_eq!((slo.kind, slo.subtype, slo.hidden), (1, 101, true));
            assert_eq!(
                by["DCIM/100APPLE/IMG_0009.HEIC"].original_local,
                Some(false)
            );
            assert_eq!(by["DCIM/100APPLE/IMG_0010.JPG"].original_local, Some(false));
            assert_eq!(by["DCIM/100APPLE/IMG_0002.HEIC"].original_local, Some(true));

            // Without its log, the library is older: the last changes are missing.
            std::fs::remove_file(copy.path().join("Photos.sqlite-wal")).unwrap();
            std::fs::remove_file(copy.path().join("Photos.sqlite-shm")).unwrap();
            let old = read_library(&copy.path().join("Photos.sqlite")).unwrap();
            assert!(old.iter().all(|a| !a.favorite && a.albums.is_empty()));
        }
    }

    #[test]
    fn unfamiliar_libraries_are_refused_with_a_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("Photos.sqlite");
        std::fs::write(&p, b"not a database at all, just bytes").unwrap();
        assert!(read_library(&p).is_err());
        let p2 = d.path().join("other.sqlite");
        Connection::open(&p2)
            .unwrap()
            .execute_batch("CREATE TABLE ZASSET (Z_PK INTEGER PRIMARY KEY, ZFILENAME TEXT)")
            .unwrap();
        let e = read_library(&p2).unwrap_err();
        assert!(e.contains("ZDIRECTORY"), "{e}");
    }
}
