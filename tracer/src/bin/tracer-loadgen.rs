//! Load for `cargo xtask bench`, on loopback, bounded in time:
//!
//! - `tracer-loadgen pingpong --port P --secs S [--conns N] [--rate R]`: N connections each
//!   doing 64-byte request/response round trips (at most R a second each when R > 0); prints
//!   `round_trips_per_sec=<f64>`.
//! - `tracer-loadgen churn --port P --secs S [--clients N] [--rate R]`: N clients each doing
//!   connect, 64 bytes each way, close, as fast as they can or, when R > 0, R connections a
//!   second in total (shared evenly by the clients); prints `connections_per_sec=<f64>`.
//!
//! The server side runs in the same process (threads), so both ends are traced alike.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

const MESSAGE: usize = 64;

#[derive(Parser)]
#[command(about = "Loopback load generator for tracer's benchmarks")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Request/response round trips on long-lived connections.
    Pingpong {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// Round trips per second per connection at most (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
    /// Short connections: connect, exchange, close.
    Churn {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Connections per second in total at most (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
}

fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = stream;
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; MESSAGE];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        });
    }
}

/// One worker's schedule: the n-th operation starts no earlier than n periods after the
/// first, so a late one is made up for, not carried forward.
struct Pacer {
    start: Instant,
    period: Option<Duration>,
    started: u32,
}

impl Pacer {
    /// At most `per_sec` operations a second (0: no pacing).
    fn new(per_sec: f64) -> Self {
        Self {
            start: Instant::now(),
            period: (per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / per_sec)),
            started: 0,
        }
    }

    /// Sleeps until the next operation is due.
    fn wait(&mut self) {
        if let Some(period) = self.period {
            let due = self.start + period * self.started;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            self.started += 1;
        }
    }
}

fn run(
    workers: usize,
    secs: f64,
    work: impl Fn(&AtomicBool, &AtomicU64) + Send + Sync + 'static,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let work = Arc::new(work);
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (stop, count, work) = (stop.clone(), count.clone(), work.clone());
            std::thread::spawn(move || work(&stop, &count))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let port = match &args.mode {
        Mode::Pingpong { port, .. } | Mode::Churn { port, .. } => *port,
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tracer-loadgen: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::spawn(move || serve(listener));
    match args.mode {
        Mode::Pingpong {
            secs, conns, rate, ..
        } => {
            let rate = run(conns, secs, move |stop, count| {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let _ = s.set_nodelay(true);
                let mut buf = [7u8; MESSAGE];
                let mut pacer = Pacer::new(f64::from(rate));
                while !stop.load(Ordering::Relaxed) {
                    pacer.wait();
                    if s.write_all(&buf).is_err() || s.read_exact(&mut buf).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
            println!("round_trips_per_sec={rate:.1}");
        }
        Mode::Churn {
            secs,
            clients,
            rate,
            ..
        } => {
            // Each client keeps its own schedule, so a slow connection delays only its client.
            let per_client = f64::from(rate) / clients.max(1) as f64;
            let rate = run(clients, secs, move |stop, count| {
                let mut buf = [7u8; MESSAGE];
                let mut pacer = Pacer::new(per_client);
                while !stop.load(Ordering::Relaxed) {
                    pacer.wait();
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    if s.write_all(&buf).is_ok() && s.read_exact(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            println!("connections_per_sec={rate:.1}");
        }
    }
    ExitCode::SUCCESS
}
