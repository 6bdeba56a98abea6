//! `offload sim ...`: virtual devices and generated camera rolls.
use crate::cli::SimCommand;

pub fn run(cmd: SimCommand) -> anyhow::Result<u8> {
    match cmd {
        SimCommand::Roll(_args) => todo!(),
        SimCommand::Iphone(args) => crate::sim::iphone::run(*args),
    }
}
