//! The `machinist` binary: `run` (the operator), `sandbox` (the embedded API server with the operator on
//! it), `crd` and `openapi`. The operator is the `machinist` library; the sandbox is `machinist-sandbox`.

mod sandbox_cmd;

use std::process::ExitCode;

use clap::Parser;
use machinist::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    machinist::telemetry::init(match &cli.command {
        Command::Run(args) => args.log_format,
        Command::Sandbox(args) => args.operator.log_format,
        Command::Crd | Command::Openapi => Default::default(),
    });
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Run(args) => {
            machinist::telemetry::log_startup(&args);
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                machinist::app::termination_signal().await;
                signal.cancel();
            });
            machinist::app::OperatorBuilder::new(args).run(shutdown).await.map_err(Into::into)
        }
        Command::Sandbox(args) => sandbox_cmd::run_sandbox(args).await.map_err(Into::into),
        Command::Crd => {
            print!("{}", machinist::reconcile::crd::crd_yaml());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", machinist::api::openapi_json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("machinist: {error}");
            ExitCode::FAILURE
        }
    }
}
