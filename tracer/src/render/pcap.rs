//! Writing captured segments as a pcap file (nanosecond timestamps, raw IP link type), which
//! Wireshark and tshark read.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Finish, Line, View};

/// pcap magic for nanosecond-resolution timestamps.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// `LINKTYPE_RAW`: each packet starts with its IPv4 or IPv6 header.
const LINKTYPE_RAW: u32 = 101;
/// Largest packet length recorded in the header.
const SNAPLEN: u32 = 65535;

/// A pcap file being written.
pub struct PcapWriter<W: Write> {
    out: W,
    /// Wall-clock minus monotonic clock, to turn kernel timestamps into dates.
    realtime_offset_ns: i128,
    /// Packets written.
    pub packets: u64,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates `path` and writes the file header.
    pub fn create(path: &Path, realtime_offset_ns: i128) -> io::Result<Self> {
        Self::new(BufWriter::new(File::create(path)?), realtime_offset_ns)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `out`.
    pub fn new(mut out: W, realtime_offset_ns: i128) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self {
            out,
            realtime_offset_ns,
            packets: 0,
        })
    }

    /// Writes one packet captured at kernel time `ts_ns`: `data` is what was captured,
    /// `orig_len` the packet's real length.
    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let wall = (i128::from(ts_ns) + self.realtime_offset_ns).max(0) as u128;
        let mut rec = Vec::with_capacity(16 + data.len());
        rec.extend_from_slice(&((wall / 1_000_000_000) as u32).to_le_bytes());
        rec.extend_from_slice(&((wall % 1_000_000_000) as u32).to_le_bytes());
        rec.extend_from_slice(&(data.len() as u32).to_le_bytes());
        rec.extend_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        rec.extend_from_slice(data);
        self.out.write_all(&rec)?;
        self.packets += 1;
        Ok(())
    }

    /// Flushes buffered packets to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The capture-file view: each captured segment once, whichever ends saw it.
pub struct Pcap {
    writer: PcapWriter<BufWriter<File>>,
    path: PathBuf,
}

impl Pcap {
    /// Creates `path`; `realtime_offset_ns` turns kernel timestamps into dates.
    pub fn create(path: &Path, realtime_offset_ns: i128) -> io::Result<Self> {
        Ok(Self {
            writer: PcapWriter::create(path, realtime_offset_ns)?,
            path: path.to_path_buf(),
        })
    }
}

impl View for Pcap {
    fn event(&mut self, line: &Line) -> io::Result<()> {
        if let Some(captured) = line.event.captured().filter(|c| !c.repeat) {
            self.writer
                .write(line.event.ts_ns, &captured.data, captured.len)?;
        }
        Ok(())
    }

    fn finish(&mut self, _end: &Finish) -> io::Result<()> {
        self.writer.flush()?;
        eprintln!(
            "tracer: wrote {} segment(s) to {}",
            self.writer.packets,
            self.path.display()
        );
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_records() {
        let mut buf = Vec::new();
        let mut w = PcapWriter::new(&mut buf, 1_000_000_000).unwrap();
        w.write(2_500_000_000, &[0x45, 0, 0, 20], 60).unwrap();
        assert_eq!(w.packets, 1);
        assert_eq!(&buf[..4], &MAGIC_NANOS.to_le_bytes());
        assert_eq!(&buf[20..24], &LINKTYPE_RAW.to_le_bytes());
        let rec = &buf[24..];
        assert_eq!(u32::from_le_bytes(rec[0..4].try_into().unwrap()), 3);
        assert_eq!(
            u32::from_le_bytes(rec[4..8].try_into().unwrap()),
            500_000_000
        );
        assert_eq!(u32::from_le_bytes(rec[8..12].try_into().unwrap()), 4);
        assert_eq!(u32::from_le_bytes(rec[12..16].try_into().unwrap()), 60);
        assert_eq!(&rec[16..], &[0x45, 0, 0, 20]);
    }
}
