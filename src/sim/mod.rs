//! Virtual devices and sample data for `offload demo` and the tests.

pub mod android;
pub mod gen;
pub mod iphone;

/// Names a file that a folder source creates once it has listed its files, then waits
/// for it to be removed (at most a minute): a test changes the folder in that pause,
/// between the listing and the reading, at exactly that instant.
pub const PAUSE_AFTER_LISTING_ENV: &str = "OFFLOAD_SIM_PAUSE_AFTER_LISTING";

/// The pause of [`PAUSE_AFTER_LISTING_ENV`], when it is set; nothing otherwise.
pub fn pause_after_listing() {
    let Some(flag) = std::env::var_os(PAUSE_AFTER_LISTING_ENV) else {
        return;
    };
    let flag = std::path::PathBuf::from(flag);
    if std::fs::write(&flag, b"listed\n").is_err() {
        return;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while flag.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
