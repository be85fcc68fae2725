//! The `maas` binary: parse arguments, run the command, print its result or one error line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = maas_cli::Cli::parse();
    if let Err(err) = maas_engine::threads::configure_from_env() {
        eprintln!("error: {err}");
        return std::process::ExitCode::FAILURE;
    }
    // A one-shot prediction is a process start away from its answer: one thread drives it (the
    // model load still hashes and parses on two blocking threads). Everything else gets the
    // multi-threaded runtime.
    let runtime = match cli.command {
        maas_cli::Command::Predict(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(err) => {
            eprintln!("error: can't start the async runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: maas_cli::Cli) -> std::process::ExitCode {
    // A server logs every request; one-shot commands only warnings. tract warns about every
    // exporter's opset newer than it is tested against (skl2onnx writes 21), which says nothing
    // actionable: push has already proved the graph serves.
    let default_level = match cli.command {
        maas_cli::Command::Serve(_) => "info,tract_onnx=error",
        _ => "warn,tract_onnx=error",
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
