//! The fuzz targets' view of offload: the library's own modules, as shipped.

pub use offload::{media, store};
