//! The pure, input-facing modules of offload, compiled from the main crate's own files
//! so that the fuzz targets exercise exactly the code that ships.
#![allow(dead_code)]

/// `src/media/`: capture dates (EXIF/QuickTime metadata, dates in file names) and categories.
#[path = "../../src/media/mod.rs"]
pub mod media;

/// The parts of `src/store/` that turn untrusted names into store paths.
pub mod store;
