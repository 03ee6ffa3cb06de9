//! The `tracer` command. Errors become one line on stderr and a non-zero exit code:
//! 2 for usage errors, 1 for everything else.

use std::process::ExitCode;

use clap::Parser;
use tracer::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            return ExitCode::from(2);
        }
    };
    if let Some(tracer::cli::Command::Decode { hex }) = &cli.command {
        return decode(&hex.join(""));
    }
    if let Err(e) = cli.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tracer::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tracer decode HEX`: no privileges needed, nothing loaded.
fn decode(hex: &str) -> ExitCode {
    let result = tracer::decode::tcpip::parse_hex(hex)
        .and_then(|bytes| tracer::decode::tcpip::dissect(&bytes));
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot decode: {e}");
            ExitCode::from(2)
        }
    }
}
