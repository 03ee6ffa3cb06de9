//! The loss lab's bulk transfer: `bulk serve --port P --bytes N` accepts one connection, sends
//! it N bytes and closes; `bulk fetch --addr HOST:P` reads until the server closes and prints
//! how many bytes arrived.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "A one-connection bulk transfer for tracer's loss lab"
)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Accept one connection, send it the bytes, close.
    Serve {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
    },
    /// Connect, read until the server closes, print the byte count.
    Fetch {
        #[arg(long)]
        addr: String,
    },
}

fn serve(bind: IpAddr, port: u16, bytes: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind((bind, port))?;
    let (mut stream, _) = listener.accept()?;
    let chunk = vec![b'x'; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n;
    }
    Ok(())
}

fn fetch(addr: &str) -> std::io::Result<u64> {
    let mut stream = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn main() -> ExitCode {
    let result = match Args::parse().mode {
        Mode::Serve { port, bind, bytes } => serve(bind, port, bytes),
        Mode::Fetch { addr } => fetch(&addr).map(|n| println!("{n}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulk: {e}");
            ExitCode::FAILURE
        }
    }
}
