use clap::Parser;
use machinist::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    machinist::telemetry::init();
    match cli.command {
        Command::Run(_) | Command::Sandbox(_) | Command::Crd | Command::Openapi => {
            eprintln!("machinist: not implemented yet");
            std::process::ExitCode::FAILURE
        }
    }
}
