//! What the iPhone's Photos library knows: `/PhotoData/Photos.sqlite` (with its `-wal`
//! and `-shm`), copied over AFC into a temp folder and opened read-only.
//!
//! From it each listed file learns what the files alone cannot say: screenshot, screen
//! recording, Live Photo, slo-mo, time-lapse, panorama, burst, favourite, hidden, its
//! albums, when it was taken, and whether its original is on the phone at all
//! ("Optimize iPhone Storage" keeps only a thumbnail and leaves the original in iCloud).
//!
//! The library is Core Data's, undocumented, and changes between iOS versions: table
//! and column names are looked up, never assumed beyond the few this reader needs
//! (`ZASSET`, or `ZGENERICASSET` before iOS 14, with `ZDIRECTORY`, `ZFILENAME`, `ZKIND`).
//! Albums are joined through a table named `Z_<n>ASSETS` whose number changes with the
//! iOS version: it is found from the schema. A library that is missing, unreadable or
//! unfamiliar costs one warning; the file rules then decide alone.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::{timed, IphoneSource};
use crate::media::{self, Category, Tag};
use crate::source::{Entry, EntryFacts, Listing, Skipped, Source, SourceError};

/// The library, relative to the AFC root (the media folder).
pub const PHOTOS_DB: &str = "PhotoData/Photos.sqlite";

/// Core Data dates count seconds from 2001-01-01T00:00:00Z.
const CORE_DATA_EPOCH: i64 = 978_307_200;

/// `ZKIND`.
const KIND_VIDEO: i64 = 1;
/// `ZKINDSUBTYPE`.
const SUBTYPE_PANORAMA: i64 = 1;
const SUBTYPE_LIVE: i64 = 2;
const SUBTYPE_SCREENSHOT: i64 = 10;
const SUBTYPE_SLO_MO: i64 = 101;
const SUBTYPE_TIME_LAPSE: i64 = 102;
const SUBTYPE_SCREEN_RECORDING: i64 = 103;
/// `ZGENERICALBUM.ZKIND` of the albums the user made.
const ALBUM_KIND_USER: i64 = 2;

/// One asset of the library.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Asset {
    /// Folder of the original under the media root, `DCIM/100APPLE`.
    pub directory: String,
    pub filename: String,
    pub kind: i64,
    pub subtype: i64,
    pub favorite: bool,
    pub hidden: bool,
    pub trashed: bool,
    pub burst: bool,
    /// Local wall-clock time of the shot.
    pub created: Option<DateTime>,
    pub albums: Vec<String>,
    /// Whether the original is on the phone: `None` when the library does not say.
    pub original_local: Option<bool>,
    pub lens: Option<String>,
    /// Edited in Photos: a render lives under `PhotoData/Mutations`.
    pub edited: bool,
}

impl Asset {
    /// `DCIM/100APPLE/IMG_0001.HEIC`.
    pub fn path(&self) -> String {
        let dir = self.directory.trim_matches('/');
        if dir.is_empty() {
            self.filename.clone()
        } else {
            format!("{dir}/{}", self.filename)
        }
    }

    /// What the listing learns about this asset's files.
    fn facts(&self) -> EntryFacts {
        let photo = self.kind != KIND_VIDEO;
        let kind = match self.subtype {
            SUBTYPE_SCREENSHOT if photo => Some(Category::Screenshot),
            SUBTYPE_LIVE if photo => Some(Category::Live),
            SUBTYPE_SCREEN_RECORDING if !photo => Some(Category::ScreenRecording),
            _ => None,
        };
        let mut tags = Vec::new();
        match self.subtype {
            SUBTYPE_PANORAMA if photo => tags.push(Tag::Panorama),
            SUBTYPE_SLO_MO if !photo => tags.push(Tag::SloMo),
            SUBTYPE_TIME_LAPSE if !photo => tags.push(Tag::TimeLapse),
            _ => {}
        }
        for (yes, tag) in [
            (self.favorite, Tag::Favorite),
            (self.hidden, Tag::Hidden),
            (self.burst, Tag::Burst),
            (
                self.lens.as_deref().is_some_and(media::is_front_camera),
                Tag::Selfie,
            ),
        ] {
            if yes {
                tags.push(tag);
            }
        }
        tags.extend(self.albums.iter().map(|a| Tag::Album(a.clone())));
        EntryFacts {
            in_library: true,
            kind,
            tags,
            captured: self.created,
            is_video: !photo,
            cloud_only: self.original_local == Some(false),
            name: None,
        }
    }
}

/// Reads the library at `path` (a copy: it is opened read-only, with its `-wal` beside
/// it if there was one). The error says what was unfamiliar or unreadable.
pub fn read_library(path: &Path) -> Result<Vec<Asset>, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    read_assets(&conn).map_err(|e| match e {
        Unfamiliar::Schema(m) => m,
        Unfamiliar::Sql(e) => e.to_string(),
    })
}

enum Unfamiliar {
    Schema(String),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Unfamiliar {
    fn from(e: rusqlite::Error) -> Self {
        Unfamiliar::Sql(e)
    }
}

fn tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    names.map(|n| n.map(|n| n.to_ascii_uppercase())).collect()
}

/// `col` if `table` has it, else the SQL literal `default`.
fn col_or(cols: &[String], col: &str, default: &str) -> String {
    if cols.iter().any(|c| c == col) {
        col.to_string()
    } else {
        default.to_string()
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Real(f) => Some(*f as i64),
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn real(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Real(f) => Some(*f),
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) if !t.is_empty() => Some(t.clone()),
        Value::Blob(b) if !b.is_empty() => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// The asset table: `ZASSET` since iOS 14, `ZGENERICASSET` before.
fn asset_table(all: &[String]) -> Option<&'static str> {
    ["ZASSET", "ZGENERICASSET"]
        .into_iter()
        .find(|t| all.iter().any(|a| a.eq_ignore_ascii_case(t)))
}

fn read_assets(conn: &Connection) -> Result<Vec<Asset>, Unfamiliar> {
    let all = tables(conn)?;
    let table = asset_table(&all).ok_or_else(|| {
        Unfamiliar::Schema(
            "it has no ZASSET table, a layout this version of offload does not know".into(),
        )
    })?;
    let cols = columns(conn, table)?;
    for need in ["Z_PK", "ZDIRECTORY", "ZFILENAME", "ZKIND"] {
        if !cols.iter().any(|c| c == need) {
            return Err(Unfamiliar::Schema(format!(
                "its {table} table has no {need} column: a layout this version of offload does not know"
            )));
        }
    }
    let sql = format!(
        "SELECT Z_PK, ZDIRECTORY, ZFILENAME, ZKIND, {}, {}, {}, {}, {}, {}, {} FROM {table}",
        col_or(&cols, "ZKINDSUBTYPE", "0"),
        col_or(&cols, "ZFAVORITE", "0"),
        col_or(&cols, "ZHIDDEN", "0"),
        col_or(&cols, "ZTRASHEDSTATE", "0"),
        col_or(&cols, "ZAVALANCHEUUID", "NULL"),
        col_or(&cols, "ZDATECREATED", "NULL"),
        col_or(&cols, "ZHASADJUSTMENTS", "0"),
    );
    let offsets = tz_offsets(conn, &all)?;
    let lenses = lenses(conn, &all)?;
    let local = local_availability(conn, &all)?;
    let mut albums = albums(conn, &all)?;
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut assets = Vec::new();
    while let Some(r) = rows.next()? {
        let v = |i: usize| r.get::<_, Value>(i).unwrap_or(Value::Null);
        let Some(pk) = int(&v(0)) else { continue };
        let (Some(directory), Some(filename)) = (text(&v(1)), text(&v(2))) else {
            continue;
        };
        let created = real(&v(9)).and_then(|secs| {
            let t = Timestamp::from_second(secs.floor() as i64 + CORE_DATA_EPOCH).ok()?;
            let zone = match offsets.get(&pk).and_then(|s| Offset::from_seconds(*s).ok()) {
                Some(o) => TimeZone::fixed(o),
                None => TimeZone::system(),
            };
            Some(t.to_zoned(zone).datetime())
        });
        assets.push(Asset {
            directory,
            filename,
            kind: int(&v(3)).unwrap_or(0),
            subtype: int(&v(4)).unwrap_or(0),
            favorite: int(&v(5)).unwrap_or(0) != 0,
            hidden: int(&v(6)).unwrap_or(0) != 0,
            trashed: int(&v(7)).unwrap_or(0) != 0,
            burst: text(&v(8)).is_some(),
            created,
            albums: albums.remove(&pk).unwrap_or_default(),
            original_local: local.get(&pk).copied(),
            lens: lenses.get(&pk).cloned(),
            edited: int(&v(10)).unwrap_or(0) != 0,
        });
    }
    Ok(assets)
}

/// Asset → seconds east of UTC where it was taken (`ZADDITIONALASSETATTRIBUTES`).
fn tz_offsets(conn: &Connection, all: &[String]) -> rusqlite::Result<HashMap<i64, i32>> {
    let mut out = HashMap::new();
    let t = "ZADDITIONALASSETATTRIBUTES";
    if !all.iter().any(|a| a == t) {
        return Ok(out);
    }
    let cols = columns(conn, t)?;
    if !(cols.iter().any(|c| c == "ZASSET") && cols.iter().any(|c| c == "ZTIMEZONEOFFSET")) {
        return Ok(out);
    }
    let mut stmt = conn.prepare(&format!("SELECT ZASSET, ZTIMEZONEOFFSET FROM {t}"))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (a, o) = (r.get::<_, Value>(0)?, r.get::<_, Value>(1)?);
        if let (Some(a), Some(o)) = (int(&a), int(&o)) {
            if let Ok(o) = i32::try_from(o) {
                out.insert(a, o);
            }
        }
    }
    Ok(out)
}

/// Asset → lens model (`ZEXTENDEDATTRIBUTES`, iOS 14 and later).
fn lenses(conn: &Connection, all: &[String]) -> rusqlite::Result<HashMap<i64, String>> {
    let mut out = HashMap::new();
    let t = "ZEXTENDEDATTRIBUTES";
    if !all.iter().any(|a| a == t) {
        return Ok(out);
    }
    let cols = columns(conn, t)?;
    if !(cols.iter().any(|c| c == "ZASSET") && cols.iter().any(|c| c == "ZLENSMODEL")) {
        return Ok(out);
    }
    let mut stmt = conn.prepare(&format!("SELECT ZASSET, ZLENSMODEL FROM {t}"))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if let (Some(a), Some(l)) = (int(&r.get(0)?), text(&r.get(1)?)) {
            out.insert(a, l);
        }
    }
    Ok(out)
}

/// Asset → whether its original is on the phone, from `ZINTERNALRESOURCE`: the
/// original resources (version 0, no recipe: not a thumbnail or a render) of the photo
/// or video (resource type 0 or 1), `ZLOCALAVAILABILITY` 1 when here, −1 when not.
fn local_availability(conn: &Connection, all: &[String]) -> rusqlite::Result<HashMap<i64, bool>> {
    let mut out = HashMap::new();
    let t = "ZINTERNALRESOURCE";
    if !all.iter().any(|a| a == t) {
        return Ok(out);
    }
    let cols = columns(conn, t)?;
    if !(cols.iter().any(|c| c == "ZASSET") && cols.iter().any(|c| c == "ZLOCALAVAILABILITY")) {
        return Ok(out);
    }
    let mut conditions = Vec::new();
    if cols.iter().any(|c| c == "ZRESOURCETYPE") {
        conditions.push("ZRESOURCETYPE IN (0, 1)");
    }
    if cols.iter().any(|c| c == "ZVERSION") {
        conditions.push("ZVERSION = 0");
    }
    if cols.iter().any(|c| c == "ZRECIPEID") {
        conditions.push("(ZRECIPEID IS NULL OR ZRECIPEID = 0)");
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT ZASSET, MAX(ZLOCALAVAILABILITY) FROM {t} {filter} GROUP BY ZASSET"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if let (Some(a), Some(avail)) = (int(&r.get(0)?), int(&r.get(1)?)) {
            match avail {
                1 => out.insert(a, true),
                n if n < 0 => out.insert(a, false),
                _ => None,
            };
        }
    }
    Ok(out)
}

fn numbered(name: &str, suffix: &str) -> Option<u32> {
    name.strip_prefix("Z_")?.strip_suffix(suffix)?.parse().ok()
}

/// The album join table, its album column and its asset column: the table
/// `Z_<n>ASSETS` with a column `Z_<n>ALBUMS` and a column `Z_<m>ASSETS` (`n` is the album
/// entity's number and `m` the asset's, both in `Z_PRIMARYKEY`; both change between iOS
/// versions). When several tables fit, the one numbered as `Z_PRIMARYKEY` numbers the
/// album entity wins.
fn album_join_in(
    conn: &Connection,
    all: &[String],
) -> rusqlite::Result<Option<(String, String, String)>> {
    let mut found = Vec::new();
    for t in all {
        let Some(n) = numbered(t, "ASSETS") else {
            continue;
        };
        let cols = columns(conn, t)?;
        let album = cols
            .iter()
            .find(|c| numbered(c, "ALBUMS").is_some())
            .cloned();
        let asset = cols
            .iter()
            .find(|c| numbered(c, "ASSETS").is_some())
            .cloned();
        if let (Some(album), Some(asset)) = (album, asset) {
            found.push((n, (t.clone(), album, asset)));
        }
    }
    if found.len() > 1 && all.iter().any(|t| t == "Z_PRIMARYKEY") {
        let entity: Option<i64> = conn
            .query_row(
                "SELECT Z_ENT FROM Z_PRIMARYKEY WHERE Z_NAME IN ('GenericAlbum', 'Album')
                 ORDER BY Z_NAME = 'GenericAlbum' DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(e) = entity {
            if let Some(i) = found.iter().position(|(n, _)| i64::from(*n) == e) {
                return Ok(Some(found.swap_remove(i).1));
            }
        }
    }
    Ok(found.into_iter().next().map(|(_, t)| t))
}

/// Asset → titles of the user's albums it is in.
fn albums(conn: &Connection, all: &[String]) -> rusqlite::Result<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if !all.iter().any(|t| t == "ZGENERICALBUM") {
        return Ok(out);
    }
    let Some((join, album_col, asset_col)) = album_join_in(conn, all)? else {
        return Ok(out);
    };
    let cols = columns(conn, "ZGENERICALBUM")?;
    if !cols.iter().any(|c| c == "ZTITLE") {
        return Ok(out);
    }
    let mut conditions = vec!["a.ZTITLE IS NOT NULL".to_string()];
    if cols.iter().any(|c| c == "ZKIND") {
        conditions.push(format!("a.ZKIND = {ALBUM_KIND_USER}"));
    }
    if cols.iter().any(|c| c == "ZTRASHEDSTATE") {
        conditions.push("(a.ZTRASHEDSTATE IS NULL OR a.ZTRASHEDSTATE = 0)".into());
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT j.{asset_col}, a.ZTITLE FROM {join} j JOIN ZGENERICALBUM a ON a.Z_PK = j.{album_col}
         WHERE {} ORDER BY a.ZTITLE",
        conditions.join(" AND ")
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if let (Some(a), Some(title)) = (int(&r.get(0)?), text(&r.get(1)?)) {
            out.entry(a).or_default().push(title);
        }
    }
    Ok(out)
}

/// The warning for a library that cannot be used.
fn warning(why: &str) -> String {
    format!(
        "The iPhone's Photos library ({PHOTOS_DB}) could not be used: {why}. Categories come \
         from the files alone; favourites, albums, hidden photos and iCloud-only photos are \
         not known for this run."
    )
}

/// Edit renders: `PhotoData/Mutations/<dir>/<stem>/Adjustments/FullSizeRender.<ext>`.
const RENDER_EXTENSIONS: &[&str] = &["jpg", "heic", "mov"];

/// `IMG_0042` → `IMG_E0042`, the name Photos gives an edited export; else `<stem>_edited`.
fn edited_name(stem: &str, ext: &str) -> String {
    match stem.strip_prefix("IMG_") {
        Some(n) if n.bytes().all(|b| b.is_ascii_digit()) => format!("IMG_E{n}.{ext}"),
        _ => format!("{stem}_edited.{ext}"),
    }
}

/// Folds the library into the listing: facts on each file it knows; trashed ones
/// skipped; assets with no file in DCIM, or whose original the library says is not on
/// the phone, in `cloud_only`; edit renders added. Returns the render paths to look up.
pub fn apply(assets: &[Asset], listing: &mut Listing) -> Vec<(String, EntryFacts)> {
    let index = EntryIndex::new(&listing.entries);
    let mut trashed = Vec::new();
    let mut renders = Vec::new();
    let mut drop = Vec::new();
    for a in assets {
        let path = a.path();
        let facts = a.facts();
        let found = index.find(&path);
        if a.trashed {
            if let Some(i) = found {
                trashed.push(i);
            }
            continue;
        }
        let motion = motion_half(a, &path, &index);
        match found {
            Some(i) => {
                listing.entries[i].facts = facts.clone();
                if let Some(m) = motion {
                    if facts.cloud_only {
                        // Reported once, with its still.
                        drop.push(m);
                    } else {
                        listing.entries[m].facts = facts.clone();
                    }
                }
            }
            None => {
                // Not in DCIM at all: only iCloud has it.
                listing
                    .cloud_only
                    .push(cloud_only_entry(a, path.clone(), &facts));
                if let Some(m) = motion {
                    drop.push(m);
                }
            }
        }
        if a.edited && !facts.cloud_only && found.is_some() {
            renders.extend(edit_renders(&path, &facts));
        }
    }
    remove_entries(listing, trashed, drop);
    renders
}

/// The listing's entries by path, as they were before [`apply`] changed the listing.
struct EntryIndex {
    exact: HashMap<String, usize>,
    lower: HashMap<String, usize>,
}

impl EntryIndex {
    fn new(entries: &[Entry]) -> EntryIndex {
        let mut exact: HashMap<String, usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            exact.insert(e.path.clone(), i);
        }
        let lower: HashMap<String, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.to_lowercase(), i))
            .collect();
        EntryIndex { exact, lower }
    }

    /// The index of the entry at `path`, else of one at `path` spelt in other case.
    fn find(&self, path: &str) -> Option<usize> {
        self.exact
            .get(path)
            .or_else(|| self.lower.get(&path.to_lowercase()))
            .copied()
    }
}

/// The entry index of the motion half (`<stem>.MOV`, else `<stem>.mov`) of `a`, whose
/// original is at `path`, when `a` is a Live Photo still. The motion half of a Live
/// Photo is a resource of the asset, not an asset: the library does not list it.
fn motion_half(a: &Asset, path: &str, index: &EntryIndex) -> Option<usize> {
    if a.subtype != SUBTYPE_LIVE || a.kind == KIND_VIDEO {
        return None;
    }
    let stem = path.rsplit_once('.').map_or(path, |(s, _)| s);
    index
        .find(&format!("{stem}.MOV"))
        .or_else(|| index.find(&format!("{stem}.mov")))
}

/// The `cloud_only` entry for the asset `a`, at `path`, that has no file in DCIM: size
/// unknown (0), dated by its capture time read on this computer's zone (0 without one).
fn cloud_only_entry(a: &Asset, path: String, facts: &EntryFacts) -> Entry {
    let mtime = a
        .created
        .and_then(|d| d.to_zoned(TimeZone::system()).ok())
        .map_or(0, |z| z.timestamp().as_second());
    let mut e = Entry::new(path, 0, mtime);
    e.facts = EntryFacts {
        cloud_only: true,
        ..facts.clone()
    };
    e
}

/// Where Photos may have put the render of the edited original at `path`, one path per
/// render extension, each with the facts the render has if it is there.
fn edit_renders(path: &str, facts: &EntryFacts) -> Vec<(String, EntryFacts)> {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    let mut renders = Vec::new();
    for ext in RENDER_EXTENSIONS {
        let render = format!("PhotoData/Mutations/{dir}/{stem}/Adjustments/FullSizeRender.{ext}");
        let mut f = facts.clone();
        // The render is a new picture: not the original's Live Photo kind.
        f.kind = None;
        f.tags.push(Tag::Edited);
        f.name = Some(edited_name(stem, ext));
        renders.push((render, f));
    }
    renders
}

/// Removes the entries at the indices in `trashed` and `drop` (an index may be in both)
/// from `listing`. The trashed ones are recorded as skipped; the others are motion
/// halves, reported with their still.
fn remove_entries(listing: &mut Listing, mut trashed: Vec<usize>, mut drop: Vec<usize>) {
    trashed.sort_unstable();
    drop.extend(trashed.iter().copied());
    drop.sort_unstable();
    drop.dedup();
    // From the last, so that the indices still to remove stay right.
    for i in drop.into_iter().rev() {
        let e = listing.entries.remove(i);
        if trashed.contains(&i) {
            listing.skipped.push(Skipped {
                path: e.path,
                reason: "in the iPhone's Recently Deleted album".into(),
            });
        }
    }
}

impl IphoneSource {
    /// Reads the library and folds it into `listing` (see [`apply`]). Only a phone
    /// that goes away is an error; anything else is one warning in the listing.
    pub(super) fn read_photos_library(&mut self, listing: &mut Listing) -> Result<(), SourceError> {
        let dir = match tempfile::Builder::new().prefix("offload-photos-").tempdir() {
            Ok(d) => d,
            Err(e) => {
                listing
                    .warnings
                    .push(warning(&format!("no temp folder for its copy: {e}")));
                return Ok(());
            }
        };
        let local = dir.path().join("Photos.sqlite");
        match self.copy_file(PHOTOS_DB, &local) {
            Ok(true) => {}
            Ok(false) => {
                listing.warnings.push(warning("the iPhone has none"));
                return Ok(());
            }
            Err(SourceError::Gone(m)) => return Err(SourceError::Gone(m)),
            Err(e) => {
                listing
                    .warnings
                    .push(warning(&format!("the iPhone would not give it ({e})")));
                return Ok(());
            }
        }
        for suffix in ["-wal", "-shm"] {
            let to = dir.path().join(format!("Photos.sqlite{suffix}"));
            match self.copy_file(&format!("{PHOTOS_DB}{suffix}"), &to) {
                Ok(_) => {}
                Err(SourceError::Gone(m)) => return Err(SourceError::Gone(m)),
                // Without its log the library is older but consistent; without the index
                // SQLite rebuilds it. Neither is worth a warning.
                Err(e) => {
                    tracing::debug!("{PHOTOS_DB}{suffix}: {e}");
                    let _ = std::fs::remove_file(&to);
                }
            }
        }
        let assets = match read_library(&local) {
            Ok(a) => a,
            Err(why) => {
                listing.warnings.push(warning(&why));
                return Ok(());
            }
        };
        tracing::info!("Photos library: {} assets", assets.len());
        for (path, facts) in apply(&assets, listing) {
            if let Some((size, mtime)) = self.stat(&path)? {
                let mut e = Entry::new(path, size, mtime);
                e.facts = facts;
                listing.entries.push(e);
            }
        }
        listing.entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    /// Copies the file at `afc_path` (relative to the media root) to `to`. `Ok(false)`
    /// when the phone has no such file.
    fn copy_file(&mut self, afc_path: &str, to: &Path) -> Result<bool, SourceError> {
        if self.stat(afc_path)?.is_none() {
            return Ok(false);
        }
        let entry = Entry::new(afc_path, 0, 0);
        let mut reader = self.open(&entry, 0)?;
        let mut out = std::fs::File::create(to).map_err(|e| SourceError::File(e.to_string()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SourceError::from_io(e)),
            };
            out.write_all(&buf[..n])
                .map_err(|e| SourceError::File(e.to_string()))?;
        }
        Ok(true)
    }

    /// Size and mtime (seconds) of a regular file, `None` when there is none.
    fn stat(&mut self, afc_path: &str) -> Result<Option<(u64, i64)>, SourceError> {
        let io = self.conn.opts.io_timeout;
        let path = format!("/{afc_path}");
        let rt = &self.rt;
        let conn = &mut self.conn;
        let kv = rt.block_on(async {
            let afc = conn.afc().await?;
            timed(io, afc.get_file_info_raw(path)).await
        });
        match kv {
            Ok(kv) => {
                if kv.get("st_ifmt").map(String::as_str) != Some("S_IFREG") {
                    return Ok(None);
                }
                let num = |k: &str| kv.get(k).and_then(|v| v.parse::<i128>().ok());
                Ok(Some((
                    num("st_size").unwrap_or(0).clamp(0, u64::MAX as i128) as u64,
                    num("st_mtime").unwrap_or(0).div_euclid(1_000_000_000) as i64,
                )))
            }
            Err(super::PhoneError::Afc(_)) => Ok(None),
            Err(e) => Err(e.into_source_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(dir: &str, file: &str) -> Asset {
        Asset {
            directory: dir.into(),
            filename: file.into(),
            original_local: Some(true),
            ..Asset::default()
        }
    }

    #[test]
    fn facts_from_kinds_and_flags() {
        let mut a = asset("DCIM/100APPLE", "IMG_0003.PNG");
        a.subtype = SUBTYPE_SCREENSHOT;
        a.favorite = true;
        a.albums = vec!["Receipts".into()];
        let f = a.facts();
        assert_eq!(f.kind, Some(Category::Screenshot));
        assert_eq!(f.tags, [Tag::Favorite, Tag::Album("Receipts".into())]);
        let mut v = asset("DCIM/100APPLE", "IMG_0004.MOV");
        v.kind = KIND_VIDEO;
        v.subtype = SUBTYPE_SLO_MO;
        v.hidden = true;
        let f = v.facts();
        assert_eq!((f.kind, f.is_video), (None, true));
        assert_eq!(f.tags, [Tag::SloMo, Tag::Hidden]);
        v.subtype = SUBTYPE_SCREEN_RECORDING;
        assert_eq!(v.facts().kind, Some(Category::ScreenRecording));
        assert_eq!(edited_name("IMG_0042", "jpg"), "IMG_E0042.jpg");
        assert_eq!(edited_name("DSC9", "jpg"), "DSC9_edited.jpg");
    }

    #[test]
    fn listing_learns_pairs_trash_and_icloud() {
        let mut listing = Listing {
            entries: vec![
                Entry::new("DCIM/100APPLE/IMG_0001.HEIC", 1, 1),
                Entry::new("DCIM/100APPLE/IMG_0001.MOV", 1, 1),
                Entry::new("DCIM/100APPLE/IMG_0002.JPG", 1, 1),
                Entry::new("DCIM/100APPLE/IMG_0006.HEIC", 1, 1),
                Entry::new("DCIM/100APPLE/IMG_0007.JPG", 1, 1),
            ],
            ..Listing::default()
        };
        let mut live = asset("DCIM/100APPLE", "IMG_0001.HEIC");
        live.subtype = SUBTYPE_LIVE;
        live.favorite = true;
        let mut gone = asset("DCIM/100APPLE", "IMG_0002.JPG");
        gone.trashed = true;
        let mut cloud_absent = asset("DCIM/100APPLE", "IMG_0005.MOV");
        cloud_absent.kind = KIND_VIDEO;
        let mut placeholder = asset("DCIM/100APPLE", "IMG_0006.HEIC");
        placeholder.original_local = Some(false);
        let renders = apply(&[live, gone, cloud_absent, placeholder], &mut listing);
        assert!(renders.is_empty());
        let paths: Vec<_> = listing.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "DCIM/100APPLE/IMG_0001.HEIC",
                "DCIM/100APPLE/IMG_0001.MOV",
                "DCIM/100APPLE/IMG_0006.HEIC",
                "DCIM/100APPLE/IMG_0007.JPG"
            ]
        );
        assert_eq!(listing.entries[1].facts.kind, Some(Category::Live));
        assert!(listing.entries[1].facts.tags.contains(&Tag::Favorite));
        assert!(listing.entries[2].facts.cloud_only);
        assert!(!listing.entries[3].facts.in_library);
        assert_eq!(listing.skipped[0].path, "DCIM/100APPLE/IMG_0002.JPG");
        assert_eq!(listing.cloud_only.len(), 1);
        assert!(listing.cloud_only[0].facts.is_video);
    }
}
