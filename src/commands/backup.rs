//! `offload backup`
pub fn run(_args: &crate::cli::BackupArgs) -> anyhow::Result<u8> {
    todo!()
}
