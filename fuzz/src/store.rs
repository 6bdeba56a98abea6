//! `src/store/names.rs` and `src/store/template.rs`, under the same module names as in
//! offload (the renderer refers to `super::names`).

#[path = "../../src/store/names.rs"]
pub mod names;
#[path = "../../src/store/template.rs"]
pub mod template;
