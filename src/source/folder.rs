//! A mounted folder holding a camera roll.
