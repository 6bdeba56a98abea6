//! One module per subcommand.
pub mod backup;
pub mod demo;
pub mod devices;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
