//! `--record FILE`: the ring buffer's raw records of a run, and everything else the pipeline
//! was told (the listeners found at the start, where processes run, the drain ticks, the drop
//! notices, the in-kernel failure counts at the end), so that `tracer replay FILE` sends the
//! same input through the same pipeline and renders it as any view — the same connections,
//! the same order, the same numbers — with no kernel, privileges or `/proc` involved.
//!
//! The format is private to this version of the tracer (the records are the kernel side's
//! structs, which change with it): an 8-byte magic, a version, then frames of a tag byte, a
//! little-endian `u32` length and the body.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use tracer_common::failure::FAILURE_KINDS;

use crate::decode::Endpoint;
use crate::hooks::failures::Counts;
use crate::system::place::Place;

const MAGIC: &[u8; 8] = b"TRACEREC";
/// Bumped whenever the records or the frames change: a recording is replayed only by the
/// tracer that wrote it.
const VERSION: u32 = 1;

/// A frame's tag.
mod tag {
    pub const RECORD: u8 = 1;
    pub const DRAIN: u8 = 2;
    pub const LISTENER: u8 = 3;
    pub const PLACE: u8 = 4;
    pub const DROPPED: u8 = 5;
    pub const FINISH: u8 = 6;
    pub const SKIPPED: u8 = 7;
}

/// What a recording says of its run, ahead of the frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Wall-clock minus monotonic clock at the start: dates the kernel's timestamps.
    pub realtime_offset_ns: i128,
    /// Segments no traced connection claims were dropped (`--netns`, `--cgroup`).
    pub drop_strays: bool,
    /// The syscall layer was off (`--no-syscalls`).
    pub no_syscalls: bool,
}

/// One thing the pipeline was told, in the order it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A raw ring-buffer record.
    Record(Vec<u8>),
    /// Everything older than the reorder window at this time was rendered.
    Drain(u64),
    /// A listener open before the start, found in `/proc`.
    Listener {
        /// Its process.
        pid: u32,
        /// Its process's name.
        comm: String,
        /// Its fd.
        fd: i32,
        /// Its address.
        local: Endpoint,
        /// When it was adopted.
        now_ns: u64,
    },
    /// Where process `pid` runs, as the live run resolved it (`None`: it could not).
    Place(u32, Option<Place>),
    /// A drop notice: the in-kernel failure counts so far and since the last notice.
    Dropped {
        /// Since the start.
        total: Counts,
        /// Since the last notice.
        new: Counts,
    },
    /// A notice of program runs the kernel skipped: so far and since the last notice, per
    /// program.
    Skipped {
        /// Since the start.
        total: Vec<(String, u64)>,
        /// Since the last notice.
        new: Vec<(String, u64)>,
    },
    /// The run's end: its in-kernel failure counts and the programs' skipped runs.
    Finish {
        /// Failures per reason.
        failures: Counts,
        /// Runs the kernel skipped, per program.
        skipped: Vec<(String, u64)>,
    },
}

/// Why a recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a recording.
    #[error("not a recording made with `tracer --record`")]
    NotARecording,
    /// Written by another version.
    #[error("recorded by another version of the tracer (format {0}, this one reads {VERSION})")]
    Version(u32),
    /// A frame is cut or malformed.
    #[error("frame {index} is malformed: {why}")]
    Malformed {
        /// Which frame, from 0.
        index: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// Writes a recording.
pub struct Recorder<W: Write = BufWriter<File>> {
    out: W,
    /// What it writes to, for messages.
    pub target: String,
}

impl Recorder {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, header: Header) -> io::Result<Self> {
        let out = BufWriter::with_capacity(1 << 16, File::create(path)?);
        Self::new(out, header, path.display().to_string())
    }
}

impl<W: Write> Recorder<W> {
    /// A recorder writing to `out`, header first.
    pub fn new(mut out: W, header: Header, target: String) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&header.realtime_offset_ns.to_le_bytes())?;
        out.write_all(&[u8::from(header.drop_strays) | u8::from(header.no_syscalls) << 1])?;
        Ok(Self { out, target })
    }

    /// A raw ring-buffer record; written without building a frame, as it is most of the file.
    pub fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(&[tag::RECORD])?;
        self.out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.out.write_all(bytes)
    }

    /// Any frame.
    pub fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        let mut body = Vec::new();
        let tag = match frame {
            Frame::Record(bytes) => return self.record(bytes),
            Frame::Drain(now) => {
                body.extend_from_slice(&now.to_le_bytes());
                tag::DRAIN
            }
            Frame::Listener {
                pid,
                comm,
                fd,
                local,
                now_ns,
            } => {
                body.extend_from_slice(&pid.to_le_bytes());
                body.extend_from_slice(&fd.to_le_bytes());
                put_endpoint(&mut body, *local);
                body.extend_from_slice(&now_ns.to_le_bytes());
                body.extend_from_slice(comm.as_bytes());
                tag::LISTENER
            }
            Frame::Place(pid, place) => {
                body.extend_from_slice(&pid.to_le_bytes());
                match place {
                    None => body.push(0),
                    Some(p) => {
                        body.push(1);
                        body.extend_from_slice(&p.netns.map_or(0, |n| n).to_le_bytes());
                        body.push(u8::from(p.netns.is_some()));
                        match &p.cgroup {
                            Some(c) => {
                                body.push(1);
                                body.extend_from_slice(c.as_bytes());
                            }
                            None => body.push(0),
                        }
                    }
                }
                tag::PLACE
            }
            Frame::Dropped { total, new } => {
                for n in total.iter().chain(new) {
                    body.extend_from_slice(&n.to_le_bytes());
                }
                tag::DROPPED
            }
            Frame::Skipped { total, new } => {
                for list in [total, new] {
                    body.extend_from_slice(&(list.len() as u32).to_le_bytes());
                    put_runs(&mut body, list);
                }
                tag::SKIPPED
            }
            Frame::Finish { failures, skipped } => {
                for n in failures {
                    body.extend_from_slice(&n.to_le_bytes());
                }
                put_runs(&mut body, skipped);
                tag::FINISH
            }
        };
        self.out.write_all(&[tag])?;
        self.out.write_all(&(body.len() as u32).to_le_bytes())?;
        self.out.write_all(&body)
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a recording, frame by frame.
pub struct Replay<R: Read = BufReader<File>> {
    input: R,
    /// What the run said of itself.
    pub header: Header,
    index: u64,
    body: Vec<u8>,
}

impl Replay {
    /// Opens `path` and reads the header.
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        Self::new(BufReader::with_capacity(1 << 16, File::open(path)?))
    }
}

impl<R: Read> Replay<R> {
    /// Reads the header from `input`.
    pub fn new(mut input: R) -> Result<Self, RecordingError> {
        let mut head = [0u8; 8 + 4 + 16 + 1];
        input.read_exact(&mut head).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => RecordingError::NotARecording,
            _ => RecordingError::Io(e),
        })?;
        if &head[..8] != MAGIC {
            return Err(RecordingError::NotARecording);
        }
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        if version != VERSION {
            return Err(RecordingError::Version(version));
        }
        let header = Header {
            realtime_offset_ns: i128::from_le_bytes(head[12..28].try_into().unwrap_or_default()),
            drop_strays: head[28] & 1 != 0,
            no_syscalls: head[28] & 2 != 0,
        };
        Ok(Self {
            input,
            header,
            index: 0,
            body: Vec::new(),
        })
    }

    /// The next raw record, or another frame, or `None` at the end. A record is lent from a
    /// buffer reused for each (replaying allocates nothing per record); call
    /// [`Replay::frame`] to read any other frame.
    pub fn next_frame(&mut self) -> Result<Option<Next<'_>>, RecordingError> {
        let mut head = [0u8; 5];
        match read_or_end(&mut self.input, &mut head) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(self.malformed("cut short (the run was killed?)"));
            }
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(self.malformed("longer than any frame"));
        }
        self.body.resize(len, 0);
        self.input.read_exact(&mut self.body).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.malformed("cut short (the run was killed?)")
            } else {
                RecordingError::Io(e)
            }
        })?;
        self.index += 1;
        let index = self.index - 1;
        let body = &self.body[..];
        let frame = match head[0] {
            tag::RECORD => return Ok(Some(Next::Record(body))),
            tag::DRAIN => Frame::Drain(read_u64(body, 0).ok_or(short(index))?),
            tag::LISTENER => {
                let pid = read_u32(body, 0).ok_or(short(index))?;
                let fd = read_u32(body, 4).ok_or(short(index))? as i32;
                let local =
                    get_endpoint(body.get(8..27).ok_or(short(index))?).ok_or(short(index))?;
                let now_ns = read_u64(body, 27).ok_or(short(index))?;
                let comm = String::from_utf8_lossy(&body[35..]).into_owned();
                Frame::Listener {
                    pid,
                    comm,
                    fd,
                    local,
                    now_ns,
                }
            }
            tag::PLACE => {
                let pid = read_u32(body, 0).ok_or(short(index))?;
                let place = match body.get(4) {
                    Some(0) => None,
                    Some(_) => {
                        let netns = read_u64(body, 5).ok_or(short(index))?;
                        let has_netns = *body.get(13).ok_or(short(index))? != 0;
                        let cgroup = match body.get(14) {
                            Some(0) => None,
                            Some(_) => Some(String::from_utf8_lossy(&body[15..]).into_owned()),
                            None => return Err(short(index)),
                        };
                        Some(Place {
                            netns: has_netns.then_some(netns),
                            cgroup,
                        })
                    }
                    None => return Err(short(index)),
                };
                Frame::Place(pid, place)
            }
            tag::DROPPED => {
                let total = read_counts(body, 0).ok_or(short(index))?;
                let new = read_counts(body, COUNTS_LEN).ok_or(short(index))?;
                Frame::Dropped { total, new }
            }
            tag::SKIPPED => {
                let mut at = 0;
                let mut lists = [Vec::new(), Vec::new()];
                for list in &mut lists {
                    let count = read_u32(body, at).ok_or(short(index))?;
                    at += 4;
                    for _ in 0..count {
                        list.push(read_run(body, &mut at).ok_or(short(index))?);
                    }
                }
                if at != body.len() {
                    return Err(short(index));
                }
                let [total, new] = lists;
                Frame::Skipped { total, new }
            }
            tag::FINISH => {
                let failures = read_counts(body, 0).ok_or(short(index))?;
                let mut skipped = Vec::new();
                let mut at = COUNTS_LEN;
                while at < body.len() {
                    skipped.push(read_run(body, &mut at).ok_or(short(index))?);
                }
                Frame::Finish { failures, skipped }
            }
            _ => return Err(self.malformed("unknown frame")),
        };
        Ok(Some(Next::Frame(frame)))
    }

    fn malformed(&self, why: &'static str) -> RecordingError {
        RecordingError::Malformed {
            index: self.index,
            why,
        }
    }
}

/// What [`Replay::next_frame`] read.
#[derive(Debug)]
pub enum Next<'a> {
    /// A raw ring-buffer record.
    Record(&'a [u8]),
    /// Any other frame.
    Frame(Frame),
}

/// No record or frame is near this long: a length beyond it means the file is not what it
/// claims.
const MAX_FRAME: usize = 1 << 20;
const COUNTS_LEN: usize = FAILURE_KINDS as usize * 8;

fn short(index: u64) -> RecordingError {
    RecordingError::Malformed {
        index,
        why: "shorter than its kind",
    }
}

/// Fills `buf`; `false` at a clean end of the input (nothing of `buf` read).
fn read_or_end(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes each program's skipped runs: the count, then the name's length and the name.
fn put_runs(body: &mut Vec<u8>, runs: &[(String, u64)]) {
    for (program, n) in runs {
        body.extend_from_slice(&n.to_le_bytes());
        body.extend_from_slice(&(program.len() as u32).to_le_bytes());
        body.extend_from_slice(program.as_bytes());
    }
}

/// One program's skipped runs at `*at`, moving `at` past them.
fn read_run(body: &[u8], at: &mut usize) -> Option<(String, u64)> {
    let n = read_u64(body, *at)?;
    let len = read_u32(body, *at + 8)? as usize;
    let name = body.get(*at + 12..(*at + 12).checked_add(len)?)?;
    *at += 12 + len;
    Some((String::from_utf8_lossy(name).into_owned(), n))
}

fn read_u32(body: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(body: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
}

fn read_counts(body: &[u8], at: usize) -> Option<Counts> {
    let mut counts = [0u64; FAILURE_KINDS as usize];
    for (i, n) in counts.iter_mut().enumerate() {
        *n = read_u64(body, at + i * 8)?;
    }
    Some(counts)
}

/// An endpoint in 19 bytes: the family (4 or 6), the address as IPv6 (IPv4-mapped), the port.
fn put_endpoint(body: &mut Vec<u8>, e: Endpoint) {
    let (family, v6) = match e.addr {
        IpAddr::V4(a) => (4u8, a.to_ipv6_mapped()),
        IpAddr::V6(a) => (6u8, a),
    };
    body.push(family);
    body.extend_from_slice(&v6.octets());
    body.extend_from_slice(&e.port.to_le_bytes());
}

fn get_endpoint(b: &[u8]) -> Option<Endpoint> {
    let octets: [u8; 16] = b.get(1..17)?.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    let addr = match b.first()? {
        4 => IpAddr::V4(v6.to_ipv4_mapped()?),
        6 => IpAddr::V6(v6),
        _ => return None,
    };
    let port = u16::from_le_bytes(b.get(17..19)?.try_into().ok()?);
    Some(crate::correlate::endpoint(addr, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        let mut total = [0u64; FAILURE_KINDS as usize];
        total[0] = 7;
        let mut new = [0u64; FAILURE_KINDS as usize];
        new[FAILURE_KINDS as usize - 1] = 3;
        vec![
            Frame::Record(vec![1, 2, 3]),
            Frame::Listener {
                pid: 42,
                comm: "nginx: master".into(),
                fd: 6,
                local: crate::correlate::endpoint("127.0.0.1".parse().unwrap(), 8080),
                now_ns: 99,
            },
            Frame::Listener {
                pid: 43,
                comm: String::new(),
                fd: 3,
                local: crate::correlate::endpoint("::1".parse().unwrap(), 443),
                now_ns: 100,
            },
            Frame::Place(7, None),
            Frame::Place(
                8,
                Some(Place {
                    netns: Some(4026531840),
                    cgroup: None,
                }),
            ),
            Frame::Place(
                9,
                Some(Place {
                    netns: None,
                    cgroup: Some("/system.slice/x.service".into()),
                }),
            ),
            Frame::Drain(123_456_789),
            Frame::Record(Vec::new()),
            Frame::Dropped { total, new },
            Frame::Skipped {
                total: vec![("sys_exit".into(), 5), ("sys_enter_recvfrom".into(), 1)],
                new: vec![("sys_exit".into(), 2)],
            },
            Frame::Skipped {
                total: Vec::new(),
                new: Vec::new(),
            },
            Frame::Finish {
                failures: total,
                skipped: vec![("sys_exit".into(), 5), ("tcp_probe".into(), 0)],
            },
        ]
    }

    fn write(frames: &[Frame], header: Header) -> Vec<u8> {
        let mut rec = Recorder::new(Vec::new(), header, "test".into()).unwrap();
        for f in frames {
            rec.frame(f).unwrap();
        }
        rec.out
    }

    fn read(bytes: &[u8]) -> Result<(Header, Vec<Frame>), RecordingError> {
        let mut replay = Replay::new(bytes)?;
        let mut out = Vec::new();
        while let Some(next) = replay.next_frame()? {
            out.push(match next {
                Next::Record(b) => Frame::Record(b.to_vec()),
                Next::Frame(f) => f,
            });
        }
        Ok((replay.header, out))
    }

    #[test]
    fn every_frame_reads_back_as_written() {
        let header = Header {
            realtime_offset_ns: -5,
            drop_strays: true,
            no_syscalls: true,
        };
        let bytes = write(&frames(), header);
        assert_eq!(read(&bytes).unwrap(), (header, frames()));
    }

    #[test]
    fn a_cut_or_foreign_file_is_refused_with_its_reason() {
        let bytes = write(&frames(), Header::default());
        assert!(matches!(read(b"hello"), Err(RecordingError::NotARecording)));
        assert!(matches!(
            read(b"NOTARECORDINGATALLxxxxxxxxxxxxxxxxxx"),
            Err(RecordingError::NotARecording)
        ));
        let mut other = bytes.clone();
        other[8] = 99;
        assert!(matches!(read(&other), Err(RecordingError::Version(99))));
        // Cut anywhere inside a frame: an error, never a panic nor a silent end.
        let frames_start = 29;
        for cut in frames_start + 1..bytes.len() {
            let r = read(&bytes[..cut]);
            let at_boundary = r.is_ok();
            if at_boundary {
                continue;
            }
            assert!(
                matches!(r, Err(RecordingError::Malformed { .. })),
                "cut at {cut}"
            );
        }
        // Garbage frames never panic.
        let mut garbage = bytes[..frames_start].to_vec();
        garbage.extend((0..2000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
        let _ = read(&garbage);
    }
}
