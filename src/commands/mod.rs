//! One file per subcommand.

pub mod init;
pub mod known_hosts;
pub mod render;

use crate::cli::{Cli, Command};
use crate::error::Error;

pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Init(args) => init::run(&args),
        Command::KnownHosts(args) => known_hosts::run(&args.path),
        Command::Render(args) => render::run(&args),
    }
}
