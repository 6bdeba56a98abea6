//! One module per subcommand.
pub mod backup;
pub mod demo;
pub mod devices;
pub mod export;
pub mod reindex;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod verify;
