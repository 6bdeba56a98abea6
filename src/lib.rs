//! The offload engine: it finds phones and camera folders, lists their camera rolls,
//! plans what is new against the catalog, copies it in one pass (hash + temp file),
//! commits it into the store and records it, and verifies, exports and frees up.
//!
//! Data moves one way: `source` (devices; knows nothing of the store) → `plan` →
//! `transfer` → `commit` → `store` (files and names; knows nothing of phones) and
//! `catalog` (the record). `media` tells what a file is and when it was taken. The
//! command line (`src/cli/`) is one face of this library; the virtual phones (`sim`,
//! feature `sim`) are another way in, for demos and tests.

#[macro_use]
pub mod out;

pub mod beneath;
pub mod catalog;
pub mod catalog_files;
pub mod commit;
pub mod config;
pub mod error;
pub mod events;
pub mod filter;
pub mod media;
pub mod plan;
pub mod report;
#[cfg(feature = "sim")]
pub mod sim;
pub mod source;
pub mod stop;
pub mod store;
pub mod term;
pub mod transfer;
