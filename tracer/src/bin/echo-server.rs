//! `echo-server --port 8080`: answers each message with `your message is<message>`, many
//! clients at once (a thread each).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;

use clap::Parser;

/// The echo demo's server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Port to listen on.
    #[arg(short, long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-server: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("echo-server: listening on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    let peer = stream.peer_addr().ok();
                    if let Err(e) = tracer::demo::echo::serve(stream) {
                        eprintln!("echo-server: {peer:?}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("echo-server: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}
