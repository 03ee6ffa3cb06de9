//! The loss lab's bulk transfer: `bulk serve --port P --bytes N` accepts one connection, sends
//! it N bytes and closes; `bulk fetch --addr HOST:P` reads until the server closes and prints
//! how many bytes arrived.
//!
//! With `serve --hold-ms T` and `fetch --ping-after N [--quiet-ms Q] [--pings P]`, the
//! connection stays open once the bytes are across: the client waits Q ms (its last ACKs go
//! out on their own), sends one byte (P times, Q ms apart), the server reads one and waits T ms
//! before closing — a quiet, established connection whose numbers can be read (`ss -tin`).
//! A second ping makes the server's last sample follow the first ping's window update.

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
        /// After sending, wait for one byte from the client, then this long before closing.
        #[arg(long)]
        hold_ms: Option<u64>,
        /// The congestion-control algorithm of the connection (`TCP_CONGESTION`), when not
        /// the namespace's default.
        #[arg(long)]
        congestion: Option<String>,
    },
    /// Connect, read until the server closes, print the byte count.
    Fetch {
        #[arg(long)]
        addr: String,
        /// With `serve --hold-ms`: read this many bytes, then send one byte back.
        #[arg(long)]
        ping_after: Option<u64>,
        /// Wait this long before sending that byte.
        #[arg(long, default_value_t = 0)]
        quiet_ms: u64,
        /// Send that byte this many times, each after the wait.
        #[arg(long, default_value_t = 1)]
        pings: u32,
    },
}

fn serve(
    bind: IpAddr,
    port: u16,
    bytes: usize,
    hold_ms: Option<u64>,
    congestion: Option<&str>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind((bind, port))?;
    let (mut stream, _) = listener.accept()?;
    if let Some(name) = congestion {
        set_congestion(&stream, name)?;
    }
    let chunk = vec![b'x'; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n;
    }
    if let Some(ms) = hold_ms {
        let mut ping = [0u8; 1];
        stream.read_exact(&mut ping)?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // Later pings, read so that closing sends a FIN: unread bytes would make it a RST.
        stream.set_nonblocking(true)?;
        while matches!(stream.read(&mut ping), Ok(1..)) {}
    }
    Ok(())
}

/// `setsockopt(TCP_CONGESTION)`: one not in `tcp_allowed_congestion_control` needs
/// CAP_NET_ADMIN.
fn set_congestion(stream: &TcpStream, name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the pointer and length describe `name`'s bytes, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn fetch(addr: &str, ping_after: Option<u64>, quiet_ms: u64, pings: u32) -> std::io::Result<u64> {
    let mut stream = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut pinged = false;
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
        if !pinged && ping_after.is_some_and(|after| total >= after) {
            for _ in 0..pings {
                std::thread::sleep(std::time::Duration::from_millis(quiet_ms));
                stream.write_all(b"!")?;
            }
            pinged = true;
        }
    }
}

fn main() -> ExitCode {
    let result = match Args::parse().mode {
        Mode::Serve {
            port,
            bind,
            bytes,
            hold_ms,
            congestion,
        } => serve(bind, port, bytes, hold_ms, congestion.as_deref()),
        Mode::Fetch {
            addr,
            ping_after,
            quiet_ms,
            pings,
        } => fetch(&addr, ping_after, quiet_ms, pings).map(|n| println!("{n}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulk: {e}");
            ExitCode::FAILURE
        }
    }
}
