//! `echo-client --addr 127.0.0.1:8080`: sends each stdin line, prints the reply, quits on `Q`.
//! With `--message`, sends those messages instead and quits.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::process::ExitCode;

use clap::Parser;
use tracer::demo::echo;

/// The echo demo's client.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Server address.
    #[arg(short, long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Send this message instead of reading stdin (repeatable).
    #[arg(short, long = "message")]
    messages: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut stream = match TcpStream::connect(&args.addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo-client: cannot connect to {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let result = if args.messages.is_empty() {
        interactive(&mut stream)
    } else {
        args.messages
            .iter()
            .take_while(|m| !echo::is_quit(m))
            .try_for_each(|m| echo::exchange(&mut stream, m).map(|r| println!("{r}")))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn interactive(stream: &mut TcpStream) -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = io::stdout();
    write!(out, "> ")?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        if echo::is_quit(&line) {
            break;
        }
        let message = line.trim_end();
        if !message.is_empty() {
            println!("{}", echo::exchange(stream, message)?);
        }
        write!(out, "> ")?;
        out.flush()?;
    }
    Ok(())
}
