//! The echo demo's protocol, shared by `echo-server` and `echo-client`: the client sends a
//! message, the server answers `your message is` followed by the message.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// What the server puts before every message.
pub const REPLY_PREFIX: &str = "your message is";

/// The server's answer to `message`.
pub fn reply(message: &[u8]) -> Vec<u8> {
    let mut r = REPLY_PREFIX.as_bytes().to_vec();
    r.extend_from_slice(message);
    r
}

/// Whether a line typed at the client ends the session.
pub fn is_quit(line: &str) -> bool {
    matches!(line.trim(), "Q" | "q")
}

/// Serves one client until it closes: one read, one reply.
pub fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&reply(&buf[..n]))?;
    }
}

/// Sends `message` and reads the whole reply.
pub fn exchange(stream: &mut TcpStream, message: &str) -> io::Result<String> {
    stream.write_all(message.as_bytes())?;
    let want = REPLY_PREFIX.len() + message.len();
    let mut got = Vec::with_capacity(want);
    let mut buf = [0u8; 4096];
    while got.len() < want {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_and_quit() {
        assert_eq!(reply(b"hi"), b"your message ishi");
        assert!(is_quit("Q\n") && is_quit(" q ") && !is_quit("quit"));
    }
}
