//! The catalog: a SQLite database on the drive it describes
//! (`<store>/.offload/catalog.sqlite`), so that the record travels with the photos.
//!
//! Tables (documented in the README; a user can open them with `sqlite3`):
//! - `sources`: every phone or folder ever backed up (`key` is the stable device id).
//! - `files`: every stored file once, by content hash, with its store path, capture
//!   date (and where that date came from), primary category and, for the halves of a
//!   Live Photo, the hash of its still (`live_pair`).
//! - `file_tags`: the tags of each stored file (favorite, burst, album:NAME...).
//! - `sightings`: where each content was seen: (source, remote path, size, mtime) →
//!   hash. A listing entry whose key is here is skipped without reading a byte.
//! - `runs`: one row per source per backup run, with its counts and result.
//! - `cloud_only`: per source, what its library lists but only iCloud holds, as last seen.
//! - `notes`: facts about the catalog itself (`reindex` = `incomplete` while a rebuild
//!   that was stopped has not finished).
//!
//! The schema's version is the database's `PRAGMA user_version`: the number of
//! [`migrations`] applied. A catalog written by an older `offload` is brought up to date
//! when it is opened for writing; one written by a newer `offload` is refused (exit 4),
//! since this build cannot know what its later changes mean. Read-only opens write
//! nothing, so the queries they serve cope with the tables and columns an older catalog
//! lacks.
//!
//! The store is the truth; the catalog is the record and the speed-up. Every change of
//! a batch is one transaction, made after the files it names are durable in the store.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use rusqlite_migration::{Migrations, M};
use serde::Serialize;

use crate::error::{fail, Exit};
use crate::source::DeviceInfo;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sources (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,   -- android:<serial>, iphone:<udid>, folder:<path>
    kind        TEXT NOT NULL,          -- folder | android | iphone
    name        TEXT NOT NULL,          -- the device's own name, as last seen
    folder      TEXT NOT NULL,          -- what {device} expands to: fixed at first sight, unique
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id          INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,   -- BLAKE3 of the content, hex
    size        INTEGER NOT NULL,
    path        TEXT NOT NULL,          -- relative to the store, '/'-separated
    path_key    TEXT NOT NULL UNIQUE,   -- path, NFC and lower-cased: case twins never share a name
    captured    TEXT NOT NULL,          -- local wall-clock time of capture, ISO 8601
    date_source TEXT NOT NULL,          -- exif | quicktime | filename | mtime
    category    TEXT NOT NULL,          -- photo | video | screenshot | screen-recording | raw | live | other
    source_id   INTEGER NOT NULL REFERENCES sources(id),
    added_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sightings (
    source_id   INTEGER NOT NULL REFERENCES sources(id),
    remote_path TEXT NOT NULL,          -- as the device names it
    size        INTEGER NOT NULL,
    mtime       INTEGER NOT NULL,       -- Unix seconds, as the device reports it
    hash        TEXT NOT NULL REFERENCES files(hash),
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    PRIMARY KEY (source_id, remote_path, size, mtime)
);
CREATE TABLE IF NOT EXISTS runs (
    id                INTEGER PRIMARY KEY,
    source_id         INTEGER NOT NULL REFERENCES sources(id),
    started           TEXT NOT NULL,
    finished          TEXT,
    result            TEXT NOT NULL,    -- running | ok | failures | interrupted | stopped | destination-error
    copied            INTEGER NOT NULL DEFAULT 0,
    bytes_copied      INTEGER NOT NULL DEFAULT 0,
    already_backed_up INTEGER NOT NULL DEFAULT 0,
    duplicates        INTEGER NOT NULL DEFAULT 0,
    skipped           INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS deletions (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    source_key    TEXT NOT NULL,        -- the phone it was deleted from
    remote_path   TEXT NOT NULL,
    size          INTEGER NOT NULL,
    mtime         INTEGER NOT NULL,
    hash          TEXT NOT NULL,
    verified_copy TEXT NOT NULL         -- the stored copy re-read and matched just before
);
CREATE INDEX IF NOT EXISTS files_source ON files(source_id);
CREATE INDEX IF NOT EXISTS runs_source ON runs(source_id, id);
CREATE TABLE IF NOT EXISTS file_tags (
    hash        TEXT NOT NULL REFERENCES files(hash),
    tag         TEXT NOT NULL,          -- edited, burst, selfie, slo-mo, ..., album:NAME
    PRIMARY KEY (hash, tag)
);
CREATE INDEX IF NOT EXISTS file_tags_tag ON file_tags(tag);
CREATE TABLE IF NOT EXISTS notes (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cloud_only (
    source_id   INTEGER NOT NULL REFERENCES sources(id),
    remote_path TEXT NOT NULL,          -- where the original would be on the phone
    kind        TEXT NOT NULL,          -- photo | video
    captured    TEXT,                   -- local time of the shot, as the library says
    last_seen   TEXT NOT NULL,
    PRIMARY KEY (source_id, remote_path)
);
";

/// The note (see [`Catalog::note`]) that is `incomplete` while a rebuild by `offload
/// reindex` is under way, and stays so after a stopped one: the next `reindex` resumes
/// it, and every other command refuses the store until then.
pub const REINDEX_NOTE: &str = "reindex";

/// The schema's changes, in order; a catalog's `user_version` is how many it has had.
/// A released step is never edited: a change of the schema is a new step at the end.
fn steps() -> Vec<M<'static>> {
    vec![
        // 1: the schema of the catalogs written before versions were recorded (version
        // 0). Those may hold any earlier part of it, hence `IF NOT EXISTS` and a column
        // added only where it is missing.
        M::up_with_hook(SCHEMA, |tx: &rusqlite::Transaction| {
            // The still's hash, on both halves of a Live Photo.
            if !has_column(tx, "files", "live_pair")? {
                tx.execute_batch("ALTER TABLE files ADD COLUMN live_pair TEXT")?;
            }
            Ok(())
        }),
    ]
}

/// Brings the catalog up to this build's schema, in one transaction. A catalog already
/// there is not written to.
fn migrate(conn: &mut Connection) -> Result<()> {
    Migrations::new(steps()).to_latest(conn)?;
    Ok(())
}

/// Refuses (exit 4) a catalog whose schema version is newer than this build knows.
fn check_version(conn: &Connection, path: &Path) -> Result<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .with_context(|| format!("reading the catalog {}", path.display()))?;
    let known = steps().len();
    if usize::try_from(version).is_ok_and(|v| v <= known) {
        return Ok(());
    }
    Err(fail(
        Exit::Destination,
        format!(
            "The catalog {} was written by a newer offload (schema version {version}; this \
             offload knows up to {known}). Nothing was changed. Update offload, then run this \
             again.",
            path.display()
        ),
    ))
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n?.eq_ignore_ascii_case(column) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn has_table(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Name of the catalog file inside `.offload/`.
pub const CATALOG_FILE: &str = "catalog.sqlite";

pub struct Catalog {
    conn: Connection,
}

/// A file ready to be recorded: already durable under `path` in the store.
pub struct NewFile<'a> {
    pub hash: &'a str,
    pub size: u64,
    pub path: &'a str,
    pub path_key: &'a str,
    pub captured: &'a str,
    pub date_source: &'a str,
    pub category: &'a str,
    /// Tag names ([`crate::media::Tag::name`]).
    pub tags: &'a [String],
    /// For either half of a Live Photo: the hash of its still.
    pub live_pair: Option<&'a str>,
}

/// A file the library lists that only iCloud holds.
#[derive(Clone, Debug, Serialize)]
pub struct CloudOnly {
    pub path: String,
    /// `photo` or `video`.
    pub kind: String,
    pub captured: Option<String>,
}

/// A stored file with what is known of it, for `offload export --from-store`.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub hash: String,
    pub size: u64,
    pub path: String,
    pub captured: String,
    pub category: String,
    pub tags: Vec<String>,
    pub live_pair: Option<String>,
    /// The `{device}` folder of the source that brought it.
    pub device: String,
}

/// A sighting to record: this source holds this content under this key.
pub struct Sighting<'a> {
    pub remote_path: &'a str,
    pub size: u64,
    pub mtime: i64,
    pub hash: &'a str,
    /// Tags this source gives the content (added to the file's: a favourite on one
    /// phone is a favourite).
    pub tags: &'a [String],
}

/// Counts of one run, for the `runs` table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunCounts {
    pub copied: u64,
    pub bytes_copied: u64,
    pub already_backed_up: u64,
    pub duplicates: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// How much a catalog (or a copy of it) records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub sources: u64,
}

impl Counts {
    pub fn is_empty(self) -> bool {
        self.files == 0 && self.sources == 0
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} file{} from {} source{}",
            self.files,
            s(self.files),
            self.sources,
            s(self.sources)
        )
    }
}

/// One source's line in `offload status`.
#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub files: u64,
    pub bytes: u64,
    pub categories: Vec<(String, u64)>,
    /// Files per tag (favorite, album:NAME...).
    pub tags: Vec<(String, u64)>,
    pub last_run: Option<LastRun>,
    /// What the phone's library listed, at the last run, that only iCloud holds.
    pub cloud_only: Vec<CloudOnly>,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub started: String,
    pub finished: Option<String>,
    pub result: String,
    pub copied: u64,
    pub failed: u64,
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string()
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path` for reading and writing, and
    /// brings an older catalog's schema up to date. One written by a newer `offload` is
    /// refused (exit 4) untouched.
    /// `wal` asks for write-ahead logging, which keeps readers (status, sqlite3) out
    /// of the writer's way but needs shared memory maps that FUSE and network
    /// filesystems may not provide; the rollback journal works everywhere.
    pub fn open(path: &Path, wal: bool) -> Result<Catalog> {
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening the catalog {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        check_version(&conn, path)?;
        let mode = if wal { "WAL" } else { "DELETE" };
        let got: String = conn
            .query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| r.get(0))
            .with_context(|| format!("opening the catalog {}", path.display()))?;
        if !got.eq_ignore_ascii_case(mode) {
            conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))?;
        }
        // FULL: each batch's transaction is on the disk when it returns. NORMAL would be
        // consistent too, but a drive that fails mid-run (turns read-only) then loses
        // every batch since the last checkpoint; the cost is one sync per batch of files.
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        migrate(&mut conn)
            .with_context(|| format!("updating the catalog tables in {}", path.display()))?;
        Ok(Catalog { conn })
    }

    /// Opens an existing catalog read-only (for `status` and `--dry-run`): an older
    /// catalog is read as it is, one written by a newer `offload` is refused (exit 4).
    pub fn open_read_only(path: &Path) -> Result<Catalog> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening the catalog {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        check_version(&conn, path)?;
        Ok(Catalog { conn })
    }

    /// Opens a copy of a catalog (`catalog.sqlite.bak`, an older generation) to read
    /// it, as an immutable file: nothing is written beside it, not even the shared
    /// memory file SQLite makes for a reader of a write-ahead-log database.
    pub fn open_copy(path: &Path) -> Result<Catalog> {
        let mut uri = String::from("file:");
        for c in path.to_string_lossy().chars() {
            match c {
                '%' => uri.push_str("%25"),
                '?' => uri.push_str("%3f"),
                '#' => uri.push_str("%23"),
                c => uri.push(c),
            }
        }
        uri.push_str("?immutable=1");
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", path.display()))?;
        Ok(Catalog { conn })
    }

    /// An empty in-memory catalog (a dry run against a store that does not exist yet).
    pub fn in_memory() -> Result<Catalog> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        Ok(Catalog { conn })
    }

    /// Returns the row id of a source and the name `{device}` expands to for it, adding
    /// the source (or refreshing its name) as needed.
    ///
    /// The folder name is chosen once, at first sight, and never changes, so that a
    /// renamed phone keeps filling the same folder; two phones of the same model (two
    /// "Pixel 8") get distinct folders, the second one suffixed with its serial's end.
    pub fn upsert_source(&self, info: &DeviceInfo) -> Result<(i64, String)> {
        let t = now();
        let known: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, folder FROM sources WHERE key = ?1",
                [&info.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, folder)) = known {
            self.conn.execute(
                "UPDATE sources SET name = ?2, last_seen = ?3 WHERE id = ?1",
                params![id, info.name, t],
            )?;
            return Ok((id, folder));
        }
        let taken = |f: &str| -> Result<bool> {
            Ok(self
                .conn
                .query_row(
                    "SELECT 1 FROM sources WHERE lower(folder) = lower(?1)",
                    [f],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        };
        let tail: String = {
            let id_tail = info.id.split_once(':').map(|(_, t)| t).unwrap_or(&info.id);
            let chars: Vec<char> = id_tail.chars().filter(|c| c.is_alphanumeric()).collect();
            chars[chars.len().saturating_sub(6)..].iter().collect()
        };
        let mut folder = info.name.clone();
        let mut n = 1;
        while taken(&folder)? {
            n += 1;
            folder = if n == 2 && !tail.is_empty() {
                format!("{} {tail}", info.name)
            } else {
                format!("{} {n}", info.name)
            };
        }
        self.conn.execute(
            "INSERT INTO sources(key, kind, name, folder, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![info.id, info.kind.as_str(), info.name, folder, t],
        )?;
        Ok((self.conn.last_insert_rowid(), folder))
    }

    /// The id of a known source, without adding it.
    pub fn source_id(&self, key: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT id FROM sources WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Every (remote path, size, mtime) already backed up from this source.
    pub fn sightings(&self, source_id: i64) -> Result<HashSet<(String, u64, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT remote_path, size, mtime FROM sightings WHERE source_id = ?1")?;
        let rows = stmt.query_map([source_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The store path of the file with this content, if it is stored.
    pub fn path_of_hash(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT path FROM files WHERE hash = ?1", [hash], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// True when a stored file already uses this name (compared by `path_key`).
    pub fn name_taken(&self, path_key: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM files WHERE path_key = ?1",
                [path_key],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records a batch of stored files and sightings in one transaction.
    pub fn record(
        &mut self,
        source_id: i64,
        files: &[NewFile],
        sightings: &[Sighting],
    ) -> Result<()> {
        let t = now();
        let tx = self.conn.transaction()?;
        {
            let mut add_file = tx.prepare_cached(
                "INSERT INTO files(hash, size, path, path_key, captured, date_source, category, source_id, added_at, live_pair)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut add_tag = tx.prepare_cached(
                "INSERT INTO file_tags(hash, tag) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            for f in files {
                add_file.execute(params![
                    f.hash,
                    f.size as i64,
                    f.path,
                    f.path_key,
                    f.captured,
                    f.date_source,
                    f.category,
                    source_id,
                    t,
                    f.live_pair
                ])?;
                for tag in f.tags {
                    add_tag.execute(params![f.hash, tag])?;
                }
            }
            let mut add_sighting = tx.prepare_cached(
                "INSERT INTO sightings(source_id, remote_path, size, mtime, hash, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT DO UPDATE SET hash = excluded.hash, last_seen = excluded.last_seen",
            )?;
            for s in sightings {
                add_sighting.execute(params![
                    source_id,
                    s.remote_path,
                    s.size as i64,
                    s.mtime,
                    s.hash,
                    t
                ])?;
                for tag in s.tags {
                    add_tag.execute(params![s.hash, tag])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Starts a run row; returns its id.
    pub fn start_run(&self, source_id: i64) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO runs(source_id, started, result) VALUES (?1, ?2, 'running')",
            params![source_id, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Closes a run row with its result and counts.
    pub fn finish_run(&self, run_id: i64, result: &str, c: &RunCounts) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished = ?2, result = ?3, copied = ?4, bytes_copied = ?5,
             already_backed_up = ?6, duplicates = ?7, skipped = ?8, failed = ?9 WHERE id = ?1",
            params![
                run_id,
                now(),
                result,
                c.copied as i64,
                c.bytes_copied as i64,
                c.already_backed_up as i64,
                c.duplicates as i64,
                c.skipped as i64,
                c.failed as i64
            ],
        )?;
        Ok(())
    }

    /// Marks every run still `running` as `interrupted`, and returns each one's source
    /// name and start. Only for a caller holding the store's lock: then no other run
    /// can be going, and a `running` row is one whose process was killed or whose
    /// computer stopped.
    pub fn close_dead_runs(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "UPDATE runs SET result = 'interrupted' WHERE result = 'running'
             RETURNING (SELECT name FROM sources WHERE id = runs.source_id), started",
        )?;
        let dead = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, String>(1)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(dead)
    }

    /// The latest run of any source, with that source's name and key (`offload doctor`).
    pub fn last_run(&self) -> Result<Option<(String, String, LastRun)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT s.name, s.key, r.started, r.finished, r.result, r.copied, r.failed
                 FROM runs r JOIN sources s ON s.id = r.source_id ORDER BY r.id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        LastRun {
                            started: r.get(2)?,
                            finished: r.get(3)?,
                            result: r.get(4)?,
                            copied: r.get::<_, i64>(5)? as u64,
                            failed: r.get::<_, i64>(6)? as u64,
                        },
                    ))
                },
            )
            .optional()?)
    }

    /// Per-source summary for `offload status`.
    pub fn status(&self) -> Result<Vec<SourceStatus>> {
        let mut out = Vec::new();
        let mut sources = self
            .conn
            .prepare("SELECT id, key, kind, name FROM sources ORDER BY name, key")?;
        let rows: Vec<(i64, String, String, String)> = sources
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, key, kind, name) in rows {
            // Files this source holds, whoever stored them first.
            let (files, bytes): (i64, i64) = self.conn.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE hash IN
                 (SELECT DISTINCT hash FROM sightings WHERE source_id = ?1)",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut cats = self.conn.prepare_cached(
                "SELECT category, count(*) FROM files WHERE hash IN
                 (SELECT DISTINCT hash FROM sightings WHERE source_id = ?1)
                 GROUP BY category ORDER BY count(*) DESC, category",
            )?;
            let categories = cats
                .query_map([id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let tags = if has_table(&self.conn, "file_tags")? {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT tag, count(*) FROM file_tags WHERE hash IN
                     (SELECT DISTINCT hash FROM sightings WHERE source_id = ?1)
                     GROUP BY tag ORDER BY count(*) DESC, tag",
                )?;
                let rows = stmt.query_map([id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            } else {
                Vec::new()
            };
            let cloud_only = self.cloud_only(id)?;
            let last_run = self
                .conn
                .query_row(
                    "SELECT started, finished, result, copied, failed FROM runs
                     WHERE source_id = ?1 ORDER BY id DESC LIMIT 1",
                    [id],
                    |r| {
                        Ok(LastRun {
                            started: r.get(0)?,
                            finished: r.get(1)?,
                            result: r.get(2)?,
                            copied: r.get::<_, i64>(3)? as u64,
                            failed: r.get::<_, i64>(4)? as u64,
                        })
                    },
                )
                .optional()?;
            out.push(SourceStatus {
                id: key,
                kind,
                name,
                files: files as u64,
                bytes: bytes as u64,
                categories,
                tags,
                last_run,
                cloud_only,
            });
        }
        Ok(out)
    }

    /// What the source's library listed, at its last run, that only iCloud holds.
    pub fn cloud_only(&self, source_id: i64) -> Result<Vec<CloudOnly>> {
        if !has_table(&self.conn, "cloud_only")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT remote_path, kind, captured FROM cloud_only WHERE source_id = ?1
             ORDER BY remote_path",
        )?;
        let rows = stmt.query_map([source_id], |r| {
            Ok(CloudOnly {
                path: r.get(0)?,
                kind: r.get(1)?,
                captured: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records what a run found only in iCloud. A run that saw the whole library
    /// (`complete`) replaces the source's list; a filtered one only adds to it.
    pub fn record_cloud_only(
        &mut self,
        source_id: i64,
        found: &[CloudOnly],
        complete: bool,
    ) -> Result<()> {
        let t = now();
        let tx = self.conn.transaction()?;
        if complete {
            tx.execute("DELETE FROM cloud_only WHERE source_id = ?1", [source_id])?;
        }
        {
            let mut add = tx.prepare_cached(
                "INSERT INTO cloud_only(source_id, remote_path, kind, captured, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET kind = excluded.kind, captured = excluded.captured,
                 last_seen = excluded.last_seen",
            )?;
            for c in found {
                add.execute(params![source_id, c.path, c.kind, c.captured, t])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The store path and hash of what this source last had under `remote_path`, if it
    /// was backed up (the still of a Live Photo whose motion half comes later).
    pub fn stored_sighting(
        &self,
        source_id: i64,
        remote_path: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT f.path, f.hash FROM sightings s JOIN files f ON f.hash = s.hash
                 WHERE s.source_id = ?1 AND s.remote_path = ?2
                 ORDER BY s.last_seen DESC LIMIT 1",
                params![source_id, remote_path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Every stored file with its date, category, tags, pair and device folder, by path.
    pub fn stored_with_facts(&self) -> Result<Vec<StoredFile>> {
        let pair = if has_column(&self.conn, "files", "live_pair")? {
            "f.live_pair"
        } else {
            "NULL"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT f.hash, f.size, f.path, f.captured, f.category, {pair}, src.folder
             FROM files f JOIN sources src ON src.id = f.source_id ORDER BY f.path"
        ))?;
        let mut files: Vec<StoredFile> = stmt
            .query_map([], |r| {
                Ok(StoredFile {
                    hash: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    path: r.get(2)?,
                    captured: r.get(3)?,
                    category: r.get(4)?,
                    live_pair: r.get(5)?,
                    device: r.get(6)?,
                    tags: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        if has_table(&self.conn, "file_tags")? {
            let mut tags: std::collections::HashMap<String, Vec<String>> = Default::default();
            let mut stmt = self
                .conn
                .prepare("SELECT hash, tag FROM file_tags ORDER BY hash, tag")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
            for row in rows {
                let (h, t) = row?;
                tags.entry(h).or_default().push(t);
            }
            for f in &mut files {
                f.tags = tags.remove(&f.hash).unwrap_or_default();
            }
        }
        Ok(files)
    }

    /// Stored files to verify: (path, size, hash), all of them or those seen on the
    /// source whose key or name is `device`.
    pub fn stored_files(&self, device: Option<&str>) -> Result<Vec<(String, u64, String)>> {
        let sql = match device {
            None => "SELECT path, size, hash FROM files ORDER BY path",
            Some(_) => {
                "SELECT path, size, hash FROM files WHERE hash IN
                 (SELECT s.hash FROM sightings s JOIN sources src ON src.id = s.source_id
                  WHERE src.key = ?1 OR lower(src.name) = lower(?1) OR lower(src.folder) = lower(?1)
                        OR src.key LIKE '%:' || ?1)
                 ORDER BY path"
            }
        };
        let mut stmt = self.conn.prepare(sql)?;
        let map = |r: &rusqlite::Row| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?));
        let rows = match device {
            None => stmt.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
            Some(d) => stmt.query_map([d], map)?.collect::<rusqlite::Result<_>>()?,
        };
        Ok(rows)
    }

    /// Every stored path, by its case-folded key (to tell unknown files in the store).
    pub fn stored_keys(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT path_key FROM files")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// SQLite's own consistency check; `Ok(None)` when the database is sound, else
    /// what it found.
    pub fn quick_check(&self) -> Result<Option<String>> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(if rows.len() == 1 && rows[0] == "ok" {
            None
        } else {
            Some(rows.join("; "))
        })
    }

    /// Writes a consistent copy of the catalog, with SQLite's online backup, into the
    /// new file `dest` (which must not exist), and syncs it.
    pub fn write_copy(&self, dest: &Path) -> Result<()> {
        {
            let mut out = Connection::open_with_flags(
                dest,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("creating {}", dest.display()))?;
            let b = rusqlite::backup::Backup::new(&self.conn, &mut out)?;
            b.run_to_completion(256, std::time::Duration::ZERO, None)?;
            drop(b);
            // The copy is a single file: no write-ahead log for it to depend on, and
            // none for a reader (or `sqlite3`) to leave beside it.
            out.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))?;
        }
        std::fs::File::open(dest)?.sync_all()?;
        Ok(())
    }

    /// A fact about the catalog itself (see the `notes` table), if set.
    pub fn note(&self, key: &str) -> Result<Option<String>> {
        if !has_table(&self.conn, "notes")? {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row("SELECT value FROM notes WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets (`Some`) or clears (`None`) a fact about the catalog.
    pub fn set_note(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO notes(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => self
                .conn
                .execute("DELETE FROM notes WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    /// The keys of the sources it records (`android:SERIAL`, `folder:PATH`...), and the
    /// content hashes of the files it records.
    pub fn keys_and_hashes(&self) -> Result<(HashSet<String>, HashSet<String>)> {
        let mut keys = self.conn.prepare("SELECT key FROM sources")?;
        let keys = keys
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut hashes = self.conn.prepare("SELECT hash FROM files")?;
        let hashes = hashes
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((keys, hashes))
    }

    /// What the catalog records: files, and sources (phones, folders, `reindexed`).
    pub fn counts(&self) -> Result<Counts> {
        let (files, sources): (i64, i64) = self.conn.query_row(
            "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM sources)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Counts {
            files: files as u64,
            sources: sources as u64,
        })
    }

    /// Adds a file found in the store by `offload reindex`, under the pseudo-source
    /// `source_id`. Returns false when that content is already recorded.
    pub fn add_reindexed(&self, source_id: i64, f: &NewFile) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO files(hash, size, path, path_key, captured, date_source, category, source_id, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
            params![
                f.hash,
                f.size as i64,
                f.path,
                f.path_key,
                f.captured,
                f.date_source,
                f.category,
                source_id,
                now()
            ],
        )?;
        for tag in f.tags {
            self.conn.execute(
                "INSERT INTO file_tags(hash, tag) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![f.hash, tag],
            )?;
        }
        Ok(n == 1)
    }

    /// What this store holds of a phone's file, if that exact file (path, size and
    /// mtime as backed up) was backed up from that device: (hash, stored path,
    /// capture date, category).
    pub fn backed_up(
        &self,
        source_key: &str,
        remote_path: &str,
        size: u64,
        mtime: i64,
    ) -> Result<Option<(String, String, String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT f.hash, f.path, f.captured, f.category FROM sightings s
                 JOIN sources src ON src.id = s.source_id
                 JOIN files f ON f.hash = s.hash
                 WHERE src.key = ?1 AND s.remote_path = ?2 AND s.size = ?3 AND s.mtime = ?4",
                params![source_key, remote_path, size as i64, mtime],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?)
    }

    /// The tags recorded for the stored file with this hash (favorite, album:NAME...).
    pub fn tags_of(&self, hash: &str) -> Result<Vec<String>> {
        if !has_table(&self.conn, "file_tags")? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT tag FROM file_tags WHERE hash = ?1 ORDER BY tag")?;
        let rows = stmt.query_map([hash], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a deletion from a phone, with the verified copy that justified it.
    pub fn record_deletion(
        &self,
        source_key: &str,
        remote_path: &str,
        size: u64,
        mtime: i64,
        hash: &str,
        verified_copy: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO deletions(at, source_key, remote_path, size, mtime, hash, verified_copy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                now(),
                source_key,
                remote_path,
                size as i64,
                mtime,
                hash,
                verified_copy
            ],
        )?;
        Ok(())
    }

    /// Total files and bytes in the store.
    pub fn totals(&self) -> Result<(u64, u64)> {
        let (n, b): (i64, i64) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM files",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, b as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceKind;

    fn info(id: &str) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            kind: SourceKind::Folder,
            name: "sd".into(),
            manufacturer: None,
            model: None,
            serial: None,
            storages: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn record_and_query() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&d.path().join(CATALOG_FILE), true).unwrap();
        let (sid, folder) = c.upsert_source(&info("folder:/x")).unwrap();
        assert_eq!(folder, "sd");
        assert_eq!(c.upsert_source(&info("folder:/x")).unwrap(), (sid, folder));
        // Another device with the same name gets its own folder, for good.
        let (_, other) = c.upsert_source(&info("android:SERIAL123456")).unwrap();
        assert_eq!(other, "sd 123456");
        assert_eq!(
            c.upsert_source(&info("android:SERIAL123456")).unwrap().1,
            "sd 123456"
        );
        let f = NewFile {
            hash: "aa",
            size: 3,
            path: "sd/2024/01/A.jpg",
            path_key: "sd/2024/01/a.jpg",
            captured: "2024-01-02T03:04:05",
            date_source: "exif",
            category: "photo",
            tags: &["favorite".to_string()],
            live_pair: None,
        };
        let s = Sighting {
            remote_path: "DCIM/A.jpg",
            size: 3,
            mtime: 7,
            hash: "aa",
            tags: &[],
        };
        c.record(sid, &[f], &[s]).unwrap();
        assert!(c
            .sightings(sid)
            .unwrap()
            .contains(&("DCIM/A.jpg".to_string(), 3, 7)));
        assert_eq!(
            c.path_of_hash("aa").unwrap().as_deref(),
            Some("sd/2024/01/A.jpg")
        );
        assert!(c.name_taken("sd/2024/01/a.jpg").unwrap());
        assert!(!c.name_taken("sd/2024/01/b.jpg").unwrap());
        let run = c.start_run(sid).unwrap();
        c.finish_run(
            run,
            "ok",
            &RunCounts {
                copied: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let st = c.status().unwrap();
        assert_eq!(st.len(), 2);
        let x = st.iter().find(|s| s.id == "folder:/x").unwrap();
        assert_eq!(x.files, 1);
        assert_eq!(x.categories, vec![("photo".to_string(), 1)]);
        assert_eq!(x.tags, vec![("favorite".to_string(), 1)]);
        assert_eq!(x.last_run.as_ref().unwrap().result, "ok");
        let other = st.iter().find(|s| s.id != "folder:/x").unwrap();
        assert_eq!((other.files, other.last_run.is_none()), (0, true));
    }

    #[test]
    fn a_catalog_from_before_tags_opens_and_gains_them() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(CATALOG_FILE);
        {
            // The schema as the first release wrote it.
            let old = Connection::open(&path).unwrap();
            let first: String = SCHEMA
                .split("CREATE TABLE IF NOT EXISTS file_tags")
                .next()
                .unwrap()
                .to_string();
            old.execute_batch(&first).unwrap();
            old.execute_batch(
                "INSERT INTO sources(key, kind, name, folder, first_seen, last_seen)
                 VALUES ('folder:/o', 'folder', 'o', 'o', 't', 't');
                 INSERT INTO files(hash, size, path, path_key, captured, date_source, category, source_id, added_at)
                 VALUES ('h', 1, 'o/a.jpg', 'o/a.jpg', '2024-01-01T00:00:00', 'exif', 'photo', 1, 't');",
            )
            .unwrap();
        }
        // Read-only (status) on the old schema: no tags, no iCloud list, no error, and
        // nothing written.
        let ro = Catalog::open_read_only(&path).unwrap();
        let st = ro.status().unwrap();
        assert!(st[0].tags.is_empty() && st[0].cloud_only.is_empty());
        assert_eq!(ro.stored_with_facts().unwrap()[0].live_pair, None);
        assert_eq!(version(&ro.conn), 0);
        assert!(!has_table(&ro.conn, "file_tags").unwrap());
        drop(ro);
        let mut c = Catalog::open(&path, true).unwrap();
        assert!(has_column(&c.conn, "files", "live_pair").unwrap());
        assert!(has_table(&c.conn, "file_tags").unwrap());
        assert_eq!(version(&c.conn), steps().len() as i64);
        assert_eq!(
            c.counts().unwrap(),
            Counts {
                files: 1,
                sources: 1
            }
        );
        c.record_cloud_only(
            1,
            &[CloudOnly {
                path: "DCIM/100APPLE/IMG_9.HEIC".into(),
                kind: "photo".into(),
                captured: None,
            }],
            true,
        )
        .unwrap();
        assert_eq!(c.cloud_only(1).unwrap().len(), 1);
        c.record_cloud_only(1, &[], true).unwrap();
        assert!(c.cloud_only(1).unwrap().is_empty());
        // Opening again changes nothing.
        drop(c);
        Catalog::open(&path, true).unwrap();
    }

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_catalog_of_the_last_unversioned_shape_is_only_stamped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(CATALOG_FILE);
        {
            // Every table and column, as written before versions were recorded.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA).unwrap();
            old.execute_batch("ALTER TABLE files ADD COLUMN live_pair TEXT")
                .unwrap();
        }
        let c = Catalog::open(&path, false).unwrap();
        assert_eq!(version(&c.conn), steps().len() as i64);
        assert_eq!(
            version(&Catalog::in_memory().unwrap().conn),
            steps().len() as i64
        );
    }

    #[test]
    fn a_catalog_of_a_newer_offload_is_refused_untouched() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(CATALOG_FILE);
        let newer = steps().len() as i64 + 1;
        {
            let c = Catalog::open(&path, false).unwrap();
            c.upsert_source(&info("folder:/n")).unwrap();
            c.conn.pragma_update(None, "user_version", newer).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        for opened in [
            Catalog::open(&path, true).map(drop),
            Catalog::open_read_only(&path).map(drop),
        ] {
            let err = opened.unwrap_err();
            let f = err.downcast_ref::<crate::error::Fail>().expect("a Fail");
            assert_eq!(f.code, Exit::Destination);
            assert!(
                f.message.contains("written by a newer offload"),
                "{}",
                f.message
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!d.path().join("catalog.sqlite-wal").exists());
    }

    #[test]
    fn a_second_file_under_a_case_twin_name_is_refused() {
        let c = Catalog::in_memory().unwrap();
        let mut c = c;
        let (sid, _) = c.upsert_source(&info("folder:/y")).unwrap();
        let mk = |hash: &'static str, path: &'static str| NewFile {
            hash,
            size: 1,
            path,
            path_key: "p/a.jpg",
            captured: "2024-01-01T00:00:00",
            date_source: "mtime",
            category: "photo",
            tags: &[],
            live_pair: None,
        };
        c.record(sid, &[mk("h1", "p/A.jpg")], &[]).unwrap();
        assert!(c.record(sid, &[mk("h2", "p/a.jpg")], &[]).is_err());
    }
}
