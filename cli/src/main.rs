//! The `maas` binary: parse arguments, run the command, print its result or one error line.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = maas_cli::Cli::parse();
    // A server logs every request; one-shot commands only warnings.
    let default_level = match cli.command {
        maas_cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match maas_cli::run(cli).await {
        Ok(rendered) => {
            println!("{}", rendered.0);
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
