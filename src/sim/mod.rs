//! Virtual devices and sample data for `offload demo` and the tests.

pub mod android;
pub mod gen;
pub mod iphone;
