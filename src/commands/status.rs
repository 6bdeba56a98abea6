//! `offload status`
pub fn run(_args: &crate::cli::StatusArgs) -> anyhow::Result<u8> {
    todo!()
}
