//! The `tracer` command. Errors become one line on stderr and a non-zero exit code:
//! 2 for usage errors, 1 for everything else.

use std::process::ExitCode;

use clap::Parser;
use tracer::cli::Cli;
use tracer::decode::tcpip::{Layer, dissect, parse_hex};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's message, with what it lists on the lines after (a missing
            // argument's name) joined to it, and without its usage block.
            let text = e.render().to_string();
            let line = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!(
                "{}",
                if line.is_empty() {
                    "error: bad arguments"
                } else {
                    &line
                }
            );
            return ExitCode::from(2);
        }
    };
    if let Some(tracer::cli::Command::Decode { hex, ip, tcp }) = &cli.command {
        let layer = match (ip, tcp) {
            (true, _) => Layer::Ip,
            (_, true) => Layer::Tcp,
            _ => Layer::Auto,
        };
        return decode(&hex.join(""), layer);
    }
    if let Some(tracer::cli::Command::Replay { file, views }) = &cli.command {
        return match tracer::replay::run(file, views) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) if tracer::app::is_broken_pipe(&e) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
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
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            // A command that could not run exits as a shell would say (127, 126).
            match e.downcast_ref::<tracer::system::command::CommandError>() {
                Some(e) => ExitCode::from(e.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `tracer decode HEX`: no privileges needed, nothing loaded.
fn decode(hex: &str, layer: Layer) -> ExitCode {
    let bytes = match parse_hex(hex) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot decode: {e}");
            return ExitCode::from(2);
        }
    };
    match dissect(&bytes, layer) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let read_as = layer.of(&bytes);
            let hint = match (layer, read_as) {
                (Layer::Auto, Layer::Ip) => "; if these bytes are a bare TCP header, pass --tcp",
                (Layer::Auto, _) => "; if they start with an IP header, pass --ip",
                _ => "",
            };
            let what = if read_as == Layer::Ip {
                "an IP packet"
            } else {
                "a TCP header"
            };
            eprintln!("error: cannot decode as {what}: {e}{hint}");
            ExitCode::from(2)
        }
    }
}
