//! One module per subcommand.
pub mod backup;
pub mod demo;
#[cfg(feature = "sim")]
pub mod sim;
pub mod status;
