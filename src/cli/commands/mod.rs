//! One module per subcommand.
pub mod backup;
pub mod config;
pub mod devices;
pub mod doctor;
pub mod export;
pub mod free_up;
pub mod reindex;
pub mod schedule;
/// `demo` and `sim`: the commands of the virtual phones.
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
pub mod verify;
pub mod watch;
